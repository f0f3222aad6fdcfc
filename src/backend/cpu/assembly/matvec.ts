/**
 * Matrix-vector products: matmul with M <= 4 rows of a (decoding, one token per sequence).
 * They are memory-bound: every weight is read once and used M times, so the weights stream
 * straight from their storage (no packing) and threads split the N outputs.
 *
 * For one row of a the weight rows are read one after another, in address order: a thread's
 * slice of the matrix is then one sequential stream that the hardware prefetcher runs ahead of.
 * Interleaving eight rows (eight short streams, 1.5-3 KiB each, no prefetch run-up) was half as
 * fast on this 2-core EPYC: 3072x768 from DRAM on one thread, f32 480 -> 354 us, f16 537 -> 269 us.
 *
 * f16 weights are not converted exactly (half.ts) but moved into place: an f16's sign at bit 31
 * and its other 15 bits at 27..13 is, read as f32, the value times 2^-112 exactly (the exponent
 * lands rebiased by 112; f16 subnormals become f32 subnormals). Multiplying the activations by
 * 2^112 instead, once per call, makes every product x w bit for bit what it would be (both
 * scalings are exact), so eight weights cost 5 integer ops and no float op to widen (f16Even,
 * f16Odd). Activations of magnitude 2^16 or more would overflow when scaled: then each weight is
 * multiplied by 2^112 instead. Exponent 31 (Inf, NaN) comes out wrong (finite) either way; each
 * weight row (or group of rows) ORs its weights' bits and is recomputed exactly when that shows
 * an exponent field of all ones.
 */
import { F16, BF16, loadHalf4, loadHalf1 } from "./half";
import { hsum, at32, madd } from "./common";

/** Rows of a handled here rather than by the blocked GEMM. */
export const SMALL_M = 4;

/** Fewest output columns a thread claims at a time (matmul's guided scheduling). */
export const MATVEC_PIECE = 32;

/**
 * Make the M rows of op(a) contiguous at `rows` (element (r, k) at a + r*ars + k*aks, byte
 * strides) and, for f16 weights, a copy in f16Even/f16Odd's order right after them (M * K
 * floats on), scaled by 2^112 where that is safe; returns whether it is scaled (see
 * f16Activations). Once per thread and product.
 */
export function matvecRows(rows: usize, a: usize, ars: usize, aks: usize, M: i32, K: i32, bkind: i32): bool {
  for (let i = 0; i < M; i++) {
    const dst = rows + <usize>i * K * 4;
    const src = a + <usize>i * ars;
    if (aks == 4) memory.copy(dst, src, <usize>K * 4);
    else for (let k = 0; k < K; k++) store<f32>(dst + (<usize>k << 2), load<f32>(src + <usize>k * aks));
  }
  return bkind == F16 && f16Activations(rows + <usize>M * K * 4, rows, M, K);
}

/**
 * out[0:M, n0:n1] (+)= rows (M, K) @ op(b) (K, n0:n1), rows prepared by matvecRows (`scaled`:
 * its result). Byte strides of b as in matmul.
 */
export function matvec(
  out: usize, rows: usize, scaled: bool, b: usize, bks: usize, bjs: usize, bkind: i32,
  M: i32, N: i32, K: i32, n0: i32, n1: i32, accumulate: bool,
): void {
  const transposed = bks == (bkind == 0 ? 4 : 2);
  if (transposed) {
    const xs = rows + <usize>M * K * 4; // f16: the activations in f16Even/f16Odd's order
    if (M == 1) {
      if (bkind == 0) rowDots(0, out, rows, b, bjs, K, n0, n1, accumulate);
      else if (bkind == F16) {
        if (scaled) rowDotsF16(true, out, rows, xs, b, bjs, K, n0, n1, accumulate);
        else rowDotsF16(false, out, rows, xs, b, bjs, K, n0, n1, accumulate);
      } else rowDots(BF16, out, rows, b, bjs, K, n0, n1, accumulate);
    } else if (bkind == 0) rowDotsM(0, out, rows, b, bjs, M, N, K, n0, n1, accumulate);
    else if (bkind == F16) {
      if (scaled) rowDotsMF16(true, out, rows, xs, b, bjs, M, N, K, n0, n1, accumulate);
      else rowDotsMF16(false, out, rows, xs, b, bjs, M, N, K, n0, n1, accumulate);
    } else rowDotsM(BF16, out, rows, b, bjs, M, N, K, n0, n1, accumulate);
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

/**
 * b is (N, K) (transposed), one row x of a: out[n] (+)= x . b[n] for n in [n0, n1), row after
 * row (the weights in address order, see the header).
 */
@inline function rowDots(kind: i32, out: usize, x: usize, b: usize, bjs: usize, K: i32, n0: i32, n1: i32, accumulate: bool): void {
  for (let n = n0; n < n1; n++) put(out + (<usize>n << 2), rowDot(kind, x, b + <usize>n * bjs, K), accumulate);
}

/** x . w, sixteen weights a step in four accumulators (four independent add chains). */
@inline function rowDot(kind: i32, x: usize, w: usize, K: i32): f32 {
  const wsh: usize = kind == 0 ? 2 : 1;
  let s0 = f32x4.splat(0), s1 = f32x4.splat(0), s2 = f32x4.splat(0), s3 = f32x4.splat(0);
  let k = 0;
  for (; k + 16 <= K; k += 16) {
    const px = x + (<usize>k << 2);
    const pw = w + (<usize>k << wsh);
    s0 = madd(v128.load(px), weights4(kind, pw), s0);
    s1 = madd(v128.load(px, 16), weights4(kind, pw + (4 << wsh)), s1);
    s2 = madd(v128.load(px, 32), weights4(kind, pw + (8 << wsh)), s2);
    s3 = madd(v128.load(px, 48), weights4(kind, pw + (12 << wsh)), s3);
  }
  for (; k + 4 <= K; k += 4) s0 = madd(v128.load(x + (<usize>k << 2)), weights4(kind, w + (<usize>k << wsh)), s0);
  let t = hsum(f32x4.add(f32x4.add(s0, s1), f32x4.add(s2, s3)));
  for (; k < K; k++) t += load<f32>(x + (<usize>k << 2)) * weight1(kind, w + (<usize>k << wsh));
  return t;
}

/**
 * b is (N, K) (transposed), M = 2 to 4 rows of a: out[i, n] (+)= row i . b[n], weight row after
 * weight row as rowDots, each weight loaded once for the M rows (one accumulator each).
 */
@inline function rowDotsM(kind: i32, out: usize, rows: usize, b: usize, bjs: usize, M: i32, N: i32, K: i32, n0: i32, n1: i32, accumulate: bool): void {
  const wsh: usize = kind == 0 ? 2 : 1;
  const rb = <usize>K * 4;
  // rows past M repeat row 0 (computed, not stored), so one loop serves M = 2, 3, 4
  const x0 = rows, x1 = rows + rb, x2 = M > 2 ? rows + 2 * rb : rows, x3 = M > 3 ? rows + 3 * rb : rows;
  for (let n = n0; n < n1; n++) {
    const w = b + <usize>n * bjs;
    let s0 = f32x4.splat(0), s1 = f32x4.splat(0), s2 = f32x4.splat(0), s3 = f32x4.splat(0);
    let k = 0;
    for (; k + 4 <= K; k += 4) {
      const wv = weights4(kind, w + (<usize>k << wsh));
      const o = <usize>k << 2;
      s0 = madd(v128.load(x0 + o), wv, s0);
      s1 = madd(v128.load(x1 + o), wv, s1);
      s2 = madd(v128.load(x2 + o), wv, s2);
      s3 = madd(v128.load(x3 + o), wv, s3);
    }
    let t0 = hsum(s0), t1 = hsum(s1), t2 = hsum(s2), t3 = hsum(s3);
    for (; k < K; k++) {
      const wk = weight1(kind, w + (<usize>k << wsh));
      const o = <usize>k << 2;
      t0 += load<f32>(x0 + o) * wk;
      t1 += load<f32>(x1 + o) * wk;
      t2 += load<f32>(x2 + o) * wk;
      t3 += load<f32>(x3 + o) * wk;
    }
    putRows(out + (<usize>n << 2), <usize>N << 2, M, t0, t1, t2, t3, accumulate);
  }
}

/** out[i * N] (+)= t_i for i < M (row stride `rs` bytes). */
@inline function putRows(out: usize, rs: usize, M: i32, t0: f32, t1: f32, t2: f32, t3: f32, accumulate: bool): void {
  put(out, t0, accumulate);
  put(out + rs, t1, accumulate);
  if (M > 2) put(out + 2 * rs, t2, accumulate);
  if (M > 3) put(out + 3 * rs, t3, accumulate);
}

/** x . w over k in [k0, K). */
@inline function dot1(kind: i32, x: usize, w: usize, k0: i32, K: i32): f32 {
  const wsh: usize = kind == 0 ? 2 : 1;
  let s = f32x4.splat(0);
  let k = k0;
  for (; k + 4 <= K; k += 4) s = madd(v128.load(x + (<usize>k << 2)), weights4(kind, w + (<usize>k << wsh)), s);
  let t = hsum(s);
  for (; k < K; k++) t += load<f32>(x + (<usize>k << 2)) * weight1(kind, w + (<usize>k << wsh));
  return t;
}

// ---- f16 weights, widened by a multiply ----

/** 2^112: rebiases an f16 exponent placed in an f32 (15 -> 127). */
const F16_SCALE: f32 = 5.192296858534828e33;
/** the f16 exponent field: all ones is Inf or NaN */
const F16_EXPONENT: i16 = 0x7c00;
/**
 * Keeps, of an f16 shifted to the top of a 32-bit lane and then right by 3 (arithmetic), the
 * sign and the 15 bits at 27..13: clears the three copies of the sign above them and whatever
 * the shift brought in below.
 */
const F16_WORD_MASK: i32 = 0x8fffe000;

/**
 * Eight f16 weights h as f32 words of their values times 2^-112 (exact unless the exponent is
 * 31). A 32-bit lane of h holds an even-indexed weight in its low half and the next one in its
 * high half: the high one is h >> 3 (arithmetic) masked (f16Odd), the low one the same after
 * h << 16 (f16Even), five ops for eight weights with no shuffle, the activations being stored in
 * the matching order (f16Activations): the even ones, then the odd. `prescaled`: the activations
 * are multiplied by 2^112; otherwise the weights are, here.
 */
@inline function f16Even(prescaled: bool, h: v128): v128 {
  const even = v128.and(i32x4.shr_s(i32x4.shl(h, 16), 3), i32x4.splat(F16_WORD_MASK));
  return prescaled ? even : f32x4.mul(even, f32x4.splat(F16_SCALE));
}

@inline function f16Odd(prescaled: bool, h: v128): v128 {
  const odd = v128.and(i32x4.shr_s(h, 3), i32x4.splat(F16_WORD_MASK));
  return prescaled ? odd : f32x4.mul(odd, f32x4.splat(F16_SCALE));
}

/**
 * dst = the M rows of src (M, K) in f16Even/f16Odd's order: each group of eight as its four even- then
 * its four odd-indexed values (a last partial group is copied as it is; only the exact tails read
 * it, from src). Scaled by 2^112 when every |src| < 2^16 (so nothing overflows); returns whether
 * it is. NaN and Inf activations fail the test too.
 */
function f16Activations(dst: usize, src: usize, M: i32, K: i32): bool {
  const n = M * K;
  let big = f32x4.splat(0);
  let i = 0;
  for (; i + 4 <= n; i += 4) big = f32x4.max(big, f32x4.abs(v128.load(at32(src, i))));
  let m = max(max(f32x4.extract_lane(big, 0), f32x4.extract_lane(big, 1)), max(f32x4.extract_lane(big, 2), f32x4.extract_lane(big, 3)));
  for (; i < n; i++) m = max(m, abs(load<f32>(at32(src, i))));
  const scaled = m < 65536;
  const s = f32x4.splat(scaled ? F16_SCALE : 1);
  for (let r = 0; r < M; r++) {
    const x = at32(src, r * K);
    const y = at32(dst, r * K);
    let k = 0;
    for (; k + 8 <= K; k += 8) {
      const a = v128.load(at32(x, k));
      const b = v128.load(at32(x, k), 16);
      v128.store(at32(y, k), f32x4.mul(i8x16.shuffle(a, b, 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27), s));
      v128.store(at32(y, k), f32x4.mul(i8x16.shuffle(a, b, 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31), s), 16);
    }
    for (; k < K; k++) store<f32>(at32(y, k), load<f32>(at32(x, k)));
  }
  return scaled;
}

/** An exponent field of all ones in a lane of the OR of some weights' bits: maybe an Inf or NaN among them. */
@inline function maybeInfNaN(e: v128): bool {
  // (or a mix of exponents, which needs a weight of magnitude >= 2: rare, and then the exact
  // recomputation only costs time)
  return v128.any_true(i16x8.eq(v128.and(e, i16x8.splat(F16_EXPONENT)), i16x8.splat(F16_EXPONENT)));
}

/**
 * rowDots for f16 weights: `xs` the activations in f16Even/f16Odd's order (scaled when `prescaled`),
 * `x` unscaled in natural order (the tails and the exact recomputation).
 */
@inline function rowDotsF16(prescaled: bool, out: usize, x: usize, xs: usize, b: usize, bjs: usize, K: i32, n0: i32, n1: i32, accumulate: bool): void {
  for (let n = n0; n < n1; n++) put(out + (<usize>n << 2), rowDotF16(prescaled, x, xs, b + <usize>n * bjs, K), accumulate);
}

/**
 * x . w for one f16 weight row, sixteen weights a step in four accumulators (even and odd
 * halves of two groups of eight: four independent chains of madd, so a fused multiply-add's
 * latency never holds up the next step).
 */
@inline function rowDotF16(prescaled: bool, x: usize, xs: usize, w: usize, K: i32): f32 {
  const K8 = K & ~7;
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  let e = i16x8.splat(0);
  let k = 0;
  for (; k + 16 <= K; k += 16) {
    const px = xs + (<usize>k << 2);
    const h0 = v128.load(w + (<usize>k << 1));
    const h1 = v128.load(w + (<usize>k << 1), 16);
    e = v128.or(e, v128.or(h0, h1));
    a0 = madd(v128.load(px), f16Even(prescaled, h0), a0);
    a1 = madd(v128.load(px, 16), f16Odd(prescaled, h0), a1);
    a2 = madd(v128.load(px, 32), f16Even(prescaled, h1), a2);
    a3 = madd(v128.load(px, 48), f16Odd(prescaled, h1), a3);
  }
  if (k < K8) {
    const px = xs + (<usize>k << 2);
    const h = v128.load(w + (<usize>k << 1));
    e = v128.or(e, h);
    a0 = madd(v128.load(px), f16Even(prescaled, h), a0);
    a1 = madd(v128.load(px, 16), f16Odd(prescaled, h), a1);
  }
  if (maybeInfNaN(e)) return dot1(F16, x, w, 0, K);
  let t = hsum(f32x4.add(f32x4.add(a0, a1), f32x4.add(a2, a3)));
  for (k = K8; k < K; k++) t += load<f32>(x + (<usize>k << 2)) * loadHalf1(w + (<usize>k << 1), F16);
  return t;
}

/** rowDotsM for f16 weights: xs, rows (unscaled, natural order) as in rowDotsF16, M rows each. */
@inline function rowDotsMF16(prescaled: bool, out: usize, rows: usize, xs: usize, b: usize, bjs: usize, M: i32, N: i32, K: i32, n0: i32, n1: i32, accumulate: bool): void {
  const K8 = K & ~7;
  const rb = <usize>K * 4;
  const r2: usize = M > 2 ? 2 * rb : 0;
  const r3: usize = M > 3 ? 3 * rb : 0;
  for (let n = n0; n < n1; n++) {
    const w = b + <usize>n * bjs;
    // an even and an odd accumulator per row of a: eight independent madd chains
    let e0 = f32x4.splat(0), e1 = f32x4.splat(0), e2 = f32x4.splat(0), e3 = f32x4.splat(0);
    let o0 = f32x4.splat(0), o1 = f32x4.splat(0), o2 = f32x4.splat(0), o3 = f32x4.splat(0);
    let e = i16x8.splat(0);
    for (let k = 0; k < K8; k += 8) {
      const h = v128.load(w + (<usize>k << 1));
      e = v128.or(e, h);
      const we = f16Even(prescaled, h);
      const wo = f16Odd(prescaled, h);
      const p = xs + (<usize>k << 2);
      e0 = madd(v128.load(p), we, e0);
      o0 = madd(v128.load(p, 16), wo, o0);
      e1 = madd(v128.load(p + rb), we, e1);
      o1 = madd(v128.load(p + rb, 16), wo, o1);
      e2 = madd(v128.load(p + r2), we, e2);
      o2 = madd(v128.load(p + r2, 16), wo, o2);
      e3 = madd(v128.load(p + r3), we, e3);
      o3 = madd(v128.load(p + r3, 16), wo, o3);
    }
    const s0 = f32x4.add(e0, o0), s1 = f32x4.add(e1, o1), s2 = f32x4.add(e2, o2), s3 = f32x4.add(e3, o3);
    const o = out + (<usize>n << 2);
    if (maybeInfNaN(e)) {
      // maybe an Inf or NaN weight in the row: exactly, from the unscaled activations
      putRows(o, <usize>N << 2, M, dot1(F16, rows, w, 0, K), dot1(F16, rows + rb, w, 0, K), dot1(F16, rows + r2, w, 0, K), dot1(F16, rows + r3, w, 0, K), accumulate);
      continue;
    }
    let t0 = hsum(s0), t1 = hsum(s1), t2 = hsum(s2), t3 = hsum(s3);
    for (let k = K8; k < K; k++) {
      const wk = loadHalf1(w + (<usize>k << 1), F16);
      const q = rows + (<usize>k << 2);
      t0 += load<f32>(q) * wk;
      t1 += load<f32>(q + rb) * wk;
      t2 += load<f32>(q + r2) * wk;
      t3 += load<f32>(q + r3) * wk;
    }
    putRows(o, <usize>N << 2, M, t0, t1, t2, t3, accumulate);
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
