/**
 * The kernel table every backend implements. Kernels are the only code that touches tensor
 * storage. Conventions (DESIGN.md): names are `<op><Pass>`; arguments are outputs, inputs,
 * parameters, then dims. `S` is the backend's storage handle (a typed array on the host
 * backends, a GPU buffer on WebGPU). Every buffer is dense row-major; dims name its layout.
 *
 * backend/ref holds the reference twin of every kernel: plain loops, one statement per
 * equation, the oracle that every fast backend is tested against.
 */

import type { ScanKernels } from "./kernels_scan.js";
import type { RwkvKernels } from "./kernels_rwkv.js";
import type { MoeKernels } from "./kernels_moe.js";
import type { TrainKernels } from "./kernels_train.js";
import type { DeltaNetKernels } from "./kernels_deltanet.js";

/** Elementwise functions with a known derivative. gelu_tanh is HF "gelu_new" / "gelu_pytorch_tanh". */
export type UnaryOp =
  | "silu"
  | "gelu"
  | "gelu_tanh"
  | "relu"
  | "relu_sq"
  | "sigmoid"
  | "softplus"
  | "exp"
  | "tanh"
  | "neg"
  | "square";

export type BinaryOp = "add" | "sub" | "mul";

/**
 * Storage precision of a weight operand. Half-precision weights (f16, bf16) stay half in memory
 * (a Uint16Array of bits on host backends) and are widened to f32 as a kernel reads them;
 * arithmetic and accumulation are always f32. They are inference-only: no kernel writes them.
 */
export type WeightDtype = "f32" | "f16" | "bf16";

export interface MatmulDims {
  /** out (M, N) = op(a) (M, K) @ op(b) (K, N); a is (K, M) when transA, b is (N, K) when transB. */
  M: number;
  N: number;
  K: number;
  transA: boolean;
  transB: boolean;
  /** out += product instead of out = product. */
  accumulate: boolean;
  /** Batched matmul: `batch` independent products at these element strides (0 broadcasts). */
  batch?: number;
  strideA?: number;
  strideB?: number;
  strideOut?: number;
  /**
   * Storage dtype of b, the weight operand (default "f32"). With "f16"/"bf16" b holds half bits
   * that are decoded on the fly (see WeightDtype); a and out are always f32. A backend that has
   * no native half path must throw a SeqlabError naming the backend rather than convert silently.
   */
  bDtype?: WeightDtype;
}

export interface AttentionDims {
  B: number;
  /** queries per sequence */
  T: number;
  /** keys per sequence that exist (past + current) */
  S: number;
  /** query heads, key/value heads (G divides H), head size */
  H: number;
  G: number;
  K: number;
  scale: number;
  causal: boolean;
  /** absolute position of query 0 among the keys: query i sees keys j <= qOffset + i */
  qOffset: number;
  /** rows per sequence in the k/v buffers (the cache capacity; S when not cached) */
  kvRows: number;
  /**
   * Storage of k and v (default "f32"). A KV cache may be kept in f16 (see Backend.kvCache):
   * decoding then reads half the bytes; values are widened as they are read and the arithmetic
   * stays f32. Only attentionForward takes f16; the backward and the materialised variants are
   * for training and memory experiments, which keep f32.
   */
  kvDtype?: "f32" | "f16";
  /** optional softcap / sliding window could go here */
}

export interface RopeDims {
  B: number;
  T: number;
  H: number;
  /** head size and the leading part of it that rotates (partial rotary) */
  K: number;
  rotDim: number;
  /** position of time step 0 */
  pos0: number;
  /** cos/sin multiplier (1 except for YaRN-style scaling) */
  attnScaling: number;
  /** rotate by -angle: the backward pass */
  inverse: boolean;
}

/**
 * The whole table: the core kernels below plus one interface per family of mixer kernels,
 * each in its own file (state-space scans, RWKV, mixture-of-experts, optimizers).
 */
export interface Kernels<S> extends CoreKernels<S>, ScanKernels<S>, RwkvKernels<S>, MoeKernels<S>, TrainKernels<S>, DeltaNetKernels<S> {}

export interface CoreKernels<S> {
  // ---- data movement ----
  fill(out: S, value: number, n: number): void;
  /**
   * 2-D strided copy: out[r*outStride + outOffset + c] (+)= x[r*xStride + xOffset + c] for
   * c < cols. Splits and concatenations along the last dim are this one kernel.
   */
  copy2d(
    out: S,
    x: S,
    rows: number,
    cols: number,
    outStride: number,
    outOffset: number,
    xStride: number,
    xOffset: number,
    accumulate: boolean,
  ): void;
  /**
   * Split along the last dim: outs[i] (rows, sizes[i]) = the columns offset_i .. offset_i +
   * sizes[i] of x (rows, sum of sizes). The same as one copy2d a piece, as one kernel: decoding
   * splits projections in every layer, and on a GPU every kernel is a dispatch.
   */
  split(outs: S[], x: S, rows: number, sizes: number[]): void;
  /** Convert between storage dtypes (f16/bf16 weights to f32 and back). */
  cast(out: S, x: S, n: number, outDtype: "f32" | "f16" | "bf16", xDtype: "f32" | "f16" | "bf16"): void;

  // ---- elementwise ----
  unaryForward(op: UnaryOp, out: S, x: S, n: number): void;
  /** dx = dy * f'(x) */
  unaryBackward(op: UnaryOp, dx: S, dy: S, x: S, n: number): void;
  /** out = a (op) b, where b repeats with period bn (bn divides n: bias rows, broadcast scalars). */
  binaryForward(op: BinaryOp, out: S, a: S, b: S, n: number, bn: number): void;
  /** out = alpha * x + beta * y (y ignored when beta is 0). */
  axpby(out: S, alpha: number, x: S, beta: number, y: S, n: number): void;
  /** out[c] (+)= sum over r of x[r, c]: bias gradients and broadcast backward. */
  sumRows(out: S, x: S, rows: number, cols: number, accumulate: boolean): void;
  /** out = silu(g) * u  (SwiGLU) */
  swigluForward(out: S, g: S, u: S, n: number): void;
  swigluBackward(dg: S, du: S, dy: S, g: S, u: S, n: number): void;

  // ---- linear algebra ----
  matmul(out: S, a: S, b: S, d: MatmulDims): void;

  // ---- embeddings, norms, positions ----
  /**
   * out (n, C) = table[ids] ; ids are i32 and already validated against V. tableDtype (default
   * "f32") is the table's storage dtype: half tables are widened to f32 rows (see WeightDtype).
   */
  embeddingForward(out: S, ids: S, table: S, n: number, C: number, tableDtype?: WeightDtype): void;
  /** dtable[ids[i]] += dout[i] */
  embeddingBackward(dtable: S, dout: S, ids: S, n: number, C: number): void;
  /** out = x * rstd * (w + offset); rstd (rows) saved for backward. offset is 1 for (1 + w) norms. */
  rmsnormForward(out: S, rstd: S, x: S, w: S, rows: number, C: number, eps: number, offset: number): void;
  /** dx = d/dx; dw += sum over rows */
  rmsnormBackward(dx: S, dw: S, dy: S, x: S, w: S, rstd: S, rows: number, C: number, offset: number): void;
  layernormForward(out: S, mean: S, rstd: S, x: S, w: S, b: S | null, rows: number, C: number, eps: number): void;
  /** dw, db accumulate */
  layernormBackward(
    dx: S,
    dw: S,
    db: S | null,
    dy: S,
    x: S,
    w: S,
    mean: S,
    rstd: S,
    rows: number,
    C: number,
  ): void;
  /** Rotary embedding, rotate-half form (HF), on x (B, T, H, K); invFreq has rotDim/2 entries. */
  ropeForward(out: S, x: S, invFreq: S, d: RopeDims): void;

  // ---- attention: q (B, T, H, K), k/v (B, kvRows, G, K), out (B, T, H, K) ----
  /** Tiled causal attention with an online softmax (O(T) memory); lse (B, H, T) is saved. */
  attentionForward(out: S, lse: S, q: S, k: S, v: S, d: AttentionDims): void;
  /** FlashAttention-2 style backward that recomputes probabilities from lse. */
  attentionBackward(dq: S, dk: S, dv: S, dout: S, q: S, k: S, v: S, out: S, lse: S, d: AttentionDims): void;
  /** Materialised attention: probs (B, H, T, S) is written out and saved (O(T^2) memory). */
  attentionNaiveForward(out: S, probs: S, q: S, k: S, v: S, d: AttentionDims): void;
  attentionNaiveBackward(dq: S, dk: S, dv: S, dout: S, q: S, k: S, v: S, probs: S, d: AttentionDims): void;

  // ---- loss ----
  /** loss[0] = mean over rows with target >= 0 of (lse - logit[target]); lse (N) saved. */
  crossEntropyForward(loss: S, lse: S, logits: S, targets: S, N: number, V: number): void;
  /** dlogits = dloss[0] / count * (softmax - onehot) on counted rows, 0 elsewhere */
  crossEntropyBackward(dlogits: S, dloss: S, logits: S, lse: S, targets: S, N: number, V: number): void;
}

/** Kernel names, for backends that want to list what they implement natively. */
export type KernelName = keyof Kernels<unknown>;
