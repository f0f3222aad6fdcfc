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
import { MR, NR, microEdge, packA, packB, packBHalf } from "./gemm";
import { F16, BF16, loadHalf4, loadHalf1 } from "./half";
import { claim, hsum, at32 } from "./common";

const KC = 256;
const MC = 128;
const NC = 1024;
const SMALL_M = 4;

const TRANS_A = 1;
const TRANS_B = 2;
const ACCUMULATE = 4;
/** b holds f16 (8) or bf16 (16) values: weights widened to f32 as they are read */
const B_F16 = 8;
const B_BF16 = 16;

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
  const bkind = (flags & B_F16) != 0 ? F16 : (flags & B_BF16) != 0 ? BF16 : 0;
  const bbytes: usize = bkind == 0 ? 4 : 2;
  // byte strides of element (row, k) of op(a) and (k, col) of op(b)
  const ars: usize = transA ? 4 : <usize>K * 4;
  const aks: usize = transA ? <usize>M * 4 : 4;
  const bks: usize = transB ? bbytes : <usize>N * bbytes;
  const bjs: usize = transB ? <usize>K * bbytes : bbytes;
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
    const bp = b + <usize>p * strideB * bbytes;
    if (K == 0) {
      // an empty sum: zeros, or the output unchanged when accumulating
      const r0 = byRows ? lo : 0;
      const r1 = byRows ? hi : M;
      const c0 = byRows ? 0 : lo;
      const c1 = byRows ? N : hi;
      if (!accumulate) for (let i = r0; i < r1; i++) memory.fill(at32(o, i * N + c0), 0, <usize>(c1 - c0) * 4);
    } else if (small) {
      smallM(o, ap, ars, aks, bp, bks, bjs, bkind, M, N, K, lo, hi, accumulate, mine);
    } else if (byRows) {
      blocked(o, N, ap, ars, aks, bp, bks, bjs, bkind, K, lo, hi, 0, N, accumulate, mine);
    } else {
      blocked(o, N, ap, ars, aks, bp, bks, bjs, bkind, K, 0, M, lo, hi, accumulate, mine);
    }
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

// ---- small M: matrix-vector products ----

function smallM(
  out: usize, a: usize, ars: usize, aks: usize, b: usize, bks: usize, bjs: usize, bkind: i32,
  M: i32, N: i32, K: i32, n0: i32, n1: i32, accumulate: bool, rows: usize,
): void {
  // the M rows of op(a), contiguous
  for (let i = 0; i < M; i++) {
    const dst = rows + <usize>i * K * 4;
    const src = a + <usize>i * ars;
    if (aks == 4) memory.copy(dst, src, <usize>K * 4);
    else for (let k = 0; k < K; k++) store<f32>(dst + (<usize>k << 2), load<f32>(src + <usize>k * aks));
  }
  const transposed = bks == (bkind == 0 ? 4 : 2);
  if (transposed) {
    if (bkind == 0) dotRows(0, out, rows, b, bjs, M, N, K, n0, n1, accumulate);
    else if (bkind == F16) dotRows(F16, out, rows, b, bjs, M, N, K, n0, n1, accumulate);
    else dotRows(BF16, out, rows, b, bjs, M, N, K, n0, n1, accumulate);
  } else {
    for (let i = 0; i < M; i++) {
      const o = at32(out, i * N);
      const x = rows + <usize>i * K * 4;
      if (bkind == 0) axpyRows(0, o, x, b, bks, K, n0, n1, accumulate);
      else if (bkind == F16) axpyRows(F16, o, x, b, bks, K, n0, n1, accumulate);
      else axpyRows(BF16, o, x, b, bks, K, n0, n1, accumulate);
    }
  }
}

/** Four weights from p (f32, or half of `kind`) as f32 lanes; `kind` is constant after inlining. */
@inline function weights4(kind: i32, p: usize): v128 {
  return kind == 0 ? v128.load(p) : loadHalf4(p, kind);
}

@inline function weight1(kind: i32, p: usize): f32 {
  return kind == 0 ? load<f32>(p) : loadHalf1(p, kind);
}

@inline function put(p: usize, v: f32, accumulate: bool): void {
  store<f32>(p, accumulate ? load<f32>(p) + v : v);
}

/** b is (N, K) (transposed): out[i, n] = dot(row i, b[n]); four weight rows at a time. */
@inline function dotRows(kind: i32, out: usize, rows: usize, b: usize, bjs: usize, M: i32, N: i32, K: i32, n0: i32, n1: i32, accumulate: bool): void {
  const wsh: usize = kind == 0 ? 2 : 1; // log2 of the weight element size
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
        const xv = v128.load(x + (<usize>k << 2));
        const o = <usize>k << wsh;
        s0 = f32x4.add(s0, f32x4.mul(xv, weights4(kind, w0 + o)));
        s1 = f32x4.add(s1, f32x4.mul(xv, weights4(kind, w1 + o)));
        s2 = f32x4.add(s2, f32x4.mul(xv, weights4(kind, w2 + o)));
        s3 = f32x4.add(s3, f32x4.mul(xv, weights4(kind, w3 + o)));
      }
      let t0 = hsum(s0), t1 = hsum(s1), t2 = hsum(s2), t3 = hsum(s3);
      for (let k = K4; k < K; k++) {
        const xs = load<f32>(x + (<usize>k << 2));
        const o = <usize>k << wsh;
        t0 += xs * weight1(kind, w0 + o);
        t1 += xs * weight1(kind, w1 + o);
        t2 += xs * weight1(kind, w2 + o);
        t3 += xs * weight1(kind, w3 + o);
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
      for (let k = 0; k < K4; k += 4) s = f32x4.add(s, f32x4.mul(v128.load(x + (<usize>k << 2)), weights4(kind, w + (<usize>k << wsh))));
      let t = hsum(s);
      for (let k = K4; k < K; k++) t += load<f32>(x + (<usize>k << 2)) * weight1(kind, w + (<usize>k << wsh));
      put(out + (<usize>i * N + n) * 4, t, accumulate);
    }
  }
}

/**
 * b is (K, N): out[n0:n1] = sum over k of x[k] * b[k, n0:n1]. Rows of b are streamed in order,
 * four at a time, into the output slice (which stays in L1): contiguous reads that the
 * prefetcher follows, where column passes would stride through memory.
 */
@inline function axpyRows(kind: i32, out: usize, x: usize, b: usize, bks: usize, K: i32, n0: i32, n1: i32, accumulate: bool): void {
  const wsh: usize = kind == 0 ? 2 : 1;
  const o = out + (<usize>n0 << 2);
  const len = n1 - n0;
  if (len <= 0) return;
  if (!accumulate) memory.fill(o, 0, <usize>len * 4);
  const len4 = len & ~3;
  let k = 0;
  for (; k + 4 <= K; k += 4) {
    const r0 = b + <usize>k * bks + (<usize>n0 << wsh);
    const r1 = r0 + bks;
    const r2 = r1 + bks;
    const r3 = r2 + bks;
    const x0 = v128.load32_splat(x + (<usize>k << 2));
    const x1 = v128.load32_splat(x + (<usize>k << 2), 4);
    const x2 = v128.load32_splat(x + (<usize>k << 2), 8);
    const x3 = v128.load32_splat(x + (<usize>k << 2), 12);
    for (let c = 0; c < len4; c += 4) {
      const off = <usize>c << 2;
      const wo = <usize>c << wsh;
      let acc = v128.load(o + off);
      acc = f32x4.add(acc, f32x4.add(f32x4.mul(x0, weights4(kind, r0 + wo)), f32x4.mul(x1, weights4(kind, r1 + wo))));
      acc = f32x4.add(acc, f32x4.add(f32x4.mul(x2, weights4(kind, r2 + wo)), f32x4.mul(x3, weights4(kind, r3 + wo))));
      v128.store(o + off, acc);
    }
    const xs0 = load<f32>(x + (<usize>k << 2));
    const xs1 = load<f32>(x + (<usize>k << 2), 4);
    const xs2 = load<f32>(x + (<usize>k << 2), 8);
    const xs3 = load<f32>(x + (<usize>k << 2), 12);
    for (let c = len4; c < len; c++) {
      const off = <usize>c << 2;
      const wo = <usize>c << wsh;
      store<f32>(o + off, load<f32>(o + off) + xs0 * weight1(kind, r0 + wo) + xs1 * weight1(kind, r1 + wo) + xs2 * weight1(kind, r2 + wo) + xs3 * weight1(kind, r3 + wo));
    }
  }
  for (; k < K; k++) {
    const w = b + <usize>k * bks + (<usize>n0 << wsh);
    const xs = load<f32>(x + (<usize>k << 2));
    const xv = f32x4.splat(xs);
    let c = 0;
    for (; c < len4; c += 4) v128.store(o + (<usize>c << 2), f32x4.add(v128.load(o + (<usize>c << 2)), f32x4.mul(xv, weights4(kind, w + (<usize>c << wsh)))));
    for (; c < len; c++) store<f32>(o + (<usize>c << 2), load<f32>(o + (<usize>c << 2)) + xs * weight1(kind, w + (<usize>c << wsh)));
  }
}
