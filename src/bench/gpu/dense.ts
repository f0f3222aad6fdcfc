/**
 * The dense kernels of the GPU benchmark: fp32 matmul (2 M N K FLOPs) and causal attention
 * B=1 H=16 K=64 (forward 4 K H per visible (query, key) pair, backward 2.5x the forward:
 * FlashAttention-2's count), with their checks against the CPU reference and the tile variants
 * of variants.ts.
 */
import type { WebGpuBackend } from "../../backend/webgpu/index.js";
import type { AttentionDims, MatmulDims } from "../../backend/kernels.js";
import { refKernels } from "../../backend/ref/index.js";
import { dispatchMatmul, type MatmulTile } from "../../backend/webgpu/matmul.js";
import { chooseSplits } from "../../backend/webgpu/matmul_splitk.js";
import { chooseForwardTiles, chooseMmaTiles, dispatchAttentionBackward, dispatchAttentionForward } from "../../backend/webgpu/attention.js";
import { dispatchAttentionMma, mmaName, type MmaTiles } from "../../backend/webgpu/attention_mma.js";
import { dispatchMatmulMma, matmulMmaName, type MatmulMmaTiles } from "../../backend/webgpu/matmul_mma.js";
import { forwardName, type ForwardTiles } from "../../backend/webgpu/attention_forward.js";
import type { BackwardTiles } from "./variants.js";
import { compare, filled, patterned, randn, timeIt, type Check, type Result } from "./timing.js";

/** A product out (M, N) = a (M, K) b (K, N), either operand stored transposed. */
export interface MatmulShape {
  M: number;
  N: number;
  K: number;
  transA: boolean;
  transB: boolean;
}

export const square = (n: number): MatmulShape => ({ M: n, N: n, K: n, transA: false, transB: false });

/**
 * Products with transposed operands: a Linear layer's forward is x W^T (NT, W stored (out, in)),
 * its weight gradient dy^T x (TN). The NT shapes are the Linear layers of a 2048-token prefill
 * of the decode section's 130M Mamba (in_proj, out_proj, x_proj, the 50280-word LM head), the TN
 * shapes the weight gradients of x_proj and out_proj over the same 2048 tokens (few output
 * tiles over a long K: what split-K is for).
 */
export const LINEAR_SHAPES: MatmulShape[] = [
  { M: 4096, N: 4096, K: 4096, transA: false, transB: true },
  { M: 4096, N: 4096, K: 4096, transA: true, transB: false },
  { M: 2048, N: 3072, K: 768, transA: false, transB: true },
  { M: 2048, N: 768, K: 1536, transA: false, transB: true },
  { M: 2048, N: 80, K: 1536, transA: false, transB: true },
  { M: 2048, N: 50280, K: 768, transA: false, transB: true },
  { M: 80, N: 1536, K: 2048, transA: true, transB: false },
  { M: 768, N: 1536, K: 2048, transA: true, transB: false },
];

/** "MxNxK", with the operands' layout when one is transposed: the key both sides report. */
export const matmulShapeName = (s: MatmulShape) => `${s.M}x${s.N}x${s.K}${s.transA || s.transB ? ` ${s.transA ? "T" : "N"}${s.transB ? "T" : "N"}` : ""}`;

/**
 * A product timed with the default plan, or with a variant's tile (in `splits` K slices: "auto" =
 * chooseSplits's), or on tensor cores with `mma`'s tiles.
 */
export async function benchMatmul(be: WebGpuBackend, s: MatmulShape, tile?: [string, MatmulTile], splits: number | "auto" = 1, mma?: MatmulMmaTiles): Promise<Result> {
  const a = patterned(be, s.M * s.K, 1);
  const b = patterned(be, s.K * s.N, 1);
  const out = filled(be, s.M * s.N, 0);
  const d: MatmulDims = { ...s, accumulate: false };
  const flops = 2 * s.M * s.N * s.K;
  const iterations = flops <= 2 * 4096 ** 3 ? 10 : 3;
  const S = splits !== "auto" ? splits : tile ? chooseSplits(tile[1], s.M, s.N, s.K, 1) : 1;
  const record = mma ? () => dispatchMatmulMma(be.ctx, mma, out, a, b, d) : tile ? () => dispatchMatmul(be.ctx, tile[1], out, a, b, d, S) : () => be.kernels.matmul(out, a, b, d);
  const { seconds, timing } = await timeIt(be, record, iterations);
  for (const h of [a, b, out]) be.release(h);
  return { section: "matmul", name: "matmul", shape: matmulShapeName(s), variant: mma ? matmulMmaName(mma) : tile ? `${tile[0]}${S > 1 ? ` split${S}` : ""}` : undefined, ms: seconds * 1e3, rate: flops / seconds / 1e12, unit: "TFLOP/s", iterations, timing };
}

export interface AttentionVariant {
  name: string;
  forward?: ForwardTiles;
  /** the forward on tensor cores with these tiles */
  mma?: MmaTiles;
  backward?: BackwardTiles;
}

export async function benchAttention(be: WebGpuBackend, T: number, backward: boolean, variant?: AttentionVariant): Promise<Result> {
  const B = 1;
  const H = 16;
  const K = 64;
  const d: AttentionDims = { B, T, S: T, H, G: H, K, scale: 1 / Math.sqrt(K), causal: true, qOffset: 0, kvRows: T };
  const n = B * T * H * K;
  const q = patterned(be, n, 1);
  const k = patterned(be, n, 1);
  const v = patterned(be, n, 1);
  const out = filled(be, n, 0);
  const lse = filled(be, B * H * T, 0);
  const grads = backward ? [patterned(be, n, 1), filled(be, n, 0), filled(be, n, 0), filled(be, n, 0)] : [];
  // the forward's tiles: the variant's, else the default's for this T (printed as the plan)
  const limits = { bytes: be.ctx.limits.maxComputeWorkgroupStorageSize, invocations: be.ctx.limits.maxComputeInvocationsPerWorkgroup };
  const mma = variant ? variant.mma : chooseMmaTiles(K, be.ctx.acquired.tensorCores, T, limits.bytes);
  const plan = mma ? mmaName(mma) : forwardName(variant?.forward ?? chooseForwardTiles(K, limits, be.ctx.acquired.subgroupMinSize, T));
  const record = () => {
    if (variant?.mma) dispatchAttentionMma(be.ctx, variant.mma, out, lse, q, k, v, d);
    else if (variant?.forward) dispatchAttentionForward(be.ctx, variant.forward, out, lse, q, k, v, d);
    else be.kernels.attentionForward(out, lse, q, k, v, d);
    if (backward) {
      const [dout, dq, dk, dv] = grads;
      if (variant?.backward) dispatchAttentionBackward(be.ctx, variant.backward, [dq, dk, dv], dout, q, k, v, out, lse, d);
      else be.kernels.attentionBackward(dq, dk, dv, dout, q, k, v, out, lse, d);
    }
  };
  const iterations = T <= 4096 ? 10 : T <= 16384 ? 3 : 1;
  const { seconds, timing } = await timeIt(be, record, iterations);
  for (const h of [q, k, v, out, lse, ...grads]) be.release(h);
  const pairs = (T * (T + 1)) / 2; // visible (query, key) pairs under the causal mask
  const forwardFlops = 4 * pairs * K * H * B;
  const flops = backward ? 3.5 * forwardFlops : forwardFlops;
  const name = backward ? "attention fwd+bwd" : "attention fwd";
  return { section: "attention", name, shape: `B${B} H${H} K${K} T${T} causal`, variant: variant?.name, ms: seconds * 1e3, rate: flops / seconds / 1e12, unit: "TFLOP/s", iterations, timing, extra: { plan } };
}

export async function checkMatmul(be: WebGpuBackend, name: string, tile: MatmulTile | null, d: MatmulDims, mma?: MatmulMmaTiles): Promise<Check> {
  const { M, N, K } = d;
  const errs = await compare(
    be,
    [randn(M * K), randn(K * N)],
    [M * N],
    ([out], [a, b]) => refKernels.matmul(out, a, b, d),
    ([out], [a, b]) => (mma ? dispatchMatmulMma(be.ctx, mma, out, a, b, d) : tile ? dispatchMatmul(be.ctx, tile, out, a, b, d) : be.kernels.matmul(out, a, b, d)),
  );
  return { kernel: "matmul", variant: name, shape: JSON.stringify(d), relErr: errs, ok: errs.every((e) => e < 1e-5) };
}

/** Inputs and reference outputs of one check shape, computed once for every variant checked on it. */
const attentionRefs = new Map<string, { q: Float32Array; k: Float32Array; v: Float32Array; dout: Float32Array; out: Float32Array; lse: Float32Array; grads?: Float32Array[] }>();

function attentionRef(d: AttentionDims, backward: boolean) {
  const key = JSON.stringify(d);
  let r = attentionRefs.get(key);
  if (!r) {
    const nq = d.B * d.T * d.H * d.K;
    const nkv = d.B * d.kvRows * d.G * d.K;
    r = { q: randn(nq), k: randn(nkv), v: randn(nkv), dout: randn(nq), out: new Float32Array(nq), lse: new Float32Array(d.B * d.H * d.T) };
    refKernels.attentionForward(r.out, r.lse, r.q, r.k, r.v, d);
    attentionRefs.set(key, r);
  }
  if (backward && !r.grads) {
    r.grads = [new Float32Array(r.q.length), new Float32Array(r.k.length), new Float32Array(r.k.length)];
    refKernels.attentionBackward(r.grads[0], r.grads[1], r.grads[2], r.dout, r.q, r.k, r.v, r.out, r.lse, d);
  }
  return r;
}

/** The forward (and, unless the variant has only forward tiles, the backward) against ref on shape d. */
export async function checkAttention(be: WebGpuBackend, v: AttentionVariant, d: AttentionDims): Promise<Check[]> {
  const backward = !(v.forward || v.mma) || !!v.backward;
  const r = attentionRef(d, backward);
  const checks: Check[] = [];
  const shape = JSON.stringify(d);
  const fwd = await compare(
    be,
    [r.q, r.k, r.v],
    [r.out.length, r.lse.length],
    ([out, lse]) => (out.set(r.out), lse.set(r.lse)),
    ([out, lse], [q_, k_, v_]) =>
      v.mma ? dispatchAttentionMma(be.ctx, v.mma, out, lse, q_, k_, v_, d) : v.forward ? dispatchAttentionForward(be.ctx, v.forward, out, lse, q_, k_, v_, d) : be.kernels.attentionForward(out, lse, q_, k_, v_, d),
  );
  checks.push({ kernel: "attentionForward", variant: v.name, shape, relErr: fwd, ok: fwd.every((e) => e < 1e-5) });
  if (!backward) return checks;
  const grads = r.grads!;
  const bwd = await compare(
    be,
    [r.dout, r.q, r.k, r.v, r.out, r.lse],
    grads.map((g) => g.length),
    (want) => want.forEach((w, i) => w.set(grads[i])),
    ([dq, dk, dv], ins) =>
      v.backward
        ? dispatchAttentionBackward(be.ctx, v.backward, [dq, dk, dv], ins[0], ins[1], ins[2], ins[3], ins[4], ins[5], d)
        : be.kernels.attentionBackward(dq, dk, dv, ins[0], ins[1], ins[2], ins[3], ins[4], ins[5], d),
  );
  checks.push({ kernel: "attentionBackward", variant: v.name, shape, relErr: bwd, ok: bwd.every((e) => e < 1e-4) });
  return checks;
}

/** Shapes for the checks: ragged, causal with a KV cache, grouped heads, and a full one. */
export const MATMUL_CHECKS: MatmulDims[] = [
  { M: 512, N: 512, K: 256, transA: false, transB: false, accumulate: false },
  { M: 300, N: 260, K: 200, transA: false, transB: true, accumulate: false },
  // large enough for the 128-wide tiles: aligned, and ragged with a transposed operand
  { M: 2048, N: 2048, K: 64, transA: false, transB: false, accumulate: false },
  { M: 1100, N: 2000, K: 36, transA: true, transB: false, accumulate: false },
  // a long K (the tensor cores' f32 accumulation drifts with it), both operands transposed
  { M: 256, N: 192, K: 4096, transA: true, transB: true, accumulate: false },
  // few output tiles over a long K (split-K), ragged: a weight gradient's layout, and the one
  // whose operands are rows over K
  { M: 300, N: 260, K: 2048, transA: true, transB: false, accumulate: false },
  { M: 384, N: 300, K: 1024, transA: false, transB: true, accumulate: false },
];
export const ATTENTION_CHECKS: AttentionDims[] = [
  { B: 1, T: 300, S: 300, H: 2, G: 1, K: 64, scale: 0.125, causal: true, qOffset: 0, kvRows: 300 },
  { B: 2, T: 70, S: 107, H: 4, G: 2, K: 64, scale: 0.125, causal: true, qOffset: 37, kvRows: 110 },
  { B: 1, T: 129, S: 129, H: 2, G: 2, K: 64, scale: 0.125, causal: false, qOffset: 0, kvRows: 129 },
  // long enough for the 128-row blocks of the default from 1024 rows: ragged, grouped heads
  { B: 1, T: 1100, S: 1100, H: 4, G: 2, K: 64, scale: 0.125, causal: true, qOffset: 0, kvRows: 1100 },
  // decoding: one query row over a long cache
  { B: 1, T: 1, S: 3000, H: 4, G: 4, K: 64, scale: 0.125, causal: true, qOffset: 2999, kvRows: 3100 },
  // long rows (the tensor cores' f32 accumulation drifts with the number of steps): every query
  // over 16k keys, a causal 4k square, 3000 keys
  { B: 1, T: 64, S: 16384, H: 1, G: 1, K: 64, scale: 0.125, causal: false, qOffset: 0, kvRows: 16384 },
  { B: 1, T: 4096, S: 4096, H: 2, G: 1, K: 64, scale: 0.125, causal: true, qOffset: 0, kvRows: 4096 },
  { B: 1, T: 3000, S: 3000, H: 1, G: 1, K: 64, scale: 0.125, causal: false, qOffset: 0, kvRows: 3000 },
];
