/**
 * Matrix-vector products: matmul with M <= 4 rows of a (decoding, one token per sequence).
 * They are memory-bound: every weight is read once and used M times, so the weights stream
 * straight from their storage (no packing) and threads split the N outputs.
 *
 * f16 weights are not converted exactly (half.ts) but moved into place: an f16's sign at bit 31
 * and its other 15 bits at 27..13 is, read as f32, the value times 2^-112 exactly (the exponent
 * lands rebiased by 112; f16 subnormals become f32 subnormals). Multiplying the activations by
 * 2^112 instead, once per call, makes every product x w bit for bit what it would be (both
 * scalings are exact), so eight weights cost 5 integer ops and no float op to widen (f16Step).
 * Activations of magnitude 2^16 or more would overflow when scaled: then each weight is
 * multiplied by 2^112 instead. Exponent 31 (Inf, NaN) comes out wrong (finite) either way; each
 * group of weight rows ORs its weights' bits and is recomputed exactly when that shows an
 * exponent field of all ones.
 */
import { F16, BF16, loadHalf4, loadHalf1 } from "./half";
import { hsum, at32 } from "./common";

/** Rows of a handled here rather than by the blocked GEMM. */
export const SMALL_M = 4;

/** Fewest output columns a thread claims at a time (matmul's guided scheduling). */
export const MATVEC_PIECE = 32;

/**
 * Make the M rows of op(a) contiguous at `rows` (element (r, k) at a + r*ars + k*aks, byte
 * strides) and, for f16 weights, a copy scaled by 2^112 right after them (M * K floats on);
 * returns whether that copy was made (see scaleRows). Once per thread and product.
 */
export function matvecRows(rows: usize, a: usize, ars: usize, aks: usize, M: i32, K: i32, bkind: i32): bool {
  for (let i = 0; i < M; i++) {
    const dst = rows + <usize>i * K * 4;
    const src = a + <usize>i * ars;
    if (aks == 4) memory.copy(dst, src, <usize>K * 4);
    else for (let k = 0; k < K; k++) store<f32>(dst + (<usize>k << 2), load<f32>(src + <usize>k * aks));
  }
  return bkind == F16 && scaleRows(rows + <usize>M * K * 4, rows, M * K);
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
    if (bkind == 0) dotRows(0, out, rows, b, bjs, M, N, K, n0, n1, accumulate);
    else if (bkind == F16) {
      if (scaled) dotRowsF16(true, out, rows, rows + <usize>M * K * 4, b, bjs, M, N, K, n0, n1, accumulate);
      else dotRowsF16(false, out, rows, rows, b, bjs, M, N, K, n0, n1, accumulate);
    } else dotRows(BF16, out, rows, b, bjs, M, N, K, n0, n1, accumulate);
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
 * b is (N, K) (transposed): out[i, n] = dot(row i, b[n]); eight weight rows at a time for one
 * row of a (decoding), else four. A core's streaming rate is bounded by the cache misses it has
 * in flight: eight concurrent row streams measured 1.15-1.4x four on this 2-core EPYC
 * (f32 3072x768: 13.3 -> 15.2 GB/s on one thread, 25.6 -> 30.4 GB/s on two); twelve gained nothing.
 */
@inline function dotRows(kind: i32, out: usize, rows: usize, b: usize, bjs: usize, M: i32, N: i32, K: i32, n0: i32, n1: i32, accumulate: bool): void {
  let n = n0;
  if (M == 1) for (; n + 8 <= n1; n += 8) dot8(kind, out + (<usize>n << 2), rows, b + <usize>n * bjs, bjs, K, accumulate);
  for (; n + 4 <= n1; n += 4) {
    const w0 = b + <usize>n * bjs;
    for (let i = 0; i < M; i++) dot4(kind, out + (<usize>i * N + n) * 4, rows + <usize>i * K * 4, w0, bjs, 0, K, accumulate);
  }
  for (; n < n1; n++) {
    const w = b + <usize>n * bjs;
    for (let i = 0; i < M; i++) put(out + (<usize>i * N + n) * 4, dot1(kind, rows + <usize>i * K * 4, w, 0, K), accumulate);
  }
}

/** out[0:4] (+)= x . w_j over k in [k0, K) for the four weight rows w0 + j * bjs. */
@inline function dot4(kind: i32, out: usize, x: usize, w0: usize, bjs: usize, k0: i32, K: i32, accumulate: bool): void {
  const wsh: usize = kind == 0 ? 2 : 1; // log2 of the weight element size
  const w1 = w0 + bjs;
  const w2 = w1 + bjs;
  const w3 = w2 + bjs;
  let s0 = f32x4.splat(0), s1 = f32x4.splat(0), s2 = f32x4.splat(0), s3 = f32x4.splat(0);
  let k = k0;
  for (; k + 4 <= K; k += 4) {
    const xv = v128.load(x + (<usize>k << 2));
    const o = <usize>k << wsh;
    s0 = f32x4.add(s0, f32x4.mul(xv, weights4(kind, w0 + o)));
    s1 = f32x4.add(s1, f32x4.mul(xv, weights4(kind, w1 + o)));
    s2 = f32x4.add(s2, f32x4.mul(xv, weights4(kind, w2 + o)));
    s3 = f32x4.add(s3, f32x4.mul(xv, weights4(kind, w3 + o)));
  }
  let t0 = hsum(s0), t1 = hsum(s1), t2 = hsum(s2), t3 = hsum(s3);
  for (; k < K; k++) {
    const xs = load<f32>(x + (<usize>k << 2));
    const o = <usize>k << wsh;
    t0 += xs * weight1(kind, w0 + o);
    t1 += xs * weight1(kind, w1 + o);
    t2 += xs * weight1(kind, w2 + o);
    t3 += xs * weight1(kind, w3 + o);
  }
  put(out, t0, accumulate);
  put(out + 4, t1, accumulate);
  put(out + 8, t2, accumulate);
  put(out + 12, t3, accumulate);
}

/** out[0:8] (+)= x . w_j for the eight weight rows w0 + j * bjs. */
@inline function dot8(kind: i32, out: usize, x: usize, w0: usize, bjs: usize, K: i32, accumulate: bool): void {
  const wsh: usize = kind == 0 ? 2 : 1;
  const w4 = w0 + 4 * bjs;
  let s0 = f32x4.splat(0), s1 = f32x4.splat(0), s2 = f32x4.splat(0), s3 = f32x4.splat(0);
  let s4 = f32x4.splat(0), s5 = f32x4.splat(0), s6 = f32x4.splat(0), s7 = f32x4.splat(0);
  let k = 0;
  for (; k + 4 <= K; k += 4) {
    const xv = v128.load(x + (<usize>k << 2));
    const o = <usize>k << wsh;
    s0 = f32x4.add(s0, f32x4.mul(xv, weights4(kind, w0 + o)));
    s1 = f32x4.add(s1, f32x4.mul(xv, weights4(kind, w0 + bjs + o)));
    s2 = f32x4.add(s2, f32x4.mul(xv, weights4(kind, w0 + 2 * bjs + o)));
    s3 = f32x4.add(s3, f32x4.mul(xv, weights4(kind, w0 + 3 * bjs + o)));
    s4 = f32x4.add(s4, f32x4.mul(xv, weights4(kind, w4 + o)));
    s5 = f32x4.add(s5, f32x4.mul(xv, weights4(kind, w4 + bjs + o)));
    s6 = f32x4.add(s6, f32x4.mul(xv, weights4(kind, w4 + 2 * bjs + o)));
    s7 = f32x4.add(s7, f32x4.mul(xv, weights4(kind, w4 + 3 * bjs + o)));
  }
  put(out, tail(kind, hsum(s0), x, w0, k, K), accumulate);
  put(out + 4, tail(kind, hsum(s1), x, w0 + bjs, k, K), accumulate);
  put(out + 8, tail(kind, hsum(s2), x, w0 + 2 * bjs, k, K), accumulate);
  put(out + 12, tail(kind, hsum(s3), x, w0 + 3 * bjs, k, K), accumulate);
  put(out + 16, tail(kind, hsum(s4), x, w4, k, K), accumulate);
  put(out + 20, tail(kind, hsum(s5), x, w4 + bjs, k, K), accumulate);
  put(out + 24, tail(kind, hsum(s6), x, w4 + 2 * bjs, k, K), accumulate);
  put(out + 28, tail(kind, hsum(s7), x, w4 + 3 * bjs, k, K), accumulate);
}

/** t + x . w over the last k in [k, K), in the order dot4 and dot1 add them (bit-equal columns whichever path ran). */
@inline function tail(kind: i32, t: f32, x: usize, w: usize, k: i32, K: i32): f32 {
  const wsh: usize = kind == 0 ? 2 : 1;
  for (; k < K; k++) t += load<f32>(x + (<usize>k << 2)) * weight1(kind, w + (<usize>k << wsh));
  return t;
}

/** x . w over k in [k0, K). */
@inline function dot1(kind: i32, x: usize, w: usize, k0: i32, K: i32): f32 {
  const wsh: usize = kind == 0 ? 2 : 1;
  let s = f32x4.splat(0);
  let k = k0;
  for (; k + 4 <= K; k += 4) s = f32x4.add(s, f32x4.mul(v128.load(x + (<usize>k << 2)), weights4(kind, w + (<usize>k << wsh))));
  let t = hsum(s);
  for (; k < K; k++) t += load<f32>(x + (<usize>k << 2)) * weight1(kind, w + (<usize>k << wsh));
  return t;
}

// ---- f16 weights, widened by a multiply ----

/** 2^112: rebiases an f16 exponent placed in an f32 (15 -> 127). */
const F16_SCALE: f32 = 5.192296858534828e33;
/** the f16 exponent field: all ones is Inf or NaN */
const F16_EXPONENT: i16 = 0x7c00;
/** keeps the sign and the 12 bits below the three copies of it that an arithmetic shift by 3 leaves */
const F16_TOP_MASK: i16 = <i16>0x8fff;

/**
 * s + x . (8 f16 weights h), x in two vectors; `prescaled`: x holds the activations times 2^112.
 * The weights become f32 words of their values times 2^-112 (exact unless the exponent is 31):
 * the f16's sign at bit 31, its 15 other bits at 27..13. The high halves (sign, three zeros,
 * exponent, top 7 mantissa bits) are h >> 3 (arithmetic) masked, the low halves (last 3 mantissa
 * bits, then zeros) h << 13, and two interleaves pair them: five ops for eight weights, where
 * widening each half to i32 lanes first takes seven.
 */
@inline function f16Step(prescaled: bool, s: v128, xa: v128, xb: v128, h: v128): v128 {
  const top = v128.and(i16x8.shr_s(h, 3), i16x8.splat(F16_TOP_MASK));
  const bottom = i16x8.shl(h, 13);
  let lo = i8x16.shuffle(bottom, top, 0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23);
  let hi = i8x16.shuffle(bottom, top, 8, 9, 24, 25, 10, 11, 26, 27, 12, 13, 28, 29, 14, 15, 30, 31);
  if (!prescaled) {
    lo = f32x4.mul(lo, f32x4.splat(F16_SCALE));
    hi = f32x4.mul(hi, f32x4.splat(F16_SCALE));
  }
  return f32x4.add(s, f32x4.add(f32x4.mul(xa, lo), f32x4.mul(xb, hi)));
}

/**
 * dst[0:n] = src[0:n] * 2^112 when every |src| < 2^16 (so nothing overflows); returns whether
 * it did. NaN and Inf activations fail the test too.
 */
function scaleRows(dst: usize, src: usize, n: i32): bool {
  let big = f32x4.splat(0);
  let i = 0;
  for (; i + 4 <= n; i += 4) big = f32x4.max(big, f32x4.abs(v128.load(at32(src, i))));
  let m = max(max(f32x4.extract_lane(big, 0), f32x4.extract_lane(big, 1)), max(f32x4.extract_lane(big, 2), f32x4.extract_lane(big, 3)));
  for (; i < n; i++) m = max(m, abs(load<f32>(at32(src, i))));
  if (!(m < 65536)) return false;
  const s = f32x4.splat(F16_SCALE);
  i = 0;
  for (; i + 4 <= n; i += 4) v128.store(at32(dst, i), f32x4.mul(v128.load(at32(src, i)), s));
  for (; i < n; i++) store<f32>(at32(dst, i), load<f32>(at32(src, i)) * F16_SCALE);
  return true;
}

/**
 * dotRows for f16 weights, eight weights per row per step; `xs` holds the rows of op(a) scaled
 * by 2^112 when `prescaled` (then `rows` is only read by the exact recomputation).
 */
@inline function dotRowsF16(prescaled: bool, out: usize, rows: usize, xs: usize, b: usize, bjs: usize, M: i32, N: i32, K: i32, n0: i32, n1: i32, accumulate: bool): void {
  const K8 = K & ~7;
  let n = n0;
  if (M == 1) for (; n + 8 <= n1; n += 8) dot8F16(prescaled, out + (<usize>n << 2), rows, xs, b + <usize>n * bjs, bjs, K, accumulate);
  for (; n + 4 <= n1; n += 4) {
    const w0 = b + <usize>n * bjs;
    const w1 = w0 + bjs;
    const w2 = w1 + bjs;
    const w3 = w2 + bjs;
    for (let i = 0; i < M; i++) {
      const x = xs + <usize>i * K * 4;
      const c = out + (<usize>i * N + n) * 4;
      let s0 = f32x4.splat(0), s1 = f32x4.splat(0), s2 = f32x4.splat(0), s3 = f32x4.splat(0);
      // the OR of every weight's bits: an exponent field of all ones in a lane means an Inf or
      // NaN may be among them (or a mix of exponents, which needs a weight of magnitude >= 2:
      // rare, and then the exact path below only costs time)
      let e = i16x8.splat(0);
      for (let k = 0; k < K8; k += 8) {
        const xa = v128.load(x + (<usize>k << 2));
        const xb = v128.load(x + (<usize>k << 2), 16);
        const o = <usize>k << 1;
        const h0 = v128.load(w0 + o);
        const h1 = v128.load(w1 + o);
        const h2 = v128.load(w2 + o);
        const h3 = v128.load(w3 + o);
        e = v128.or(e, v128.or(v128.or(h0, h1), v128.or(h2, h3)));
        s0 = f16Step(prescaled, s0, xa, xb, h0);
        s1 = f16Step(prescaled, s1, xa, xb, h1);
        s2 = f16Step(prescaled, s2, xa, xb, h2);
        s3 = f16Step(prescaled, s3, xa, xb, h3);
      }
      const xe = rows + <usize>i * K * 4; // unscaled: the tail and the exact path
      if (v128.any_true(i16x8.eq(v128.and(e, i16x8.splat(F16_EXPONENT)), i16x8.splat(F16_EXPONENT)))) {
        // maybe an Inf or NaN weight in one of the four rows: all four again, exactly
        dot4(F16, c, xe, w0, bjs, 0, K, accumulate);
        continue;
      }
      let t0 = hsum(s0), t1 = hsum(s1), t2 = hsum(s2), t3 = hsum(s3);
      for (let k = K8; k < K; k++) {
        const xk = load<f32>(xe + (<usize>k << 2));
        const o = <usize>k << 1;
        t0 += xk * loadHalf1(w0 + o, F16);
        t1 += xk * loadHalf1(w1 + o, F16);
        t2 += xk * loadHalf1(w2 + o, F16);
        t3 += xk * loadHalf1(w3 + o, F16);
      }
      put(c, t0, accumulate);
      put(c + 4, t1, accumulate);
      put(c + 8, t2, accumulate);
      put(c + 12, t3, accumulate);
    }
  }
  for (; n < n1; n++) {
    const w = b + <usize>n * bjs;
    for (let i = 0; i < M; i++) put(out + (<usize>i * N + n) * 4, dot1(F16, rows + <usize>i * K * 4, w, 0, K), accumulate);
  }
}

/** dotRowsF16 for one row of a and eight weight rows (w0 + j * bjs), as dot8 for f32 weights */
@inline function dot8F16(prescaled: bool, out: usize, rows: usize, x: usize, w0: usize, bjs: usize, K: i32, accumulate: bool): void {
  const K8 = K & ~7;
  const w4 = w0 + 4 * bjs;
  let s0 = f32x4.splat(0), s1 = f32x4.splat(0), s2 = f32x4.splat(0), s3 = f32x4.splat(0);
  let s4 = f32x4.splat(0), s5 = f32x4.splat(0), s6 = f32x4.splat(0), s7 = f32x4.splat(0);
  let e = i16x8.splat(0);
  for (let k = 0; k < K8; k += 8) {
    const xa = v128.load(x + (<usize>k << 2));
    const xb = v128.load(x + (<usize>k << 2), 16);
    const o = <usize>k << 1;
    const h0 = v128.load(w0 + o);
    const h1 = v128.load(w0 + bjs + o);
    const h2 = v128.load(w0 + 2 * bjs + o);
    const h3 = v128.load(w0 + 3 * bjs + o);
    e = v128.or(e, v128.or(v128.or(h0, h1), v128.or(h2, h3)));
    s0 = f16Step(prescaled, s0, xa, xb, h0);
    s1 = f16Step(prescaled, s1, xa, xb, h1);
    s2 = f16Step(prescaled, s2, xa, xb, h2);
    s3 = f16Step(prescaled, s3, xa, xb, h3);
    const h4 = v128.load(w4 + o);
    const h5 = v128.load(w4 + bjs + o);
    const h6 = v128.load(w4 + 2 * bjs + o);
    const h7 = v128.load(w4 + 3 * bjs + o);
    e = v128.or(e, v128.or(v128.or(h4, h5), v128.or(h6, h7)));
    s4 = f16Step(prescaled, s4, xa, xb, h4);
    s5 = f16Step(prescaled, s5, xa, xb, h5);
    s6 = f16Step(prescaled, s6, xa, xb, h6);
    s7 = f16Step(prescaled, s7, xa, xb, h7);
  }
  if (v128.any_true(i16x8.eq(v128.and(e, i16x8.splat(F16_EXPONENT)), i16x8.splat(F16_EXPONENT)))) {
    dot4(F16, out, rows, w0, bjs, 0, K, accumulate);
    dot4(F16, out + 16, rows, w4, bjs, 0, K, accumulate);
    return;
  }
  put(out, tailF16(hsum(s0), rows, w0, K8, K), accumulate);
  put(out + 4, tailF16(hsum(s1), rows, w0 + bjs, K8, K), accumulate);
  put(out + 8, tailF16(hsum(s2), rows, w0 + 2 * bjs, K8, K), accumulate);
  put(out + 12, tailF16(hsum(s3), rows, w0 + 3 * bjs, K8, K), accumulate);
  put(out + 16, tailF16(hsum(s4), rows, w4, K8, K), accumulate);
  put(out + 20, tailF16(hsum(s5), rows, w4 + bjs, K8, K), accumulate);
  put(out + 24, tailF16(hsum(s6), rows, w4 + 2 * bjs, K8, K), accumulate);
  put(out + 28, tailF16(hsum(s7), rows, w4 + 3 * bjs, K8, K), accumulate);
}

/** t + the unscaled activations . w over the last k in [k, K), in dotRowsF16's order */
@inline function tailF16(t: f32, x: usize, w: usize, k: i32, K: i32): f32 {
  for (; k < K; k++) t += load<f32>(x + (<usize>k << 2)) * loadHalf1(w + (<usize>k << 1), F16);
  return t;
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
