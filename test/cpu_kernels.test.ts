/**
 * Every native cpu kernel against its reference twin, on the same storage handles, over ragged
 * sizes (1, 3, 31, 32, 33, 255, 257 ...), each optional input on and off, on 1, 2 and 3 threads.
 * Matrix products and attention have their own files.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { refKernels as ref } from "../src/backend/ref/index.js";
import type { UnaryOp } from "../src/backend/kernels.js";
import { f32ToF16, f32ToBf16 } from "../src/util/half.js";
import { Rng } from "../src/util/rng.js";
import { RAGGED } from "./helpers.js";
import { cpuBackends, randf, hostCopy, close, closeEach, release, termNorm } from "./cpu_helpers.js";
import { sameBits } from "./cpu_mixer_helpers.js";

const cpus = cpuBackends();
const rng = new Rng(11);
const SIZES = [...RAGGED, 1000, 4099];
const UNARY: UnaryOp[] = ["silu", "gelu", "gelu_tanh", "relu", "relu_sq", "sigmoid", "softplus", "exp", "tanh", "neg", "square"];

describe("cpu data movement", () => {
  test("fill f32, i32 and 16-bit storage", () => {
    for (const { be, label } of cpus) {
      for (const n of SIZES) {
        const a = be.allocate("f32", n + 3) as Float32Array;
        a.fill(7);
        be.kernels.fill(a, -1.25, n);
        assert.ok(a.subarray(0, n).every((v) => v === -1.25) && a.subarray(n).every((v) => v === 7), `${label} f32 ${n}`);
        const i = be.allocate("i32", n) as Int32Array;
        be.kernels.fill(i, -3, n);
        assert.ok(i.every((v) => v === -3), `${label} i32 ${n}`);
        const h = be.allocate("f16", n) as Uint16Array;
        be.kernels.fill(h, 0xbc00, n);
        assert.ok(h.every((v) => v === 0xbc00), `${label} u16 ${n}`);
        release(be, a, i, h);
      }
    }
  });

  test("split: ragged pieces, an empty one, many rows, 2-byte elements", () => {
    // its own generator, so that the tests after it draw the inputs they always drew
    const rng = new Rng(77);
    for (const { be, label } of cpus) {
      for (const [rows, sizes] of [[1, [5]], [3, [7, 1]], [2, [4, 0, 9]], [33, [3, 17, 2, 5, 1]]] as [number, number[]][]) {
        const n = sizes.reduce((a, b) => a + b, 0);
        const x = randf(be, rows * n, rng);
        const want = sizes.map((s) => new Float32Array(rows * s));
        ref.split(want, x, rows, sizes);
        const outs = sizes.map((s) => be.allocate("f32", rows * s) as Float32Array);
        be.kernels.split(outs, x, rows, sizes);
        outs.forEach((o, i) => assert.deepEqual(Array.from(o), Array.from(want[i]), `${label} ${rows} x ${sizes}: piece ${i}`));
        release(be, x, ...outs);
        const hx = be.allocate("f16", rows * n) as Uint16Array;
        for (let i = 0; i < hx.length; i++) hx[i] = rng.int(0, 65536);
        const hwant = sizes.map((s) => new Uint16Array(rows * s));
        ref.split(hwant, hx, rows, sizes);
        const houts = sizes.map((s) => be.allocate("f16", rows * s) as Uint16Array);
        be.kernels.split(houts, hx, rows, sizes);
        houts.forEach((o, i) => assert.deepEqual(Array.from(o), Array.from(hwant[i]), `${label} f16 ${rows} x ${sizes}: piece ${i}`));
        release(be, hx, ...houts);
      }
    }
  });

  test("copy2d: strides, offsets, accumulate, 4- and 2-byte elements", () => {
    for (const { be, label } of cpus) {
      for (const [rows, cols] of [[1, 1], [3, 31], [33, 5], [2, 257], [64, 33]]) {
        for (const accumulate of [false, true]) {
          const xStride = cols + 3;
          const outStride = cols + 7;
          const x = randf(be, rows * xStride + 2, rng);
          const out = randf(be, rows * outStride + 4, rng);
          const want = hostCopy(out);
          ref.copy2d(want, x, rows, cols, outStride, 4, xStride, 2, accumulate);
          be.kernels.copy2d(out, x, rows, cols, outStride, 4, xStride, 2, accumulate);
          assert.deepEqual(Array.from(out), Array.from(want), `${label} ${rows}x${cols} acc=${accumulate}`);
          release(be, x, out);
        }
        const hx = be.allocate("bf16", rows * cols) as Uint16Array;
        for (let i = 0; i < hx.length; i++) hx[i] = rng.int(0, 65536);
        const hout = be.allocate("bf16", rows * (cols + 1)) as Uint16Array;
        hout.fill(1);
        const hwant = hostCopy(hout);
        ref.copy2d(hwant, hx, rows, cols, cols + 1, 1, cols, 0, false);
        be.kernels.copy2d(hout, hx, rows, cols, cols + 1, 1, cols, 0, false);
        assert.deepEqual(Array.from(hout), Array.from(hwant), `${label} u16 ${rows}x${cols}`);
        release(be, hx, hout);
      }
    }
  });

  test("cast: f32 <-> f16 / bf16 bit-exact, with infinities, NaN, subnormals and rounding ties", () => {
    const special = [0, -0, 1, -1, 65504, 65519, 65520, 1e6, -1e6, Infinity, -Infinity, NaN, 6e-8, 3e-8, 2.98e-8, 5.96e-8, 1e-40, 6.1e-5, 1.0009765625, 1.00048828125, 3.4e38];
    for (const { be, label } of cpus) {
      for (const n of [...SIZES, special.length]) {
        const x = be.allocate("f32", n) as Float32Array;
        for (let i = 0; i < n; i++) x[i] = i < special.length && n === special.length ? special[i] : rng.normal() * 10 ** rng.int(-9, 6);
        for (const kind of ["f16", "bf16"] as const) {
          const h = be.allocate(kind, n) as Uint16Array;
          be.kernels.cast(h, x, n, kind, "f32");
          const enc = kind === "f16" ? f32ToF16 : f32ToBf16;
          for (let i = 0; i < n; i++) assert.equal(h[i], enc(x[i]), `${label} f32->${kind} ${x[i]}`);
          const back = be.allocate("f32", n) as Float32Array;
          const want = new Float32Array(n);
          be.kernels.cast(back, h, n, "f32", kind);
          ref.cast(want, h, n, "f32", kind);
          close(back, want, 0, `${label} ${kind}->f32`);
          release(be, h, back);
        }
        release(be, x);
      }
      // every f16 bit pattern decodes exactly; f16 -> bf16 goes through f32
      const all = be.allocate("f16", 65536) as Uint16Array;
      for (let i = 0; i < 65536; i++) all[i] = i;
      const dec = be.allocate("f32", 65536) as Float32Array;
      const want = new Float32Array(65536);
      be.kernels.cast(dec, all, 65536, "f32", "f16");
      ref.cast(want, all, 65536, "f32", "f16");
      close(dec, want, 0, `${label} all f16`);
      const bf = be.allocate("bf16", 65536) as Uint16Array;
      const bfWant = new Uint16Array(65536);
      be.kernels.cast(bf, all, 65536, "bf16", "f16");
      ref.cast(bfWant, all, 65536, "bf16", "f16");
      assert.deepEqual(Array.from(bf), Array.from(bfWant), `${label} f16->bf16`);
      release(be, all, dec, bf);
    }
  });
});

describe("cpu elementwise", () => {
  /** Inputs: a wide normal spread plus the points where definitions switch branch. */
  function inputs(n: number): number[] {
    const edges = [0, -0, 0.39, 0.41, -0.4, 19.9, 20.1, -20, 30, -30, 88, -88, 100, -100, 1e-6, -1e-6, 5, -5, 9, -9];
    return Array.from({ length: n }, (_, i) => (i < edges.length && n > 100 ? edges[i] : rng.normal() * 3));
  }

  test("unaryForward and unaryBackward for every op", () => {
    for (const { be, label } of cpus) {
      for (const n of SIZES) {
        const x = be.upload("f32", Float32Array.from(inputs(n))) as Float32Array;
        const dy = randf(be, n, rng);
        const out = be.allocate("f32", n) as Float32Array;
        const dx = be.allocate("f32", n) as Float32Array;
        for (const op of UNARY) {
          const want = new Float32Array(n);
          ref.unaryForward(op, want, x, n);
          be.kernels.unaryForward(op, out, x, n);
          // abs 1e-8: in gelu's far negative tail (|gelu| < 1e-8) f32 rounding of x^2 in exp(-x^2/2)
          // costs a few 1e-6 relative (and the reference, computing 1 + erf(x), returns 0 below -8)
          closeEach(out, want, 2e-6, 1e-8, `${label} ${op} forward n=${n}`);
          ref.unaryBackward(op, want, dy, x, n);
          be.kernels.unaryBackward(op, dx, dy, x, n);
          // derivatives cross zero (gelu at -0.75): there only an absolute bound is meaningful
          closeEach(dx, want, 4e-6, 1e-6, `${label} ${op} backward n=${n}`);
        }
        release(be, x, dy, out, dx);
      }
    }
  });

  test("binaryForward: full, scalar and periodic operands, in place", () => {
    for (const { be, label } of cpus) {
      for (const [n, bn] of [[1, 1], [31, 31], [33, 1], [255, 5], [257, 257], [96, 32], [4096, 1024], [1001, 7]]) {
        for (const op of ["add", "sub", "mul"] as const) {
          const a = randf(be, n, rng);
          const b = randf(be, bn, rng);
          const out = be.allocate("f32", n) as Float32Array;
          const want = new Float32Array(n);
          ref.binaryForward(op, want, a, b, n, bn);
          be.kernels.binaryForward(op, out, a, b, n, bn);
          close(out, want, 0, `${label} ${op} ${n}/${bn}`);
          be.kernels.binaryForward(op, a, a, b, n, bn);
          close(a, want, 0, `${label} ${op} in place`);
          release(be, a, b, out);
        }
      }
    }
  });

  test("axpby with and without y (y is not read when beta is 0)", () => {
    for (const { be, label } of cpus) {
      for (const n of SIZES) {
        const x = randf(be, n, rng);
        const y = randf(be, n, rng);
        const out = be.allocate("f32", n) as Float32Array;
        const want = new Float32Array(n);
        ref.axpby(want, 0.5, x, -2, y, n);
        be.kernels.axpby(out, 0.5, x, -2, y, n);
        close(out, want, 1e-7, `${label} axpby ${n}`);
        y.fill(NaN);
        ref.axpby(want, 3, x, 0, y, n);
        be.kernels.axpby(out, 3, x, 0, y, n);
        close(out, want, 0, `${label} beta 0 ${n}`);
        release(be, x, y, out);
      }
    }
  });

  test("sumRows (accumulate on and off)", () => {
    for (const { be, label } of cpus) {
      for (const [rows, cols] of [[1, 1], [3, 33], [257, 31], [32, 257], [1000, 64], [5, 1]]) {
        for (const accumulate of [false, true]) {
          const x = randf(be, rows * cols, rng);
          const out = randf(be, cols, rng);
          const want = hostCopy(out);
          ref.sumRows(want, x, rows, cols, accumulate);
          be.kernels.sumRows(out, x, rows, cols, accumulate);
          // relative to the sums' scale (terms of size 1): a column whose terms cancel is not an error
          close(out, want, 1e-6, `${label} sumRows ${rows}x${cols} acc=${accumulate}`, 0.1 * Math.sqrt(rows * cols));
          release(be, x, out);
        }
      }
    }
  });

  test("swigluForward and swigluBackward", () => {
    for (const { be, label } of cpus) {
      for (const n of SIZES) {
        const g = randf(be, n, rng, 3);
        const u = randf(be, n, rng);
        const dy = randf(be, n, rng);
        const out = be.allocate("f32", n) as Float32Array;
        const dg = be.allocate("f32", n) as Float32Array;
        const du = be.allocate("f32", n) as Float32Array;
        const w = [new Float32Array(n), new Float32Array(n), new Float32Array(n)];
        ref.swigluForward(w[0], g, u, n);
        be.kernels.swigluForward(out, g, u, n);
        closeEach(out, w[0], 2e-6, 1e-30, `${label} swiglu ${n}`);
        ref.swigluBackward(w[1], w[2], dy, g, u, n);
        be.kernels.swigluBackward(dg, du, dy, g, u, n);
        closeEach(dg, w[1], 4e-6, 2e-6, `${label} dg ${n}`); // 1 + g (1 - s) crosses zero
        closeEach(du, w[2], 4e-6, 1e-30, `${label} du ${n}`);
        release(be, g, u, dy, out, dg, du);
      }
    }
  });
});

describe("cpu embeddings, norms, rope, loss", () => {
  test("embeddingForward and embeddingBackward with repeated ids", () => {
    for (const { be, label } of cpus) {
      for (const [n, C, V] of [[1, 1, 3], [3, 31, 5], [33, 257, 10], [255, 32, 4], [64, 100, 2]]) {
        const ids = be.allocate("i32", n) as Int32Array;
        for (let i = 0; i < n; i++) ids[i] = rng.int(0, V);
        const table = randf(be, V * C, rng);
        const out = be.allocate("f32", n * C) as Float32Array;
        const want = new Float32Array(n * C);
        ref.embeddingForward(want, ids, table, n, C);
        be.kernels.embeddingForward(out, ids, table, n, C);
        close(out, want, 0, `${label} embedding ${n}x${C}`);
        const dout = randf(be, n * C, rng);
        const dwant = hostCopy(table);
        ref.embeddingBackward(dwant, dout, ids, n, C);
        be.kernels.embeddingBackward(table, dout, ids, n, C);
        close(table, dwant, 1e-7, `${label} embedding backward ${n}x${C}`);
        release(be, ids, table, out, dout);
      }
    }
  });

  test("embeddingForward from f16 and bf16 tables (rows widened, bit-exact with ref; every bit pattern, NaNs as NaNs)", () => {
    for (const { be, label } of cpus) {
      for (const kind of ["f16", "bf16"] as const) {
        for (const [n, C, V] of [[1, 1, 3], [3, 31, 5], [33, 257, 10], [64, 100, 2]]) {
          const ids = be.allocate("i32", n) as Int32Array;
          for (let i = 0; i < n; i++) ids[i] = rng.int(0, V);
          const table = be.allocate(kind, V * C) as Uint16Array;
          for (let i = 0; i < table.length; i++) table[i] = rng.int(0, 0x10000); // every bit pattern: subnormals, Inf, NaN
          const out = be.allocate("f32", n * C) as Float32Array;
          const want = new Float32Array(n * C);
          ref.embeddingForward(want, ids, table, n, C, kind);
          be.kernels.embeddingForward(out, ids, table, n, C, kind);
          const got = new Uint32Array(out.slice().buffer);
          const bits = new Uint32Array(want.buffer);
          for (let i = 0; i < want.length; i++) {
            if (Number.isNaN(want[i])) assert.ok(Number.isNaN(out[i]), `${label} ${kind} embedding ${n}x${C}: NaN at ${i}`);
            else assert.equal(got[i], bits[i], `${label} ${kind} embedding ${n}x${C} at ${i}`);
          }
          release(be, ids, table, out);
        }
      }
    }
  });

  test("rmsnorm forward and backward (offset 0 and 1, dw accumulates)", () => {
    for (const { be, label } of cpus) {
      for (const [rows, C] of [[1, 1], [3, 31], [33, 32], [2, 257], [255, 33], [64, 300]]) {
        for (const offset of [0, 1]) {
          const x = randf(be, rows * C, rng, 2, 0.5);
          const w = randf(be, C, rng);
          const out = be.allocate("f32", rows * C) as Float32Array;
          const rstd = be.allocate("f32", rows) as Float32Array;
          const want = new Float32Array(rows * C);
          const rwant = new Float32Array(rows);
          ref.rmsnormForward(want, rwant, x, w, rows, C, 1e-5, offset);
          be.kernels.rmsnormForward(out, rstd, x, w, rows, C, 1e-5, offset);
          close(out, want, 1e-6, `${label} rmsnorm ${rows}x${C}`);
          close(rstd, rwant, 1e-6, `${label} rstd`);
          const dy = randf(be, rows * C, rng);
          const dx = be.allocate("f32", rows * C) as Float32Array;
          const dw = randf(be, C, rng);
          const dxWant = new Float32Array(rows * C);
          const dwWant = hostCopy(dw);
          ref.rmsnormBackward(dxWant, dwWant, dy, x, w, rstd, rows, C, offset);
          be.kernels.rmsnormBackward(dx, dw, dy, x, w, rstd, rows, C, offset);
          const terms = termNorm(rows, C, (r, c) => rstd[r] * dy[r * C + c] * (w[c] + offset));
          close(dx, dxWant, 1e-5, `${label} rmsnorm dx ${rows}x${C}`, terms);
          close(dw, dwWant, 1e-5, `${label} rmsnorm dw ${rows}x${C}`);
          release(be, x, w, out, rstd, dy, dx, dw);
        }
      }
    }
  });

  test("layernorm forward and backward, bias and its gradient on and off", () => {
    for (const { be, label } of cpus) {
      for (const [rows, C] of [[1, 1], [3, 31], [33, 32], [2, 257], [255, 33]]) {
        for (const withBias of [true, false]) {
          const x = randf(be, rows * C, rng, 2, 1);
          const w = randf(be, C, rng);
          const b = withBias ? randf(be, C, rng) : null;
          const out = be.allocate("f32", rows * C) as Float32Array;
          const mean = be.allocate("f32", rows) as Float32Array;
          const rstd = be.allocate("f32", rows) as Float32Array;
          const want = [new Float32Array(rows * C), new Float32Array(rows), new Float32Array(rows)];
          ref.layernormForward(want[0], want[1], want[2], x, w, b, rows, C, 1e-5);
          be.kernels.layernormForward(out, mean, rstd, x, w, b, rows, C, 1e-5);
          close(out, want[0], 1e-6, `${label} layernorm ${rows}x${C} bias=${withBias}`);
          close(mean, want[1], 1e-6, `${label} mean`);
          close(rstd, want[2], 1e-5, `${label} rstd`);
          const dy = randf(be, rows * C, rng);
          const dx = be.allocate("f32", rows * C) as Float32Array;
          const dw = randf(be, C, rng);
          const db = withBias ? randf(be, C, rng) : null;
          const dWant = [new Float32Array(rows * C), hostCopy(dw), db ? hostCopy(db) : null];
          ref.layernormBackward(dWant[0]!, dWant[1]!, dWant[2], dy, x, w, mean, rstd, rows, C);
          be.kernels.layernormBackward(dx, dw, db, dy, x, w, mean, rstd, rows, C);
          const terms = termNorm(rows, C, (r, c) => rstd[r] * dy[r * C + c] * w[c]);
          close(dx, dWant[0]!, 1e-5, `${label} layernorm dx ${rows}x${C}`, terms);
          close(dw, dWant[1]!, 1e-5, `${label} layernorm dw`);
          if (db) close(db, dWant[2]!, 1e-6, `${label} layernorm db`);
          release(be, x, w, out, mean, rstd, dy, dx, dw, ...(b ? [b] : []), ...(db ? [db] : []));
        }
      }
    }
  });

  test("norm backward: the weight gradients are the same bits on 1, 2 and 3 threads", () => {
    // the sums over rows go by blocks of rows fixed by the row count; a split by thread made the
    // rounding (and so a training run) depend on the machine's core count
    const sameIsa = cpus.filter((c) => !c.label.includes("simd128"));
    for (const [rows, C] of [[1, 4], [7, 33], [65, 32], [300, 40], [1000, 8]]) {
      const host = (n: number, std = 1, mean = 0) => Float32Array.from({ length: n }, () => mean + std * rng.normal());
      const [x, w, dy, dw0, db0] = [host(rows * C, 2, 0.5), host(C), host(rows * C), host(C), host(C)];
      const got = sameIsa.map(({ be }) => {
        const put = (a: Float32Array) => {
          const h = be.allocate("f32", a.length) as Float32Array;
          h.set(a);
          return h;
        };
        const [px, pw, pdy] = [put(x), put(w), put(dy)];
        const [out, rstd, mean] = [be.allocate("f32", rows * C) as Float32Array, be.allocate("f32", rows) as Float32Array, be.allocate("f32", rows) as Float32Array];
        const [dx, dw, dx2, dw2, db2] = [be.allocate("f32", rows * C) as Float32Array, put(dw0), be.allocate("f32", rows * C) as Float32Array, put(dw0), put(db0)];
        be.kernels.rmsnormForward(out, rstd, px, pw, rows, C, 1e-5, 0);
        be.kernels.rmsnormBackward(dx, dw, pdy, px, pw, rstd, rows, C, 0);
        be.kernels.layernormForward(out, mean, rstd, px, pw, null, rows, C, 1e-5);
        be.kernels.layernormBackward(dx2, dw2, db2, pdy, px, pw, mean, rstd, rows, C);
        const r = [dx, dw, dx2, dw2, db2].map((a) => Float32Array.from(a));
        release(be, px, pw, pdy, out, rstd, mean, dx, dw, dx2, dw2, db2);
        return r;
      });
      for (let k = 1; k < got.length; k++) sameBits(got[0], got[k], `${sameIsa[k].label} vs ${sameIsa[0].label}, ${rows}x${C}`);
    }
  });

  test("ropeForward: full and partial rotation, inverse, offsets, scaling", () => {
    for (const { be, label } of cpus) {
      for (const [B, T, H, K, rotDim] of [[1, 1, 1, 2, 2], [2, 3, 4, 16, 16], [1, 33, 3, 12, 6], [2, 17, 2, 64, 32], [1, 257, 1, 8, 8]]) {
        for (const [pos0, attnScaling, inverse] of [[0, 1, false], [1000, 1, true], [5, 0.8, false]] as const) {
          const n = B * T * H * K;
          const x = randf(be, n, rng);
          const invFreq = be.allocate("f32", rotDim / 2) as Float32Array;
          for (let i = 0; i < rotDim / 2; i++) invFreq[i] = 10000 ** (-(2 * i) / rotDim);
          const out = be.allocate("f32", n) as Float32Array;
          const want = new Float32Array(n);
          const d = { B, T, H, K, rotDim, pos0, attnScaling, inverse };
          ref.ropeForward(want, x, invFreq, d);
          be.kernels.ropeForward(out, x, invFreq, d);
          close(out, want, 1e-6, `${label} rope ${B}x${T}x${H}x${K}/${rotDim} pos0=${pos0}`);
          release(be, x, invFreq, out);
        }
      }
    }
  });

  test("crossEntropy forward and backward with ignored rows", () => {
    for (const { be, label } of cpus) {
      for (const [N, V] of [[1, 1], [3, 31], [33, 257], [8, 1000], [255, 3]]) {
        for (const ignore of [false, true]) {
          const logits = randf(be, N * V, rng, 3);
          const targets = be.allocate("i32", N) as Int32Array;
          for (let r = 0; r < N; r++) targets[r] = ignore && r % 3 === 1 ? -100 : rng.int(0, V);
          const loss = be.allocate("f32", 1) as Float32Array;
          const lse = be.allocate("f32", N) as Float32Array;
          const want = [new Float32Array(1), new Float32Array(N)];
          ref.crossEntropyForward(want[0], want[1], logits, targets, N, V);
          be.kernels.crossEntropyForward(loss, lse, logits, targets, N, V);
          close(loss, want[0], 1e-6, `${label} loss ${N}x${V}`);
          close(lse, want[1], 1e-6, `${label} lse`);
          const dloss = be.upload("f32", Float32Array.of(1.5)) as Float32Array;
          const dlogits = be.allocate("f32", N * V) as Float32Array;
          const dwant = new Float32Array(N * V);
          ref.crossEntropyBackward(dwant, dloss, logits, lse, targets, N, V);
          be.kernels.crossEntropyBackward(dlogits, dloss, logits, lse, targets, N, V);
          close(dlogits, dwant, 2e-6, `${label} dlogits ${N}x${V}`);
          release(be, logits, targets, loss, lse, dloss, dlogits);
        }
      }
    }
  });
});
