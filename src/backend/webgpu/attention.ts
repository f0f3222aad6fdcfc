/**
 * Tiled attention in WGSL: the FlashAttention-2 forward (attention_forward.ts) and backward
 * (attention_backward.ts: a dK/dV pass over key blocks and a dQ pass over query blocks); a single
 * query row (decoding) takes the split-K kernels of attention_decode.ts.
 * Layouts as backend/ref/attention.ts: q, out (B, T, H, K); k, v (B, kvRows, G, K); lse (B, H, T).
 *
 * Tile shapes are chosen per head size (and, for the forward, the number of query rows) from the
 * device's workgroup memory (48 KiB on an H100, 32 KiB on SwiftShader): the first shape of a
 * list, best first, that fits. Every head size up
 * to 256 works (vec4 global loads when K % 4 == 0). Row maxima and sums are combined with
 * subgroup shuffles when the device's subgroups are at least as wide as the threads of a row.
 */
import type { AttentionDims, CoreKernels } from "../kernels.js";
import { SeqlabError } from "../../util/errors.js";
import type { GpuContext } from "./context.js";
import { grid1d } from "./context.js";
import type { GpuTensorBuffer } from "./pool.js";
import { MAX_HEAD_SIZE, kv4, threadsOf, uniformValues, type TileShape } from "./attention_tiles.js";
import { forwardBytes, forwardDef, forwardValid, type ForwardTiles } from "./attention_forward.js";
import { backwardBytes, backwardDef, backwardValid, rowDotDef, type BackwardKind, type BackwardTile } from "./attention_backward.js";
import { dispatchAttentionDecode } from "./attention_decode.js";
import { dispatchAttentionMma, mmaTilesFor, type MmaTiles } from "./attention_mma.js";

type S = GpuTensorBuffer;

export { MAX_HEAD_SIZE };

type Shape = Omit<TileShape, "TX">;
/** minT, maxT: taken only for this many query rows */
type ForwardShape = Omit<ForwardTiles, "TX" | "shuffle"> & { minT?: number; maxT?: number };

/**
 * (BM, BN, TY) candidates, best first; TX, the threads of a row, follows from the head size.
 * First (head sizes up to 64 on 48 KiB, from 1024 query rows, the lengths it was measured at):
 * 128-query blocks, 8 x 8 scores and 8 rows x 8 columns of O per thread, P shuffled between the
 * lanes of a row, K and V in one swizzled tile (48 KiB with K = 64); on an H200 1.1-1.3x the
 * 64 x 32 kernel that follows it (bench/notes/gpu-tuning.md). Up to 16k rows its workgroups run
 * over heads first (hx: the longest blocks of all heads start first; 1.29x at 4k, 1.02x at 16k,
 * 0.98x at 64k on an H200). Shorter T (decoding steps, short prompts) keep the 64 x 32 kernel:
 * a 128-row block would be mostly padding.
 */
const FORWARD_SHAPES: ForwardShape[] = [
  { BM: 128, BN: 64, TY: 16, pv: "shfl", kvShared: true, swz: true, pf: false, hx: true, minT: 1024, maxT: 16384 },
  { BM: 128, BN: 64, TY: 16, pv: "shfl", kvShared: true, swz: true, pf: false, minT: 1024 },
  { BM: 64, BN: 32, TY: 16 },
  { BM: 32, BN: 32, TY: 8 },
  { BM: 32, BN: 16, TY: 8 },
  { BM: 16, BN: 16, TY: 4 },
  { BM: 16, BN: 8, TY: 4 },
  { BM: 8, BN: 8, TY: 2 },
  { BM: 4, BN: 8, TY: 1 },
];
/**
 * Backward tiles with their threads per row fixed, tried before the generic shapes below (minT,
 * maxT: taken only for this many query rows). All shuffle P and dS and swizzle their tiles: 48
 * KiB with K = 64. From 2k rows dK/dV takes 64-key blocks with 4 x 4 scores a thread and dQ
 * 64-query blocks over 64-key steps through one streamed tile, 8 x 4 scores; heads first (hx)
 * up to 4k rows (1.08x at 4k, 0.99x at 16k). Below 2k both take 32-row blocks, twice the
 * workgroups. On an H200 fwd+bwd ran 1.21-1.27x the 32 x 32 kernels before them at T = 1k-64k
 * (bench/notes/gpu-tuning.md, "Attention backward").
 */
const BACKWARD_TUNED: Record<BackwardKind, (BackwardTile & { minT?: number; maxT?: number })[]> = {
  dkv: [
    { BM: 32, BN: 64, TY: 8, TX: 16, shfl: true, swz: true, hx: true, maxT: 2047 },
    { BM: 64, BN: 32, TY: 16, TX: 8, shfl: true, swz: true, hx: true, minT: 2048, maxT: 4096 },
    { BM: 64, BN: 32, TY: 16, TX: 8, shfl: true, swz: true, minT: 2048 },
  ],
  dq: [
    { BM: 32, BN: 64, TY: 8, TX: 16, shfl: true, swz: true, hx: true, maxT: 2047 },
    { BM: 64, BN: 64, TY: 8, TX: 16, shfl: true, swz: true, st1: true, hx: true, minT: 2048, maxT: 4096 },
    { BM: 64, BN: 64, TY: 8, TX: 16, shfl: true, swz: true, st1: true, minT: 2048 },
  ],
};
const BACKWARD_SHAPES: Shape[] = [
  { BM: 32, BN: 32, TY: 8 },
  { BM: 32, BN: 16, TY: 8 },
  { BM: 16, BN: 16, TY: 4 },
  { BM: 16, BN: 8, TY: 4 },
  { BM: 8, BN: 8, TY: 2 },
  { BM: 4, BN: 8, TY: 1 },
];

/**
 * Threads per row: `most`, or fewer for heads of under `most` vec4s (so that every thread owns
 * output columns). The forward takes 8, the backward 16: measured on an H200 (bench-gpu
 * --variants), 16 made the forward no faster (smaller thread tiles read more workgroup memory
 * per multiply-add) and the backward 1.4x faster (its 8-thread rows left 2 warps per workgroup).
 */
function threadsPerRow(K: number, most: number): number {
  return Math.min(most, 2 ** Math.floor(Math.log2(kv4(K))));
}

interface Limits {
  bytes: number;
  invocations: number;
}

/** The first valid shape whose kernel fits the limits, with as many threads per row as allowed. */
function choose<T extends Shape, C extends TileShape>(K: number, mostTX: number, shapes: T[], limits: Limits, make: (s: T & { TX: number }) => C, bytes: (c: C) => number, valid: (c: C) => boolean = () => true): C {
  // fewer threads per row before giving up (large heads on small workgroup memories)
  for (let TX = threadsPerRow(K, mostTX); TX >= 1; TX /= 2) {
    for (const s of shapes) {
      if (s.BN % TX !== 0) continue;
      const c = make({ ...s, TX });
      if (valid(c) && bytes(c) <= limits.bytes && threadsOf(c) <= limits.invocations) return c;
    }
  }
  throw new SeqlabError(`webgpu: no attention tile fits head size ${K} in ${limits.bytes} bytes of workgroup memory`);
}

/**
 * Query rows from which the forward runs on tensor cores (attention_mma.ts) where the device has
 * them. On an H200 (B = 1, H = 16, K = 64, causal; bench/notes/gpu-tuning.md) the SIMT kernel was
 * faster at 1k and 4k rows (15.4 / 30.6 TFLOP/s against 10.1 / 26.3: too few workgroups to fill
 * the card, and the split copies' cost), the tensor cores from 8k (32.4 against 28.3 at 8k rows,
 * 35.7 / 36.4 against 31.3 / 32.4 at 16k / 64k).
 */
export const MMA_MIN_ROWS = 8192;

/** The tensor-core forward's tiles for T query rows, or null: no tensor cores, too few rows, or a head size it does not take. */
export function chooseMmaTiles(K: number, tensorCores: boolean, T: number, bytes: number): MmaTiles | null {
  return tensorCores && T >= MMA_MIN_ROWS ? mmaTilesFor(K, bytes, T) : null;
}

/**
 * The forward's tiles for head size K and T query rows (T picks among shapes measured best at
 * different lengths; absent, the shapes for long sequences).
 */
export function chooseForwardTiles(K: number, limits: Limits, subgroupMinSize: number, T = Infinity): ForwardTiles {
  const shapes = FORWARD_SHAPES.filter((s) => T >= (s.minT ?? 0) && T <= (s.maxT ?? Infinity)).map(({ minT: _, maxT: __, ...s }) => s);
  const make = (s: ForwardShape & { TX: number }): ForwardTiles => ({ ...s, shuffle: s.TX <= subgroupMinSize });
  return choose(K, 8, shapes, limits, make, (c) => forwardBytes(c, K), (c) => forwardValid(c, K));
}

/**
 * The backward's tiles of one kernel for head size K and T query rows: a tuned tile where it fits
 * (its shuffles need subgroups of subgroupMinSize >= TX lanes; 0: unknown, none taken), else the
 * first generic shape that fits.
 */
export function chooseBackwardTiles(kind: BackwardKind, K: number, limits: Limits, subgroupMinSize = 0, T = Infinity): BackwardTile {
  const fits = (c: BackwardTile) =>
    backwardValid(kind, c) && (!c.shfl || c.TX <= subgroupMinSize) && c.TX <= threadsPerRow(K, 16) && backwardBytes(kind, c, K) <= limits.bytes && threadsOf(c) <= limits.invocations;
  const tuned = BACKWARD_TUNED[kind].find((s) => T >= (s.minT ?? 0) && T <= (s.maxT ?? Infinity) && fits(s));
  if (tuned) {
    const { minT: _, maxT: __, ...c } = tuned;
    return c;
  }
  return choose(K, 16, BACKWARD_SHAPES, limits, (s) => s, (c) => backwardBytes(kind, c, K));
}

const tileKey = (c: TileShape) => `${c.BM}:${c.BN}:${c.TY}:${c.TX}`;
const backwardKey = (c: BackwardTile) => `${tileKey(c)}:${+!!c.shfl}:${+!!c.swz}:${+!!c.st1}:${+!!c.hx}`;

/** Record the forward with given tiles (the kernel table's entry, and benchmarks of other tiles). */
export function dispatchAttentionForward(ctx: GpuContext, c: ForwardTiles, out: S, lse: S, q: S, k: S, v: S, d: AttentionDims): void {
  if (d.B * d.T * d.H === 0) return;
  const vec = d.K % 4 === 0;
  const p = ctx.pipeline(`attentionForward:${d.K}:${tileKey(c)}:${+c.shuffle}:${+vec}:${c.pv ?? "wg"}:${+!!c.kvShared}:${+!!c.swz}:${c.pf ?? true}:${+!!c.qg}:${+!!c.hx}`, () => forwardDef(d.K, c, vec));
  const nQB = Math.ceil(d.T / c.BM);
  ctx.dispatch(p, [out, lse, q, k, v], uniformValues(d, nQB), c.hx ? [d.H, d.B, nQB] : [nQB, d.H, d.B]);
}

/** Record the backward with given tiles for its dK/dV and dQ passes. */
export function dispatchAttentionBackward(ctx: GpuContext, tiles: Record<BackwardKind, BackwardTile>, grads: [dq: S, dk: S, dv: S], dout: S, q: S, k: S, v: S, out: S, lse: S, d: AttentionDims): void {
  const [dq, dk, dv] = grads;
  if (d.B * d.kvRows * d.G === 0 && d.B * d.T * d.H === 0) return;
  const vec = d.K % 4 === 0;
  const n = d.B * d.H * d.T;
  const D = ctx.pool.acquire(Math.max(1, n) * 4);
  if (n > 0) ctx.dispatch(ctx.pipeline("attentionRowDot", rowDotDef), [D, dout, out], [n, d.T, d.H, d.K], grid1d(n, 64));
  const ckv = tiles.dkv;
  const pkv = ctx.pipeline(`attentionBackwardKV:${d.K}:${backwardKey(ckv)}:${+vec}`, () => backwardDef("dkv", d.K, ckv, vec));
  const nKB = Math.ceil(d.kvRows / ckv.BM);
  if (nKB > 0) ctx.dispatch(pkv, [dk, dv, dout, q, k, v, lse, D], uniformValues(d, nKB), ckv.hx ? [d.G, d.B, nKB] : [nKB, d.G, d.B]);
  const cq = tiles.dq;
  const pq = ctx.pipeline(`attentionBackwardQ:${d.K}:${backwardKey(cq)}:${+vec}`, () => backwardDef("dq", d.K, cq, vec));
  const nQB = Math.ceil(d.T / cq.BM);
  if (nQB > 0) ctx.dispatch(pq, [dq, dout, q, k, v, lse, D], uniformValues(d, nQB), cq.hx ? [d.H, d.B, nQB] : [nQB, d.H, d.B]);
  ctx.pool.release(D);
}

export function attentionKernels(ctx: GpuContext): Pick<CoreKernels<S>, "attentionForward" | "attentionBackward"> {
  const limits = (): Limits => ({ bytes: ctx.limits.maxComputeWorkgroupStorageSize, invocations: ctx.limits.maxComputeInvocationsPerWorkgroup });
  const checkDims = (d: AttentionDims) => {
    if (d.K > MAX_HEAD_SIZE) throw new SeqlabError(`webgpu: attention head size ${d.K} is above the supported ${MAX_HEAD_SIZE}`);
    if (d.H % d.G !== 0) throw new Error(`internal: attention H=${d.H} is not a multiple of G=${d.G}`);
  };
  return {
    attentionForward(out, lse, q, k, v, d) {
      checkDims(d);
      // one query row (decoding): split the keys over workgroups instead of one workgroup a head
      if (d.T === 1) return dispatchAttentionDecode(ctx, out, lse, q, k, v, d);
      const mma = chooseMmaTiles(d.K, ctx.acquired.tensorCores, d.T, limits().bytes);
      if (mma) dispatchAttentionMma(ctx, mma, out, lse, q, k, v, d);
      else dispatchAttentionForward(ctx, chooseForwardTiles(d.K, limits(), ctx.acquired.subgroupMinSize, d.T), out, lse, q, k, v, d);
    },

    attentionBackward(dq, dk, dv, dout, q, k, v, out, lse, d) {
      checkDims(d);
      const sg = ctx.acquired.subgroupMinSize;
      const tiles = { dkv: chooseBackwardTiles("dkv", d.K, limits(), sg, d.T), dq: chooseBackwardTiles("dq", d.K, limits(), sg, d.T) };
      dispatchAttentionBackward(ctx, tiles, [dq, dk, dv], dout, q, k, v, out, lse, d);
    },
  };
}
