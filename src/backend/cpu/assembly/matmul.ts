/**
 * matmul: out (M, N) (+)= op(a) (M, K) @ op(b) (K, N), optionally batched.
 *
 * Large products run the packed, cache-blocked GEMM of gemm.ts: for each NC-column block and
 * KC-deep slice, B is packed once (KC x NC, kept in L2), then for each MC-row block A is packed
 * (MC x KC), and the 4x8 micro-kernel sweeps B micro-panels (L1) against the A panels.
 * Threads claim chunks of output rows or columns (whichever dimension is longer) from a shared
 * counter and pack their own operands, so they never wait for each other.
 *
 * Products with M <= 4 (decoding: one token per sequence) are memory-bound and go to matvec.ts:
 * each weight is read once, streamed from its storage without packing; threads split the N outputs.
 */
import { MR, NR, microEdge, packA, packB, packBHalf } from "./gemm";
import { F16, BF16 } from "./half";
import { matvec, matvecRows, SMALL_M, MATVEC_PIECE } from "./matvec";
import { claim, at32 } from "./common";

const KC = 256;
const MC = 128;
const NC = 1024;

const TRANS_A = 1;
const TRANS_B = 2;
const ACCUMULATE = 4;
/** b holds f16 (8) or bf16 (16) values: weights widened to f32 as they are read */
const B_F16 = 8;
const B_BF16 = 16;

/** Largest M that takes the matrix-vector path (matvec.ts). */
export function matmulSmallM(): i32 {
  return SMALL_M;
}

/** Per-thread scratch bytes matmul needs (packed A block, packed B block, an edge tile, small-M rows twice). */
export function matmulScratchBytes(K: i32): i32 {
  return (MC * KC + KC * NC + MR * NR) * 4 + 2 * SMALL_M * max(K, 1) * 4;
}

export function matmul(
  tid: i32, nth: i32, out: usize, a: usize, b: usize, M: i32, N: i32, K: i32, flags: i32,
  batch: i32, strideA: i32, strideB: i32, strideOut: i32, scratch: usize, scratchStride: i32, counter: usize,
): void {
  const mine = scratch + <usize>tid * scratchStride;
  const transA = (flags & TRANS_A) != 0;
  const transB = (flags & TRANS_B) != 0;
  const accumulate = (flags & ACCUMULATE) != 0;
  const bkind = (flags & B_F16) != 0 ? F16 : (flags & B_BF16) != 0 ? BF16 : 0;
  const bbytes: usize = bkind == 0 ? 4 : 2;
  // byte strides of element (row, k) of op(a) and (k, col) of op(b)
  const ars: usize = transA ? 4 : <usize>K * 4;
  const aks: usize = transA ? <usize>M * 4 : 4;
  const bks: usize = transB ? bbytes : <usize>N * bbytes;
  const bjs: usize = transB ? <usize>K * bbytes : bbytes;
  if (M <= SMALL_M) {
    matvecItems(tid, nth, out, a, ars, aks, b, bks, bjs, bbytes, bkind, M, N, K, accumulate, batch, strideA, strideB, strideOut, mine, counter);
    return;
  }
  // work items: each product is cut into chunks of rows (or of columns, whichever dimension is
  // longer), claimed dynamically so that a thread the OS preempts does not hold the others up.
  // About four chunks per thread; each chunk packs its own operands.
  const byRows = M >= N;
  const extent = byRows ? M : N;
  const align = byRows ? MR : NR;
  let chunk = extent;
  if (nth > 1) chunk = min(extent, max(128, (((extent + 4 * nth - 1) / (4 * nth) + align - 1) / align) * align));
  const chunks = (extent + chunk - 1) / chunk;
  const items = batch * chunks;
  for (let item = claim(counter); item < items; item = claim(counter)) {
    const p = item / chunks;
    const lo = (item % chunks) * chunk;
    const hi = min(extent, lo + chunk);
    const o = at32(out, p * strideOut);
    const ap = at32(a, p * strideA);
    const bp = b + <usize>p * strideB * bbytes;
    if (K == 0) {
      // an empty sum: zeros, or the output unchanged when accumulating
      const r0 = byRows ? lo : 0;
      const r1 = byRows ? hi : M;
      const c0 = byRows ? 0 : lo;
      const c1 = byRows ? N : hi;
      if (!accumulate) for (let i = r0; i < r1; i++) memory.fill(at32(o, i * N + c0), 0, <usize>(c1 - c0) * 4);
    } else if (byRows) {
      blocked(o, N, ap, ars, aks, bp, bks, bjs, bkind, K, lo, hi, 0, N, accumulate, mine);
    } else {
      blocked(o, N, ap, ars, aks, bp, bks, bjs, bkind, K, 0, M, lo, hi, accumulate, mine);
    }
  }
}

/**
 * Matrix-vector products split over output columns by guided self-scheduling: each claim takes
 * remaining / (2 nth) columns (f16 weights: remaining / nth, see below) and at least
 * MATVEC_PIECE, so pieces shrink towards the end and a thread that starts late, runs slowly (a
 * core shared with another process) or is preempted holds only a small one when the others run
 * out. The first pieces are large because a piece is
 * one sequential stream of weight rows (matvec.ts): capping them at N / (8 nth), as before the
 * rows were streamed in order, timed 3-10% slower on two threads (3072x768, 768x1536).
 * The columns of all `batch` products form one range; a piece never crosses a product.
 */
function matvecItems(
  tid: i32, nth: i32, out: usize, a: usize, ars: usize, aks: usize, b: usize, bks: usize, bjs: usize, bbytes: usize, bkind: i32,
  M: i32, N: i32, K: i32, accumulate: bool, batch: i32, strideA: i32, strideB: i32, strideOut: i32, scratch: usize, counter: usize,
): void {
  const total = batch * N;
  let prepared = -1;
  let scaled = false;
  for (;;) {
    const at = atomic.load<i32>(counter);
    if (at >= total) return;
    const p = at / N;
    const lo = at - p * N;
    // f16 matvecs are bound by each core's widening work, so the threads keep pace and halves
    // (one stream each) do best; f32 ones by the memory the cores share, where guided pieces
    // balance better (two threads, 3072x768: f16 halves 169 vs guided 177 us, f32 248 vs 201)
    const piece = bkind == F16 ? (N - lo) / nth : (N - lo) / (2 * nth);
    const hi = nth == 1 ? N : min(N, lo + max(MATVEC_PIECE, ((piece + 15) >> 4) << 4));
    if (nth > 1 && atomic.cmpxchg<i32>(counter, at, p * N + hi) != at) continue;
    if (nth == 1) store<i32>(counter, p * N + hi);
    const o = at32(out, p * strideOut);
    if (K == 0) {
      if (!accumulate) for (let i = 0; i < M; i++) memory.fill(at32(o, i * N + lo), 0, <usize>(hi - lo) * 4);
      continue;
    }
    if (prepared != p) {
      scaled = matvecRows(scratch, at32(a, p * strideA), ars, aks, M, K, bkind);
      prepared = p;
    }
    matvec(o, scratch, scaled, b + <usize>p * strideB * bbytes, bks, bjs, bkind, M, N, K, lo, hi, accumulate);
  }
}

/** The cache-blocked GEMM over output rows [m0, m1) x columns [n0, n1). */
function blocked(
  out: usize, N: i32, a: usize, ars: usize, aks: usize, b: usize, bks: usize, bjs: usize, bkind: i32, K: i32,
  m0: i32, m1: i32, n0: i32, n1: i32, accumulate: bool, scratch: usize,
): void {
  const ap = scratch;
  const bp = ap + MC * KC * 4;
  const tile = bp + KC * NC * 4;
  const ldc = <usize>N * 4;
  for (let jc = n0; jc < n1; jc += NC) {
    const nc = min(NC, n1 - jc);
    for (let pc = 0; pc < K; pc += KC) {
      const kc = min(KC, K - pc);
      if (bkind == 0) packB(bp, b + <usize>pc * bks + <usize>jc * bjs, bks, bjs, kc, nc);
      else packBHalf(bp, b + <usize>pc * bks + <usize>jc * bjs, bks, bjs, kc, nc, bkind);
      const add = accumulate || pc > 0;
      for (let ic = m0; ic < m1; ic += MC) {
        const mc = min(MC, m1 - ic);
        packA(ap, a + <usize>ic * ars + <usize>pc * aks, ars, aks, mc, kc);
        for (let jr = 0; jr < nc; jr += NR) {
          const nr = min(NR, nc - jr);
          const bpanel = bp + <usize>jr * kc * 4;
          for (let ir = 0; ir < mc; ir += MR) {
            const c = out + (<usize>(ic + ir) * N + jc + jr) * 4;
            microEdge(ap + <usize>ir * kc * 4, bpanel, kc, c, ldc, add, min(MR, mc - ir), nr, tile);
          }
        }
      }
    }
  }
}
