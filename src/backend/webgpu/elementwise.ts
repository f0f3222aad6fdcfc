/**
 * WGSL data movement and elementwise kernels: fill, copy2d, cast, unary and binary maps,
 * axpby, column sums (sumRows) and SwiGLU. Semantics are those of backend/ref/elementwise.ts.
 */
import type { BinaryOp, CoreKernels, UnaryOp } from "../kernels.js";
import { SeqlabError } from "../../util/errors.js";
import type { GpuContext, KernelDef, UniformType } from "./context.js";
import { grid1d } from "./context.js";
import type { GpuTensorBuffer } from "./pool.js";
import { HALF, LINEAR_INDEX, MATH } from "./wgsl.js";

type S = GpuTensorBuffer;
const WG = 256;

/** A kernel with one thread per index i < u.n running `stmt`. */
function mapKernel(label: string, bindings: KernelDef["bindings"], uniforms: [string, UniformType][], stmt: string, lib = ""): KernelDef {
  return {
    label,
    uniforms: [["n", "u32"], ...uniforms],
    bindings,
    body: `${LINEAR_INDEX(WG)}${lib}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = linearIndex(gid, nwg);
  if (i >= u.n) { return; }
  ${stmt}
}`,
  };
}

/** WGSL of each activation of `v` and its derivative (MATH supplies the helper functions). */
export const UNARY: Record<UnaryOp, [forward: string, derivative: string]> = {
  silu: ["v * sigmoid_(v)", "sigmoid_(v) * (1.0 + v * (1.0 - sigmoid_(v)))"],
  gelu: ["gelu_(v)", "gelu_grad_(v)"],
  gelu_tanh: ["gelu_tanh_(v)", "gelu_tanh_grad_(v)"],
  relu: ["max(v, 0.0)", "select(0.0, 1.0, v > 0.0)"],
  relu_sq: ["select(0.0, v * v, v > 0.0)", "select(0.0, 2.0 * v, v > 0.0)"],
  sigmoid: ["sigmoid_(v)", "sigmoid_(v) * (1.0 - sigmoid_(v))"],
  softplus: ["softplus_(v)", "select(sigmoid_(v), 1.0, v > 20.0)"],
  exp: ["exp_(v)", "exp_(v)"],
  tanh: ["tanh_(v)", "1.0 - tanh_(v) * tanh_(v)"],
  neg: ["-v", "-1.0"],
  square: ["v * v", "2.0 * v"],
};

const BINARY: Record<BinaryOp, string> = { add: "+", sub: "-", mul: "*" };

/** Pieces of a split written by one dispatch (each is a storage binding). */
const SPLIT_MAX = 4;

function is16(s: S): boolean {
  return s.dtype === "f16" || s.dtype === "bf16";
}

/** The u16 pattern the ref backend stores for `value` (a Uint16Array assignment). */
function u16Pattern(value: number): number {
  return ((Math.trunc(value) % 65536) + 65536) % 65536;
}

function f32Bits(value: number): number {
  return new Uint32Array(Float32Array.of(value).buffer)[0];
}

export function elementwiseKernels(ctx: GpuContext): Pick<
  CoreKernels<S>,
  "fill" | "copy2d" | "split" | "cast" | "unaryForward" | "unaryBackward" | "binaryForward" | "axpby" | "sumRows" | "swigluForward" | "swigluBackward"
> {
  const run = (key: string, make: () => KernelDef, bufs: S[], uniforms: number[], n: number) =>
    ctx.dispatch(ctx.pipeline(key, make), bufs, [n, ...uniforms], grid1d(n, WG));

  /** Fill 32-bit words: `full` words get `word`; with `tail`, one more word gets `half` in its low 16 bits. */
  const fillWords = (out: S, full: number, word: number, tail: boolean, half: number) => {
    const p = ctx.pipeline("fill", () =>
      mapKernel(
        "fill",
        [["out", "write", "array<u32>"]],
        [["word", "u32"], ["tail", "u32"], ["half", "u32"]],
        `if (i < u.n - u.tail) { out[i] = u.word; } else { out[i] = (out[i] & 0xffff0000u) | u.half; }`,
      ),
    );
    const n = full + (tail ? 1 : 0);
    ctx.dispatch(p, [out], [n, word >>> 0, tail ? 1 : 0, half], grid1d(n, WG));
  };

  return {
    fill(out, value, n) {
      if (n === 0) return;
      if (is16(out)) {
        const h = u16Pattern(value);
        fillWords(out, n >> 1, (h | (h << 16)) >>> 0, n % 2 === 1, h);
      } else {
        fillWords(out, n, out.dtype === "i32" ? value | 0 : f32Bits(value), false, 0);
      }
    },

    copy2d(out, x, rows, cols, outStride, outOffset, xStride, xOffset, accumulate) {
      if (is16(out) || is16(x)) throw new SeqlabError(`webgpu: copy2d of ${out.dtype} tensors is not implemented (cast to f32 first)`);
      const type = accumulate ? "f32" : "u32";
      const n = rows * cols;
      if (n === 0) return;
      run(
        `copy2d:${type}`,
        () =>
          mapKernel(
            "copy2d",
            [
              ["out", "write", `array<${type}>`],
              ["x", "read", `array<${type}>`],
            ],
            [["cols", "u32"], ["outStride", "u32"], ["outOffset", "u32"], ["xStride", "u32"], ["xOffset", "u32"]],
            `let r = i / u.cols;
  let c = i - r * u.cols;
  let o = r * u.outStride + u.outOffset + c;
  ${accumulate ? "out[o] = out[o] + x[r * u.xStride + u.xOffset + c];" : "out[o] = x[r * u.xStride + u.xOffset + c];"}`,
          ),
        [out, x],
        [cols, outStride, outOffset, xStride, xOffset],
        n,
      );
    },

    split(outs, x, rows, sizes) {
      if ([x, ...outs].some(is16)) throw new SeqlabError(`webgpu: split of ${x.dtype} tensors is not implemented (cast to f32 first)`);
      const n = sizes.reduce((a, b) => a + b, 0);
      const pieces = sizes.map((s, i) => ({ s, out: outs[i], off: sizes.slice(0, i).reduce((a, b) => a + b, 0) })).filter((q) => q.s > 0);
      // up to SPLIT_MAX pieces a dispatch: thread (r, c) of the group's columns copies x[r, goff + c]
      // into the piece whose column range [e_j, e_j+1) holds c
      for (let g = 0; g < pieces.length && rows > 0; g += SPLIT_MAX) {
        const group = pieces.slice(g, g + SPLIT_MAX);
        const K = group.length;
        const goff = group[0].off;
        const ends = group.map((q) => q.off + q.s - goff);
        const gc = ends[K - 1];
        const idx = [...Array(K).keys()];
        run(
          `split:${K}`,
          () =>
            mapKernel(
              "split",
              [...idx.map((j): [string, "write", string] => [`out${j}`, "write", "array<u32>"]), ["x", "read", "array<u32>"]],
              [["gc", "u32"], ["xn", "u32"], ["goff", "u32"], ...idx.map((j): [string, UniformType] => [`e${j}`, "u32"])],
              `let r = i / u.gc;
  let c = i - r * u.gc;
  let v = x[r * u.xn + u.goff + c];
  ${idx
    .map((j) => {
      const lo = j === 0 ? "0u" : `u.e${j - 1}`;
      const store = `out${j}[r * (u.e${j} - ${lo}) + c - ${lo}] = v;`;
      return j === K - 1 ? `{ ${store} }` : `if (c < u.e${j}) { ${store} }`;
    })
    .join(" else ")}`,
            ),
          [...group.map((q) => q.out), x],
          [gc, n, goff, ...ends],
          rows * gc,
        );
      }
    },

    cast(out, x, n, outDtype, xDtype) {
      if (n === 0) return;
      // f32 bits of element e of x
      const load =
        xDtype === "f32"
          ? "x[e]"
          : `${xDtype === "f16" ? "f16" : "bf16"}_bits_to_f32_bits(select(x[e >> 1u] & 0xffffu, x[e >> 1u] >> 16u, (e & 1u) == 1u))`;
      const key = `cast:${xDtype}->${outDtype}`;
      if (outDtype === "f32") {
        run(key, () => mapKernel(key, [["out", "write", "array<u32>"], ["x", "read", "array<u32>"]], [], `let e = i;\n  out[i] = ${load};`, HALF), [out, x], [], n);
        return;
      }
      const enc = outDtype === "f16" ? "f32_bits_to_f16_bits" : "f32_bits_to_bf16_bits";
      // one thread per output word (two elements); an odd tail keeps the word's high half
      const words = Math.ceil(n / 2);
      run(
        key,
        () =>
          mapKernel(
            key,
            [["out", "write", "array<u32>"], ["x", "read", "array<u32>"]],
            [["elems", "u32"]],
            `var e = 2u * i;
  let lo = ${enc}(${load});
  var hi = out[i] >> 16u;
  if (e + 1u < u.elems) { e = e + 1u; hi = ${enc}(${load}); }
  out[i] = lo | (hi << 16u);`,
            HALF,
          ),
        [out, x],
        [n],
        words,
      );
    },

    unaryForward(op, out, x, n) {
      if (n === 0) return;
      run(`unary:${op}`, () => mapKernel(`unary:${op}`, [["out", "write", "array<f32>"], ["x", "read", "array<f32>"]], [], `let v = x[i];\n  out[i] = ${UNARY[op][0]};`, MATH), [out, x], [], n);
    },

    unaryBackward(op, dx, dy, x, n) {
      if (n === 0) return;
      run(
        `unaryBackward:${op}`,
        () =>
          mapKernel(
            `unaryBackward:${op}`,
            [["dx", "write", "array<f32>"], ["dy", "read", "array<f32>"], ["x", "read", "array<f32>"]],
            [],
            `let v = x[i];\n  dx[i] = dy[i] * (${UNARY[op][1]});`,
            MATH,
          ),
        [dx, dy, x],
        [],
        n,
      );
    },

    binaryForward(op, out, a, b, n, bn) {
      if (n === 0) return;
      const bcast = bn !== n;
      run(
        `binary:${op}:${bcast}`,
        () =>
          mapKernel(
            `binary:${op}`,
            [["out", "write", "array<f32>"], ["a", "read", "array<f32>"], ["b", "read", "array<f32>"]],
            [["bn", "u32"]],
            `out[i] = a[i] ${BINARY[op]} b[${bcast ? "i % u.bn" : "i"}];`,
          ),
        [out, a, b],
        [bn],
        n,
      );
    },

    axpby(out, alpha, x, beta, y, n) {
      if (n === 0) return;
      if (beta === 0) {
        run("scale", () => mapKernel("scale", [["out", "write", "array<f32>"], ["x", "read", "array<f32>"]], [["alpha", "f32"]], `out[i] = u.alpha * x[i];`), [out, x], [alpha], n);
        return;
      }
      run(
        "axpby",
        () =>
          mapKernel(
            "axpby",
            [["out", "write", "array<f32>"], ["x", "read", "array<f32>"], ["y", "read", "array<f32>"]],
            [["alpha", "f32"], ["beta", "f32"]],
            `out[i] = u.alpha * x[i] + u.beta * y[i];`,
          ),
        [out, x, y],
        [alpha, beta],
        n,
      );
    },

    sumRows(out, x, rows, cols, accumulate) {
      columnSum(ctx, out, x, rows, cols, accumulate);
    },

    swigluForward(out, g, u, n) {
      if (n === 0) return;
      run(
        "swiglu",
        () => mapKernel("swiglu", [["out", "write", "array<f32>"], ["g", "read", "array<f32>"], ["up", "read", "array<f32>"]], [], `let v = g[i];\n  out[i] = v * sigmoid_(v) * up[i];`, MATH),
        [out, g, u],
        [],
        n,
      );
    },

    swigluBackward(dg, du, dy, g, u, n) {
      if (n === 0) return;
      run(
        "swigluBackward",
        () =>
          mapKernel(
            "swigluBackward",
            [["dg", "write", "array<f32>"], ["du", "write", "array<f32>"], ["dy", "read", "array<f32>"], ["g", "read", "array<f32>"], ["up", "read", "array<f32>"]],
            [],
            `let v = g[i];
  let s = sigmoid_(v);
  du[i] = dy[i] * v * s;
  dg[i] = dy[i] * up[i] * s * (1.0 + v * (1.0 - s));`,
            MATH,
          ),
        [dg, du, dy, g, u],
        [],
        n,
      );
    },
  };
}

/** Rows summed per thread in one pass of columnSum. */
export const COLSUM_CHUNK = 256;

/**
 * out[c] (+)= sum over r of x[r, c], deterministically: each pass sums chunks of COLSUM_CHUNK
 * rows (one thread per column and chunk) into a partial (chunks, cols) that the next pass sums.
 * With `seg` > 1 each (r, c) is itself `seg` consecutive floats summed in order, and x starts at
 * float `off` (the scan backward's partials).
 */
export function columnSum(ctx: GpuContext, out: S | GPUBuffer, x: S | GPUBuffer, rows: number, cols: number, accumulate: boolean, off = 0, seg = 1): void {
  if (cols === 0) return;
  const chunks = Math.ceil(rows / COLSUM_CHUNK);
  const p = ctx.pipeline("colsum", () => ({
    label: "colsum",
    uniforms: [["rows", "u32"], ["cols", "u32"], ["accumulate", "u32"], ["off", "u32"], ["seg", "u32"]],
    bindings: [["out", "write", "array<f32>"], ["x", "read", "array<f32>"]],
    body: `
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let c = gid.x;
  if (c >= u.cols) { return; }
  let r0 = gid.y * ${COLSUM_CHUNK}u;
  let r1 = min(u.rows, r0 + ${COLSUM_CHUNK}u);
  var s = 0.0;
  for (var r = r0; r < r1; r++) {
    let base = u.off + (r * u.cols + c) * u.seg;
    for (var j = 0u; j < u.seg; j++) { s += x[base + j]; }
  }
  let o = gid.y * u.cols + c;
  if (u.accumulate != 0u) { s += out[o]; }
  out[o] = s;
}`,
  }));
  const gx = Math.ceil(cols / 64);
  if (chunks <= 1) {
    if (rows === 0) {
      if (!accumulate) {
        // an empty sum is zero
        ctx.dispatch(p, [out, x], [0, cols, 0, 0, 1], [gx, 1]);
      }
      return;
    }
    ctx.dispatch(p, [out, x], [rows, cols, accumulate ? 1 : 0, off, seg], [gx, 1]);
    return;
  }
  const partial = ctx.pool.acquire(chunks * cols * 4);
  ctx.dispatch(p, [partial, x], [rows, cols, 0, off, seg], [gx, chunks]);
  columnSum(ctx, out, partial, chunks, cols, accumulate);
  ctx.pool.release(partial);
}
