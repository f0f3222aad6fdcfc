/**
 * matmul: out (M, N) (+)= op(a) (M, K) @ op(b) (K, N), optionally batched.
 *
 * Large products run the packed, cache-blocked GEMM of gemm.ts: for each NC-column block and
 * KC-deep slice, B is packed once (KC x NC, kept in L2), then for each MC-row block A is packed
 * (MC x KC), and the 4x8 micro-kernel sweeps B micro-panels (L1) against the A panels.
 * Threads claim chunks of output rows or columns (whichever dimension is longer) from a shared
 * counter and pack their own operands, so they never wait for each other.
 *
 * Products with M <= 4 (decoding: one token per sequence) are memory-bound: each weight is
 * read once, streamed straight from its storage without packing, threads split the N outputs.
 */
import { MR, NR, microEdge, packA, packB } from "./gemm";
import { claim, hsum, at32 } from "./common";

const KC = 256;
const MC = 128;
const NC = 1024;
const SMALL_M = 4;

const TRANS_A = 1;
const TRANS_B = 2;
const ACCUMULATE = 4;

/** Per-thread scratch bytes matmul needs (packed A block, packed B block, an edge tile, small-M rows). */
export function matmulScratchBytes(K: i32): i32 {
  return (MC * KC + KC * NC + MR * NR) * 4 + SMALL_M * max(K, 1) * 4;
}

export function matmul(
  tid: i32, nth: i32, out: usize, a: usize, b: usize, M: i32, N: i32, K: i32, flags: i32,
  batch: i32, strideA: i32, strideB: i32, strideOut: i32, scratch: usize, scratchStride: i32, counter: usize,
): void {
  const mine = scratch + <usize>tid * scratchStride;
  const transA = (flags & TRANS_A) != 0;
  const transB = (flags & TRANS_B) != 0;
  const accumulate = (flags & ACCUMULATE) != 0;
  // byte strides of element (row, k) of op(a) and (k, col) of op(b)
  const ars: usize = transA ? 4 : <usize>K * 4;
  const aks: usize = transA ? <usize>M * 4 : 4;
  const bks: usize = transB ? 4 : <usize>N * 4;
  const bjs: usize = transB ? <usize>K * 4 : 4;
  // work items: each product is cut into chunks of rows (or of columns, whichever dimension is
  // longer; columns for small M), claimed dynamically so that a thread the OS preempts does
  // not hold the others up. About four chunks per thread; each chunk packs its own operands.
  const small = M <= SMALL_M;
  const byRows = !small && M >= N;
  const extent = byRows ? M : N;
  const align = byRows ? MR : small ? 16 : NR;
  const minChunk = small ? 64 : 128;
  let chunk = extent;
  if (nth > 1) chunk = min(extent, max(minChunk, (((extent + 4 * nth - 1) / (4 * nth) + align - 1) / align) * align));
  const chunks = (extent + chunk - 1) / chunk;
  const items = batch * chunks;
  for (let item = claim(counter); item < items; item = claim(counter)) {
    const p = item / chunks;
    const lo = (item % chunks) * chunk;
    const hi = min(extent, lo + chunk);
    const o = at32(out, p * strideOut);
    const ap = at32(a, p * strideA);
    const bp = at32(b, p * strideB);
    if (K == 0) {
      // an empty sum: zeros, or the output unchanged when accumulating
      const r0 = byRows ? lo : 0;
      const r1 = byRows ? hi : M;
      const c0 = byRows ? 0 : lo;
      const c1 = byRows ? N : hi;
      if (!accumulate) for (let i = r0; i < r1; i++) memory.fill(at32(o, i * N + c0), 0, <usize>(c1 - c0) * 4);
    } else if (small) {
      smallM(o, ap, ars, aks, bp, bks, bjs, M, N, K, lo, hi, accumulate, mine);
    } else if (byRows) {
      blocked(o, N, ap, ars, aks, bp, bks, bjs, K, lo, hi, 0, N, accumulate, mine);
    } else {
      blocked(o, N, ap, ars, aks, bp, bks, bjs, K, 0, M, lo, hi, accumulate, mine);
    }
  }
}

/** The cache-blocked GEMM over output rows [m0, m1) x columns [n0, n1). */
function blocked(
  out: usize, N: i32, a: usize, ars: usize, aks: usize, b: usize, bks: usize, bjs: usize, K: i32,
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
      packB(bp, b + <usize>pc * bks + <usize>jc * bjs, bks, bjs, kc, nc);
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

// ---- small M: matrix-vector products ----

function smallM(
  out: usize, a: usize, ars: usize, aks: usize, b: usize, bks: usize, bjs: usize,
  M: i32, N: i32, K: i32, n0: i32, n1: i32, accumulate: bool, rows: usize,
): void {
  // the M rows of op(a), contiguous
  for (let i = 0; i < M; i++) {
    const dst = rows + <usize>i * K * 4;
    const src = a + <usize>i * ars;
    if (aks == 4) memory.copy(dst, src, <usize>K * 4);
    else for (let k = 0; k < K; k++) store<f32>(dst + (<usize>k << 2), load<f32>(src + <usize>k * aks));
  }
  if (bks == 4) {
    dotRows(out, rows, b, bjs, M, N, K, n0, n1, accumulate);
  } else {
    for (let i = 0; i < M; i++) axpyRows(at32(out, i * N), rows + <usize>i * K * 4, b, bks, K, n0, n1, accumulate);
  }
}

@inline function put(p: usize, v: f32, accumulate: bool): void {
  store<f32>(p, accumulate ? load<f32>(p) + v : v);
}

/** b is (N, K) (transposed): out[i, n] = dot(row i, b[n]); four weight rows at a time. */
function dotRows(out: usize, rows: usize, b: usize, bjs: usize, M: i32, N: i32, K: i32, n0: i32, n1: i32, accumulate: bool): void {
  const K4 = K & ~3;
  let n = n0;
  for (; n + 4 <= n1; n += 4) {
    const w0 = b + <usize>n * bjs;
    const w1 = w0 + bjs;
    const w2 = w1 + bjs;
    const w3 = w2 + bjs;
    for (let i = 0; i < M; i++) {
      const x = rows + <usize>i * K * 4;
      let s0 = f32x4.splat(0), s1 = f32x4.splat(0), s2 = f32x4.splat(0), s3 = f32x4.splat(0);
      for (let k = 0; k < K4; k += 4) {
        const o = <usize>k << 2;
        const xv = v128.load(x + o);
        s0 = f32x4.add(s0, f32x4.mul(xv, v128.load(w0 + o)));
        s1 = f32x4.add(s1, f32x4.mul(xv, v128.load(w1 + o)));
        s2 = f32x4.add(s2, f32x4.mul(xv, v128.load(w2 + o)));
        s3 = f32x4.add(s3, f32x4.mul(xv, v128.load(w3 + o)));
      }
      let t0 = hsum(s0), t1 = hsum(s1), t2 = hsum(s2), t3 = hsum(s3);
      for (let k = K4; k < K; k++) {
        const o = <usize>k << 2;
        const xs = load<f32>(x + o);
        t0 += xs * load<f32>(w0 + o);
        t1 += xs * load<f32>(w1 + o);
        t2 += xs * load<f32>(w2 + o);
        t3 += xs * load<f32>(w3 + o);
      }
      const c = out + (<usize>i * N + n) * 4;
      put(c, t0, accumulate);
      put(c + 4, t1, accumulate);
      put(c + 8, t2, accumulate);
      put(c + 12, t3, accumulate);
    }
  }
  for (; n < n1; n++) {
    const w = b + <usize>n * bjs;
    for (let i = 0; i < M; i++) {
      const x = rows + <usize>i * K * 4;
      let s = f32x4.splat(0);
      for (let k = 0; k < K4; k += 4) s = f32x4.add(s, f32x4.mul(v128.load(x + (<usize>k << 2)), v128.load(w + (<usize>k << 2))));
      let t = hsum(s);
      for (let k = K4; k < K; k++) t += load<f32>(x + (<usize>k << 2)) * load<f32>(w + (<usize>k << 2));
      put(out + (<usize>i * N + n) * 4, t, accumulate);
    }
  }
}

/**
 * b is (K, N): out[n0:n1] = sum over k of x[k] * b[k, n0:n1]. Rows of b are streamed in order,
 * four at a time, into the output slice (which stays in L1): contiguous reads that the
 * prefetcher follows, where column passes would stride through memory.
 */
function axpyRows(out: usize, x: usize, b: usize, bks: usize, K: i32, n0: i32, n1: i32, accumulate: bool): void {
  const o = out + (<usize>n0 << 2);
  const len = n1 - n0;
  if (len <= 0) return;
  if (!accumulate) memory.fill(o, 0, <usize>len * 4);
  const len4 = len & ~3;
  let k = 0;
  for (; k + 4 <= K; k += 4) {
    const w0 = b + <usize>k * bks + (<usize>n0 << 2);
    const w1 = w0 + bks;
    const w2 = w1 + bks;
    const w3 = w2 + bks;
    const x0 = v128.load32_splat(x + (<usize>k << 2));
    const x1 = v128.load32_splat(x + (<usize>k << 2), 4);
    const x2 = v128.load32_splat(x + (<usize>k << 2), 8);
    const x3 = v128.load32_splat(x + (<usize>k << 2), 12);
    for (let c = 0; c < len4; c += 4) {
      const off = <usize>c << 2;
      let acc = v128.load(o + off);
      acc = f32x4.add(acc, f32x4.add(f32x4.mul(x0, v128.load(w0 + off)), f32x4.mul(x1, v128.load(w1 + off))));
      acc = f32x4.add(acc, f32x4.add(f32x4.mul(x2, v128.load(w2 + off)), f32x4.mul(x3, v128.load(w3 + off))));
      v128.store(o + off, acc);
    }
    const xs0 = load<f32>(x + (<usize>k << 2));
    const xs1 = load<f32>(x + (<usize>k << 2), 4);
    const xs2 = load<f32>(x + (<usize>k << 2), 8);
    const xs3 = load<f32>(x + (<usize>k << 2), 12);
    for (let c = len4; c < len; c++) {
      const off = <usize>c << 2;
      store<f32>(o + off, load<f32>(o + off) + xs0 * load<f32>(w0 + off) + xs1 * load<f32>(w1 + off) + xs2 * load<f32>(w2 + off) + xs3 * load<f32>(w3 + off));
    }
  }
  for (; k < K; k++) {
    const w = b + <usize>k * bks + (<usize>n0 << 2);
    const xs = load<f32>(x + (<usize>k << 2));
    const xv = f32x4.splat(xs);
    let c = 0;
    for (; c < len4; c += 4) v128.store(o + (<usize>c << 2), f32x4.add(v128.load(o + (<usize>c << 2)), f32x4.mul(xv, v128.load(w + (<usize>c << 2)))));
    for (; c < len; c++) store<f32>(o + (<usize>c << 2), load<f32>(o + (<usize>c << 2)) + xs * load<f32>(w + (<usize>c << 2)));
  }
}
