/**
 * The core kernel table of the cpu backend: each entry checks its handles, picks a thread
 * count from the size of the work, and calls the WebAssembly kernel (assembly/*.ts).
 * Handles are typed-array views into the shared memory; a kernel's pointer is the view's
 * byteOffset. Arguments follow the Kernels conventions (outputs, inputs, parameters, dims).
 */
import type { AttentionDims, CoreKernels, MatmulDims, RopeDims, UnaryOp, BinaryOp } from "../kernels.js";
import type { HostArray } from "../../tensor/dtype.js";
import type { CpuRuntime } from "./runtime.js";
import { splitByCopies } from "../split_copies.js";

/** Op codes shared with assembly/elementwise.ts. */
export const UNARY_CODE: Record<UnaryOp, number> = {
  silu: 0,
  gelu: 1,
  gelu_tanh: 2,
  relu: 3,
  relu_sq: 4,
  sigmoid: 5,
  softplus: 6,
  exp: 7,
  tanh: 8,
  neg: 9,
  square: 10,
};
const BINARY_CODE: Record<BinaryOp, number> = { add: 0, sub: 1, mul: 2 };
const HALF_KIND = { f32: 0, f16: 1, bf16: 2 } as const;

/** Work per thread below which a kernel stays on fewer threads (elements, or flops). */
export const GRAIN = {
  /** streaming ops: a few cycles per element */
  memory: 1 << 16,
  /** transcendental elementwise ops (exp, erf, tanh) */
  math: 1 << 13,
  /** rows of norms / softmax, in elements */
  rows: 1 << 14,
  /** matrix products and attention, in flops */
  flops: 1 << 21,
  /**
   * matrix-vector products (M <= 4), in weights: they are memory-bound, so a thread is worth its
   * dispatch (a few microseconds) once it streams ~128 KiB, not once it has 2^21 flops to do
   */
  weights: 1 << 15,
};

/**
 * Blocks of rows a norm backward sums its weight gradients in (fewer when there are fewer rows):
 * enough for every thread of a large machine, few enough that adding the blocks' rows stays a
 * small pass next to the rows themselves.
 */
const NORM_ROW_BLOCKS = 64;

const f32bits = new Float32Array(1);
const i32bits = new Int32Array(f32bits.buffer);

export function cpuCoreKernels(rt: CpuRuntime): CoreKernels<HostArray> {
  const p = (h: HostArray | null, what: string) => rt.ptr(h, what);
  const flat = (name: string, work: number, grain: number, ...args: number[]) => rt.call(name, rt.threadsFor(work, grain), ...args);

  /**
   * A norm backward: dx, and its weight gradients as partial rows, one per block of rows, then
   * added to dw (and db) in block order. The blocks depend on the row count alone, so the sums are
   * the same bits on any number of threads (a row split by thread made them depend on it).
   */
  function normBackward(name: string, rows: number, C: number, width: number, args: (partials: number, blocks: number) => number[], reduce: (partials: number, blocks: number) => void) {
    const blocks = Math.min(rows, NORM_ROW_BLOCKS);
    rt.withTemp(blocks * width * C * 4, (partials) => {
      rt.call(name, Math.min(rt.threadsFor(rows * C, GRAIN.rows), blocks), ...args(partials, blocks));
      reduce(partials, blocks);
    });
  }

  const kernels: CoreKernels<HostArray> = {
    fill(out, value, n) {
      if (n <= 0) return;
      let bits: number;
      if (out instanceof Float32Array) {
        f32bits[0] = value;
        bits = i32bits[0];
      } else {
        bits = out instanceof Uint16Array ? (value & 0xffff) << 16 >> 16 : value | 0;
      }
      flat("fill", n, GRAIN.memory, p(out, "out"), bits, n, out.BYTES_PER_ELEMENT);
    },

    copy2d(out, x, rows, cols, outStride, outOffset, xStride, xOffset, accumulate) {
      if (rows <= 0 || cols <= 0) return;
      const bytes = x.BYTES_PER_ELEMENT;
      if (out.BYTES_PER_ELEMENT !== bytes) throw new Error("internal: copy2d between element sizes");
      if (accumulate && !(out instanceof Float32Array)) throw new Error("internal: copy2d accumulate needs f32");
      flat("copy2d", rows * cols, GRAIN.memory, p(out, "out"), p(x, "x"), rows, cols, outStride, outOffset, xStride, xOffset, accumulate ? 1 : 0, bytes);
    },

    split(outs, x, rows, sizes) {
      // one native copy a piece: on the CPU a kernel call costs no dispatch
      splitByCopies(kernels.copy2d, outs, x, rows, sizes);
    },

    cast(out, x, n, outDtype, xDtype) {
      if (n <= 0) return;
      if (outDtype === xDtype) return kernels.copy2d(out, x, 1, n, n, 0, n, 0, false);
      flat("cast", n, GRAIN.memory, p(out, "out"), p(x, "x"), n, HALF_KIND[outDtype], HALF_KIND[xDtype]);
    },

    unaryForward(op, out, x, n) {
      if (n <= 0) return;
      flat("unaryForward", n, GRAIN.math, UNARY_CODE[op], p(out, "out"), p(x, "x"), n);
    },

    unaryBackward(op, dx, dy, x, n) {
      if (n <= 0) return;
      flat("unaryBackward", n, GRAIN.math, UNARY_CODE[op], p(dx, "dx"), p(dy, "dy"), p(x, "x"), n);
    },

    binaryForward(op, out, a, b, n, bn) {
      if (n <= 0) return;
      flat("binaryForward", n, GRAIN.memory, BINARY_CODE[op], p(out, "out"), p(a, "a"), p(b, "b"), n, bn);
    },

    axpby(out, alpha, x, beta, y, n) {
      if (n <= 0) return;
      flat("axpby", n, GRAIN.memory, p(out, "out"), alpha, p(x, "x"), beta, beta === 0 ? 0 : p(y, "y"), n);
    },

    sumRows(out, x, rows, cols, accumulate) {
      if (cols <= 0) return;
      flat("sumRows", rows * cols, GRAIN.memory, p(out, "out"), p(x, "x"), rows, cols, accumulate ? 1 : 0);
    },

    swigluForward(out, g, u, n) {
      if (n <= 0) return;
      flat("swigluForward", n, GRAIN.math, p(out, "out"), p(g, "g"), p(u, "u"), n);
    },

    swigluBackward(dg, du, dy, g, u, n) {
      if (n <= 0) return;
      flat("swigluBackward", n, GRAIN.math, p(dg, "dg"), p(du, "du"), p(dy, "dy"), p(g, "g"), p(u, "u"), n);
    },

    matmul(out, a, b, d: MatmulDims) {
      const batch = d.batch ?? 1;
      const { M, N, K } = d;
      if (M <= 0 || N <= 0 || batch <= 0) return;
      const half = d.bDtype === "f16" ? 8 : d.bDtype === "bf16" ? 16 : 0;
      if ((half !== 0) !== b instanceof Uint16Array) throw new Error(`internal: matmul b storage does not match bDtype ${d.bDtype ?? "f32"}`);
      const flags = (d.transA ? 1 : 0) | (d.transB ? 2 : 0) | (d.accumulate ? 4 : 0) | half;
      const [scratch, stride] = rt.scratch(rt.exports.matmulScratchBytes(K));
      const nth = M <= rt.exports.matmulSmallM() ? rt.threadsFor(N * K * batch, GRAIN.weights) : rt.threadsFor(2 * M * N * Math.max(K, 1) * batch, GRAIN.flops);
      rt.call(
        "matmul", nth, p(out, "out"), p(a, "a"), p(b, "b"), M, N, K, flags, batch,
        d.strideA ?? M * K, d.strideB ?? K * N, d.strideOut ?? M * N, scratch, stride, rt.pool.counter,
      );
    },

    embeddingForward(out, ids, table, n, C, tableDtype = "f32") {
      if (n <= 0 || C <= 0) return;
      if ((tableDtype !== "f32") !== table instanceof Uint16Array) throw new Error(`internal: embedding table storage does not match tableDtype ${tableDtype}`);
      flat("embeddingForward", n * C, GRAIN.memory, p(out, "out"), p(ids, "ids"), p(table, "table"), n, C, HALF_KIND[tableDtype]);
    },

    embeddingBackward(dtable, dout, ids, n, C) {
      if (n <= 0 || C <= 0) return;
      flat("embeddingBackward", n * C, GRAIN.memory, p(dtable, "dtable"), p(dout, "dout"), p(ids, "ids"), n, C);
    },

    rmsnormForward(out, rstd, x, w, rows, C, eps, offset) {
      if (rows <= 0) return;
      flat("rmsnormForward", rows * C, GRAIN.rows, p(out, "out"), p(rstd, "rstd"), p(x, "x"), p(w, "w"), rows, C, eps, offset);
    },

    rmsnormBackward(dx, dw, dy, x, w, rstd, rows, C, offset) {
      if (rows <= 0) return;
      const args = (partials: number, blocks: number) => [p(dx, "dx"), p(dy, "dy"), p(x, "x"), p(w, "w"), p(rstd, "rstd"), rows, C, offset, partials, blocks];
      normBackward("rmsnormBackward", rows, C, 1, args, (partials, blocks) => {
        rt.call("reducePartials", rt.threadsFor(blocks * C, GRAIN.memory), p(dw, "dw"), partials, blocks, C, C);
      });
    },

    layernormForward(out, mean, rstd, x, w, b, rows, C, eps) {
      if (rows <= 0) return;
      flat("layernormForward", rows * C, GRAIN.rows, p(out, "out"), p(mean, "mean"), p(rstd, "rstd"), p(x, "x"), p(w, "w"), p(b, "b"), b ? 1 : 0, rows, C, eps);
    },

    layernormBackward(dx, dw, db, dy, x, w, mean, rstd, rows, C) {
      if (rows <= 0) return;
      const args = (partials: number, blocks: number) => [
        p(dx, "dx"), db ? 1 : 0, p(dy, "dy"), p(x, "x"), p(w, "w"), p(mean, "mean"), p(rstd, "rstd"), rows, C, partials, blocks,
      ];
      normBackward("layernormBackward", rows, C, 2, args, (partials, blocks) => {
        const t = rt.threadsFor(blocks * C, GRAIN.memory);
        rt.call("reducePartials", t, p(dw, "dw"), partials, blocks, 2 * C, C);
        if (db) rt.call("reducePartials", t, p(db, "db"), partials + C * 4, blocks, 2 * C, C);
      });
    },

    ropeForward(out, x, invFreq, d: RopeDims) {
      const { B, T, H, K, rotDim } = d;
      if (B * T * H <= 0) return;
      const [scratch, stride] = rt.scratch(Math.max(rotDim, 1) * 4);
      flat(
        "ropeForward", B * T * H * K, GRAIN.rows, p(out, "out"), p(x, "x"), p(invFreq, "invFreq"), B, T, H, K, rotDim,
        d.pos0, d.attnScaling, d.inverse ? 1 : 0, scratch, stride,
      );
    },

    attentionForward(out, lse, q, k, v, d) {
      if (d.B * d.T * d.H <= 0) return;
      if (d.T === 1) return attentionDecode(rt, d, p(out, "out"), p(lse, "lse"), p(q, "q"), p(k, "k"), p(v, "v"), kvHalfOf(d, k, v));
      const [scratch, stride] = attentionScratch(rt, d);
      const kvHalf = kvHalfOf(d, k, v);
      const run = (packed: number) =>
        rt.call("attentionForward", attentionThreads(rt, d), p(out, "out"), p(lse, "lse"), p(q, "q"), p(k, "k"), p(v, "v"), ...dimArgs(d), scratch, stride, rt.pool.counter, packed, kvHalf);
      // when several query blocks (and query heads of a group) read the same keys, pack K^T and
      // V into micro-kernel panels once instead of once per query block
      if (d.T <= rt.exports.attentionQueryBlock() || d.S <= 0) return run(0);
      const floats = rt.exports.attentionPackedFloats(d.B, d.S, d.G, d.K);
      rt.withTemp(floats * 4, (packed) => {
        rt.call("attentionPackKV", rt.threadsFor(2 * d.B * d.S * d.G * d.K, GRAIN.memory), packed, p(k, "k"), p(v, "v"), d.B, d.S, d.G, d.K, d.kvRows, kvHalf);
        run(packed);
      });
    },

    attentionBackward(dq, dk, dv, dout, q, k, v, out, lse, d) {
      const D = (at: number) => rt.call("attentionRowDot", rt.threadsFor(d.B * d.T * d.H * d.K, GRAIN.memory), at, p(dout, "dout"), p(out, "out"), d.B, d.T, d.H, d.K);
      attentionBackward(rt, d, dq, dk, dv, dout, q, k, v, lse, null, D);
    },

    attentionNaiveForward(out, probs, q, k, v, d) {
      if (d.B * d.T * d.H <= 0) return;
      const [scratch, stride] = attentionScratch(rt, d);
      rt.call("attentionNaiveForward", attentionThreads(rt, d), p(out, "out"), p(probs, "probs"), p(q, "q"), p(k, "k"), p(v, "v"), ...dimArgs(d), scratch, stride, rt.pool.counter);
    },

    attentionNaiveBackward(dq, dk, dv, dout, q, k, v, probs, d) {
      const D = (at: number) => {
        const [scratch, stride] = attentionScratch(rt, d);
        rt.call(
          "attentionNaiveRowDot", attentionThreads(rt, d), at, p(dout, "dout"), p(probs, "probs"), p(v, "v"),
          d.B, d.T, d.S, d.H, d.G, d.K, d.kvRows, scratch, stride, rt.pool.counter,
        );
      };
      attentionBackward(rt, d, dq, dk, dv, dout, q, k, v, null, probs, D);
    },

    crossEntropyForward(loss, lse, logits, targets, N, V) {
      if (N > 0) flat("crossEntropyLse", N * V, GRAIN.math, p(lse, "lse"), p(logits, "logits"), N, V);
      rt.call("crossEntropyLoss", 1, p(loss, "loss"), p(lse, "lse"), p(logits, "logits"), p(targets, "targets"), N, V);
    },

    crossEntropyBackward(dlogits, dloss, logits, lse, targets, N, V) {
      if (N <= 0) return;
      flat("crossEntropyBackward", N * V, GRAIN.math, p(dlogits, "dlogits"), p(dloss, "dloss"), p(logits, "logits"), p(lse, "lse"), p(targets, "targets"), N, V);
    },
  };
  return kernels;
}

/**
 * One query row per sequence (decoding): split-K over ranges of keys that threads claim
 * (assembly/attention_decode.ts), then the ranges' partial results merged in order.
 */
function attentionDecode(rt: CpuRuntime, d: AttentionDims, out: number, lse: number, q: number, k: number, v: number, kvHalf: number): void {
  const per = rt.exports.attentionDecodePartialFloats(d.H, d.K);
  const ranges = rt.exports.attentionDecodeRanges(d.S);
  const [scratch, stride] = rt.scratch(rt.exports.attentionDecodeScratchFloats(d.H, d.K) * 4);
  rt.withTemp(d.B * ranges * per * 4, (partials) => {
    // memory-bound like a matrix-vector product: threads by the cached keys and values streamed
    const nth = Math.min(rt.threadsFor(2 * d.B * d.S * d.G * d.K, GRAIN.weights), d.B * ranges);
    rt.call("attentionDecode", nth, partials, q, k, v, d.B, d.S, d.H, d.G, d.K, d.scale, d.causal ? 1 : 0, d.qOffset, d.kvRows, scratch, stride, rt.pool.counter, kvHalf);
    rt.call("attentionDecodeCombine", 1, out, lse, partials, d.B, d.S, d.H, d.K);
  });
}

/** 1 for an f16 KV cache (AttentionDims.kvDtype), whose storage must then be 16-bit. */
function kvHalfOf(d: AttentionDims, k: HostArray, v: HostArray): number {
  const half = d.kvDtype === "f16";
  if (half !== (k instanceof Uint16Array) || half !== (v instanceof Uint16Array)) throw new Error(`internal: attention k/v storage does not match kvDtype ${d.kvDtype ?? "f32"}`);
  return half ? 1 : 0;
}

function dimArgs(d: AttentionDims): number[] {
  return [d.B, d.T, d.S, d.H, d.G, d.K, d.scale, d.causal ? 1 : 0, d.qOffset, d.kvRows];
}

function attentionScratch(rt: CpuRuntime, d: AttentionDims): [number, number] {
  return rt.scratch(rt.exports.attentionScratchFloats(d.K, Math.max(d.kvRows, d.S)) * 4);
}

/** Threads for attention: by flops (2 products of T x S x K per head, an upper bound under the causal mask). */
function attentionThreads(rt: CpuRuntime, d: AttentionDims): number {
  return rt.threadsFor(4 * d.B * d.H * d.T * d.S * d.K, GRAIN.flops);
}

/**
 * The shared backward: D (B, H, T) first (rowDot), then the key-block kernel with per-thread
 * dQ buffers, then their sum into dq.
 */
function attentionBackward(
  rt: CpuRuntime, d: AttentionDims, dq: HostArray, dk: HostArray, dv: HostArray, dout: HostArray,
  q: HostArray, k: HostArray, v: HostArray, lse: HostArray | null, probs: HostArray | null, rowDot: (D: number) => void,
): void {
  const p = (h: HostArray | null, what: string) => rt.ptr(h, what);
  const nq = d.B * d.T * d.H * d.K;
  const nth = attentionThreads(rt, d);
  const dqBytes = Math.ceil((Math.max(nq, 1) * 4) / 64) * 64; // partial buffers start on cache lines
  rt.withTemp(Math.max(d.B * d.H * d.T, 1) * 4, (D) => {
    rowDot(D);
    rt.withTemp((nth - 1) * dqBytes + 64, (parts) => {
      const [scratch, stride] = attentionScratch(rt, d);
      rt.call(
        "attentionBackward", nth, p(dq, "dq"), p(dk, "dk"), p(dv, "dv"), p(dout, "dout"), p(q, "q"), p(k, "k"), p(v, "v"),
        p(lse, "lse"), p(probs, "probs"), D, probs ? 1 : 0, ...dimArgs(d), parts, dqBytes, scratch, stride, rt.pool.counter,
      );
      if (nth > 1) rt.call("reducePartials", rt.threadsFor(nq, GRAIN.memory), p(dq, "dq"), parts, nth - 1, dqBytes / 4, nq);
    });
  });
}
