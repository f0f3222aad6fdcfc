/** WGSL data movement and elementwise kernels against ref, on SwiftShader. */
import { test } from "node:test";
import assert from "node:assert/strict";
import type { UnaryOp, BinaryOp } from "../src/backend/kernels.js";
import { Rng } from "../src/util/rng.js";
import { refKernels } from "../src/backend/ref/index.js";
import { f32ToBf16, f32ToF16 } from "../src/util/half.js";
import { gpuBackend, compareKernel, input, output, randArray } from "./webgpu_helpers.js";

const rng = new Rng(7);
const UNARY: UnaryOp[] = ["silu", "gelu", "gelu_tanh", "relu", "relu_sq", "sigmoid", "softplus", "exp", "tanh", "neg", "square"];

/** values across the ranges where the special functions change regime */
function spread(n: number): Float32Array {
  const a = randArray(n, rng, 3);
  const special = [0, -0.0, 1e-4, -1e-4, 0.29, 0.31, -0.31, 5, -5, 12, -12, 19.9, 20.1, 25, -25, -60, 60, 1e-8];
  for (let i = 0; i < Math.min(n, special.length); i++) a[i] = special[i];
  return a;
}

test("fill: f32, i32 and half tensors, ragged sizes", async () => {
  const be = await gpuBackend();
  for (const n of [1, 3, 33, 257]) {
    const [e1] = await compareKernel(be, "fill", [output(randArray(n + 2, rng)), 1.5, n]);
    assert.equal(e1, 0);
    const [e2] = await compareKernel(be, "fill", [output(Int32Array.from({ length: n + 1 }, (_, i) => i), "i32", true), -7, n]);
    assert.equal(e2, 0);
    const [e3] = await compareKernel(be, "fill", [output(Uint16Array.from({ length: n + 1 }, (_, i) => i * 3), "f16", true), 0, n]);
    assert.equal(e3, 0);
  }
});

test("copy2d: strided rows, offsets, accumulate on and off", async () => {
  const be = await gpuBackend();
  for (const [rows, cols] of [[1, 1], [3, 31], [33, 5], [2, 257]]) {
    for (const accumulate of [false, true]) {
      const outStride = cols + 3;
      const xStride = cols + 5;
      const out = output(randArray(rows * outStride + 2, rng));
      const x = input(randArray(rows * xStride + 2, rng));
      const [e] = await compareKernel(be, "copy2d", [out, x, rows, cols, outStride, 2, xStride, 1, accumulate]);
      assert.ok(e < 1e-7, `copy2d ${rows}x${cols} acc=${accumulate}: ${e}`);
    }
  }
  const ints = Int32Array.from({ length: 40 }, (_, i) => i * 1000003);
  const [e] = await compareKernel(be, "copy2d", [output(new Int32Array(40), "i32", true), input(ints, "i32"), 4, 10, 10, 0, 10, 0, false]);
  assert.equal(e, 0, "i32 copies are bit-exact");
});

test("split: 1 to 6 pieces (two dispatches past four), ragged widths, an empty piece, many rows", async () => {
  const be = await gpuBackend();
  // its own generator, so that the tests after it draw the inputs they always drew
  const rng = new Rng(77);
  for (const [rows, sizes] of [[1, [5]], [3, [7, 1]], [2, [4, 0, 9]], [33, [3, 17, 2, 5]], [4, [1, 2, 3, 4, 5, 6]], [1, [1536, 1536]]] as [number, number[]][]) {
    const n = sizes.reduce((a, b) => a + b, 0);
    const x = randArray(rows * n, rng);
    const want = sizes.map((s) => new Float32Array(rows * s));
    refKernels.split(want, x, rows, sizes);
    const gx = be.upload("f32", x);
    const outs = sizes.map((s) => be.upload("f32", new Float32Array(Math.max(1, rows * s)).fill(Number.NaN)));
    be.kernels.split(outs, gx, rows, sizes);
    for (let i = 0; i < sizes.length; i++) {
      const got = await be.read(outs[i], "f32", rows * sizes[i]);
      assert.deepEqual(Array.from(got), Array.from(want[i]), `split ${rows} x ${sizes}: piece ${i}`);
    }
    for (const h of [gx, ...outs]) be.release(h);
  }
});

test("cast: f32 <-> f16/bf16 bit-exact (rounding, subnormals, inf, nan), odd lengths", async () => {
  const be = await gpuBackend();
  const vals = Float32Array.from([0, -0, 1, -1, 65504, 65520, 1e-5, 6e-8, 3e-8, 1e-40, Infinity, -Infinity, NaN, 1.00048828125, 1.0009765625, 3.14159, -2.5e38, 1e6]);
  const n = 257;
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = i < vals.length ? vals[i] : rng.normal() * 10 ** rng.uniform() * 4;
  for (const half of ["f16", "bf16"] as const) {
    for (const len of [n, n - 1, 1]) {
      const [e1] = await compareKernel(be, "cast", [output(new Uint16Array(len + 1).fill(0xabcd), half, true), input(x.subarray(0, len)), len, half, "f32"]);
      assert.equal(e1, 0, `f32 -> ${half} (${len})`);
      const enc = Uint16Array.from(x.subarray(0, len), (v) => (half === "f16" ? f32ToF16(v) : f32ToBf16(v)));
      const [e2] = await compareKernel(be, "cast", [output(new Float32Array(len), "f32", true), input(enc, half), len, "f32", half]);
      assert.equal(e2, 0, `${half} -> f32 (${len})`);
    }
  }
  const h = Uint16Array.from({ length: 65 }, (_, i) => (i * 1021) & 0xffff);
  const [e3] = await compareKernel(be, "cast", [output(new Uint16Array(65), "bf16", true), input(h, "f16"), 65, "bf16", "f16"]);
  assert.equal(e3, 0, "f16 -> bf16");
  const [e4] = await compareKernel(be, "cast", [output(new Float32Array(33), "f32", true), input(randArray(33, rng)), 33, "f32", "f32"]);
  assert.equal(e4, 0, "f32 -> f32");
});

test("unary forward and backward: every op, ragged sizes", async () => {
  const be = await gpuBackend();
  for (const op of UNARY) {
    for (const n of [1, 33, 257]) {
      const x = spread(n);
      const [ef] = await compareKernel(be, "unaryForward", [op, output(randArray(n, rng)), input(x), n]);
      assert.ok(ef < 2e-6, `${op} forward n=${n}: ${ef}`);
      const [eb] = await compareKernel(be, "unaryBackward", [op, output(randArray(n, rng)), input(randArray(n, rng)), input(x), n]);
      assert.ok(eb < 2e-6, `${op} backward n=${n}: ${eb}`);
    }
  }
});

test("unary: gelu matches exact erf to ~1e-7 pointwise", async () => {
  const be = await gpuBackend();
  const n = 2001;
  const x = Float32Array.from({ length: n }, (_, i) => -10 + (20 * i) / (n - 1));
  const h = be.upload("f32", x);
  const o = be.allocate("f32", n);
  be.kernels.unaryForward("gelu", o, h, n);
  const got = (await be.read(o, "f32", n)) as Float32Array;
  const { unaryValue } = await import("../src/backend/ref/elementwise.js");
  let worst = 0;
  for (let i = 0; i < n; i++) worst = Math.max(worst, Math.abs(got[i] - unaryValue("gelu", x[i])) / Math.max(1, Math.abs(x[i])));
  assert.ok(worst < 1e-6, `gelu worst scaled error ${worst}`);
  be.release(h);
  be.release(o);
});

test("binary, axpby, swiglu: broadcast periods and beta = 0", async () => {
  const be = await gpuBackend();
  for (const op of ["add", "sub", "mul"] as BinaryOp[]) {
    for (const [n, bn] of [[1, 1], [33, 33], [257 * 3, 257], [64, 1]]) {
      const [e] = await compareKernel(be, "binaryForward", [op, output(randArray(n, rng)), input(randArray(n, rng)), input(randArray(bn, rng)), n, bn]);
      assert.ok(e < 1e-7, `${op} ${n}/${bn}: ${e}`);
    }
  }
  for (const n of [1, 31, 255]) {
    const [e1] = await compareKernel(be, "axpby", [output(randArray(n, rng)), 0.5, input(randArray(n, rng)), -2, input(randArray(n, rng)), n]);
    assert.ok(e1 < 1e-7);
    const [e2] = await compareKernel(be, "axpby", [output(randArray(n, rng)), 3, input(randArray(n, rng)), 0, input(randArray(n, rng)), n]);
    assert.ok(e2 < 1e-7);
    const [e3] = await compareKernel(be, "swigluForward", [output(randArray(n, rng)), input(spread(n)), input(randArray(n, rng)), n]);
    assert.ok(e3 < 2e-6, `swiglu ${e3}`);
    const [e4, e5] = await compareKernel(be, "swigluBackward", [output(randArray(n, rng)), output(randArray(n, rng)), input(randArray(n, rng)), input(spread(n)), input(randArray(n, rng)), n]);
    assert.ok(e4 < 2e-6 && e5 < 2e-6, `swiglu backward ${e4} ${e5}`);
  }
});

test("binary: out aliasing an input reads the old values", async () => {
  const be = await gpuBackend();
  const a = randArray(100, rng);
  const b = randArray(100, rng);
  const ha = be.upload("f32", a);
  const hb = be.upload("f32", b);
  be.kernels.binaryForward("add", ha, ha, hb, 100, 100);
  be.kernels.binaryForward("mul", ha, ha, ha, 100, 100);
  const got = (await be.read(ha, "f32", 100)) as Float32Array;
  for (let i = 0; i < 100; i++) assert.equal(got[i], Math.fround(Math.fround(a[i] + b[i]) ** 2));
  be.release(ha);
  be.release(hb);
});

test("sumRows: ragged rows and columns, multi-pass, accumulate", async () => {
  const be = await gpuBackend();
  for (const [rows, cols] of [[1, 1], [3, 33], [255, 3], [257, 31], [1000, 2], [70000, 1]]) {
    for (const accumulate of [false, true]) {
      const [e] = await compareKernel(be, "sumRows", [output(randArray(cols, rng)), input(randArray(rows * cols, rng)), rows, cols, accumulate]);
      assert.ok(e < 1e-5, `sumRows ${rows}x${cols}: ${e}`);
    }
  }
});
