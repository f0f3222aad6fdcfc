/**
 * Vector (f32x4) elementary functions accurate to a few f32 ulps (~3e-7 relative), written
 * for SIMD: no branches, both sides of a piecewise definition are computed and selected.
 *
 * exp: Cody-Waite reduction x = n ln2 + r, |r| <= ln2/2, then the degree-7 Taylor polynomial
 *   of e^r (truncation error r^8/8! < 6e-9) and 2^n applied as two factors so that every n
 *   from underflow to overflow stays representable (denormals and infinities come out right).
 * log: x = 2^e m with m in [sqrt(1/2), sqrt(2)), log m = 2 atanh(s), s = (m-1)/(m+1), |s| < 0.172,
 *   by its odd series to s^11 (truncation < 1e-10).
 * tanh: odd Taylor series to x^13 for |x| < 0.4 (truncation < 5e-9), (1 - e)/(1 + e), e = e^{-2|x|}, above.
 * Where the argument of exp is known to be <= 0, expNegv (one 2^n factor, flush below e^-87) is used.
 * erfc (z >= 0): the Chebyshev-fitted form t exp(-z^2 + P(t)), t = 1/(1 + z/2), of Numerical
 *   Recipes (Press et al., sec. 6.2), fractional error < 1.2e-7 everywhere.
 */

import { madd } from "./common";

export const LOG2E: f32 = 1.4426950408889634;
const LN2_HI: f32 = 0.693359375; // few mantissa bits: n * LN2_HI is exact
const LN2_LO: f32 = -2.12194440e-4;
const LN2: f32 = 0.6931471805599453;

@inline function splat(x: f32): v128 {
  return f32x4.splat(x);
}

/** 2^n for integer lanes n in [-252, 254], as two normal factors. */
@inline function pow2Parts(n: v128, p: v128): v128 {
  const n1 = i32x4.shr_s(n, 1);
  const n2 = i32x4.sub(n, n1);
  const s1 = i32x4.shl(i32x4.add(n1, i32x4.splat(127)), 23);
  const s2 = i32x4.shl(i32x4.add(n2, i32x4.splat(127)), 23);
  return f32x4.mul(f32x4.mul(p, s1), s2);
}

/**
 * Round-to-nearest of x * log2(e) by the 1.5 * 2^23 trick: adding the magic number leaves the
 * integer in the low mantissa bits, so n (as float) and 2^n (as bits) come from adds and a
 * shift instead of nearest + trunc_sat (a long instruction sequence on x64). Valid for |n| < 2^22.
 */
const MAGIC: f32 = 12582912.0;
const MAGIC_BITS = 0x4b400000;

/** e^x lane-wise; NaN stays NaN, large |x| gives 0 or +inf. */
@inline
export function expv(x0: v128): v128 {
  // pmin/pmax (one instruction each) pass a NaN x0 through unchanged
  const x = f32x4.pmin(f32x4.pmax(x0, splat(-104.0)), splat(89.0));
  const t = f32x4.add(f32x4.mul(x, splat(LOG2E)), splat(MAGIC));
  const n = f32x4.sub(t, splat(MAGIC));
  let r = f32x4.sub(x, f32x4.mul(n, splat(LN2_HI)));
  r = f32x4.sub(r, f32x4.mul(n, splat(LN2_LO)));
  let p = madd(splat(1.0 / 5040.0), r, splat(1.0 / 720.0));
  p = madd(p, r, splat(1.0 / 120.0));
  p = madd(p, r, splat(1.0 / 24.0));
  p = madd(p, r, splat(1.0 / 6.0));
  p = madd(p, r, splat(0.5));
  p = madd(p, r, splat(1.0));
  p = madd(p, r, splat(1.0));
  return pow2Parts(i32x4.sub(t, i32x4.splat(MAGIC_BITS)), p);
}

/**
 * e^x for x <= 88 (softmax terms x - max <= 0): one 2^n factor suffices since n >= -126 after the
 * clamp, and e^x < 2^-126 flushes to 0 (the softmax weight of such a term is below f32 resolution).
 * About 20 vector ops against expv's 30.
 */
@inline
export function expNegv(x0: v128): v128 {
  const x = f32x4.pmax(x0, splat(-87.0));
  const t = f32x4.add(f32x4.mul(x, splat(LOG2E)), splat(MAGIC));
  const n = f32x4.sub(t, splat(MAGIC));
  let r = f32x4.sub(x, f32x4.mul(n, splat(LN2_HI)));
  r = f32x4.sub(r, f32x4.mul(n, splat(LN2_LO)));
  let p = madd(splat(1.0 / 720.0), r, splat(1.0 / 120.0));
  p = madd(p, r, splat(1.0 / 24.0));
  p = madd(p, r, splat(1.0 / 6.0));
  p = madd(p, r, splat(0.5));
  p = madd(p, r, splat(1.0));
  p = madd(p, r, splat(1.0));
  // 2^n as bits: the magic number's bits are (MAGIC_BITS + n), and MAGIC_BITS << 23 wraps to 0
  const scale = i32x4.shl(i32x4.add(t, i32x4.splat(127)), 23);
  return v128.andnot(f32x4.mul(p, scale), f32x4.lt(x0, splat(-87.0))); // NaN passes through
}

/**
 * 2^y for y <= 0: a decay exp(x) whose rate was scaled by log2(e) once, outside the time loop
 * (y = x log2(e)). The split into n = round(y) and f = y - n is exact, so this needs none of
 * expNegv's two-step ln 2 reduction; 2^f on [-1/2, 1/2] is a degree-5 polynomial fitted for
 * relative error (Lawson's iteration toward minimax; 1.7e-7 in f32 arithmetic, against 2.3e-7 for
 * expNegv's degree-6 Taylor series). y is clamped at -126, so decays below 2^-126 come out as
 * 2^-126 (1.2e-38) rather than 0: no mask, and still a normal number. 12 vector ops against
 * expNegv's 20.
 */
@inline
export function exp2Negv(y0: v128): v128 {
  const y = f32x4.pmax(y0, splat(-126.0)); // NaN passes through
  const t = f32x4.add(y, splat(MAGIC));
  const n = f32x4.sub(t, splat(MAGIC));
  const f = f32x4.sub(y, n);
  let p = madd(splat(1.326472731307149e-3), f, splat(9.671512991189957e-3));
  p = madd(p, f, splat(5.550733581185341e-2));
  p = madd(p, f, splat(0.24022242426872253));
  p = madd(p, f, splat(0.6931470036506653));
  p = madd(p, f, splat(1.0));
  return f32x4.mul(p, i32x4.shl(i32x4.add(t, i32x4.splat(127)), 23));
}

/** Natural log for positive normal lanes (0 gives -inf via the exponent path only approximately; callers avoid it). */
@inline
export function logv(x: v128): v128 {
  const bits = x;
  let e = i32x4.sub(i32x4.shr_s(bits, 23), i32x4.splat(127));
  let m = v128.or(v128.and(bits, i32x4.splat(0x7fffff)), i32x4.splat(0x3f800000)); // [1, 2)
  const big = f32x4.gt(m, splat(1.4142135623730951));
  m = v128.bitselect(f32x4.mul(m, splat(0.5)), m, big);
  e = i32x4.sub(e, big); // big lanes are -1: e + 1
  const f = f32x4.sub(m, splat(1.0));
  const s = f32x4.div(f, f32x4.add(f, splat(2.0)));
  const s2 = f32x4.mul(s, s);
  let p = madd(splat(1.0 / 11.0), s2, splat(1.0 / 9.0));
  p = madd(p, s2, splat(1.0 / 7.0));
  p = madd(p, s2, splat(1.0 / 5.0));
  p = madd(p, s2, splat(1.0 / 3.0));
  p = madd(p, s2, splat(1.0));
  const logm = f32x4.mul(f32x4.add(s, s), p);
  const ef = f32x4.convert_i32x4_s(e);
  return f32x4.add(f32x4.mul(ef, splat(LN2_HI)), f32x4.add(logm, f32x4.mul(ef, splat(LN2_LO))));
}

/** log(1 + y) for y >= 0, accurate for tiny y (Goldberg: log(u) * y / (u - 1) with u = 1 + y). */
@inline
export function log1pv(y: v128): v128 {
  const u = f32x4.add(y, splat(1.0));
  const d = f32x4.sub(u, splat(1.0));
  const exact = f32x4.eq(d, splat(0.0));
  const big = f32x4.eq(u, splat(Infinity));
  const r = f32x4.div(f32x4.mul(logv(u), y), v128.bitselect(splat(1.0), d, exact));
  return v128.bitselect(y, v128.bitselect(u, r, big), exact);
}

@inline
export function sigmoidv(x: v128): v128 {
  return sigmoidSide(x, 0);
}

/**
 * sigmoid(x) (which = 0) or 1 - sigmoid(x) = sigmoid(-x) (which = 1), each to full relative
 * accuracy: 1 - s in f32 would cancel for large x. With e = e^{-|x|}: sigmoid(|x|) = 1/(1+e),
 * sigmoid(-|x|) = e/(1+e).
 */
@inline
export function sigmoidSide(x: v128, which: i32): v128 {
  const e = expNegv(f32x4.neg(f32x4.abs(x)));
  const inv = f32x4.div(splat(1.0), f32x4.add(splat(1.0), e));
  const small = f32x4.mul(e, inv);
  const neg = f32x4.lt(x, splat(0.0));
  return which == 0 ? v128.bitselect(small, inv, neg) : v128.bitselect(inv, small, neg);
}

/** sigmoid(x) (1 - sigmoid(x)) = e / (1 + e)^2 with e = e^{-|x|}: no cancellation. */
@inline
export function sigmoidSlope(x: v128): v128 {
  const e = expNegv(f32x4.neg(f32x4.abs(x)));
  const d = f32x4.add(splat(1.0), e);
  return f32x4.div(e, f32x4.mul(d, d));
}

@inline
export function tanhv(x: v128): v128 {
  const ax = f32x4.abs(x);
  // large |x|: 1 - 2 / (e^{2|x|} + 1) = (1 - e) / (1 + e) with e = e^{-2|x|}; sign restored below
  const e = expNegv(f32x4.neg(f32x4.add(ax, ax)));
  const big = f32x4.div(f32x4.sub(splat(1.0), e), f32x4.add(splat(1.0), e));
  // small |x|: x - x^3/3 + 2x^5/15 - 17x^7/315 + 62x^9/2835 - 1382x^11/155925 + 21844x^13/6081075
  const z = f32x4.mul(ax, ax);
  let p = madd(splat(21844.0 / 6081075.0), z, splat(-1382.0 / 155925.0));
  p = madd(p, z, splat(62.0 / 2835.0));
  p = madd(p, z, splat(-17.0 / 315.0));
  p = madd(p, z, splat(2.0 / 15.0));
  p = madd(p, z, splat(-1.0 / 3.0));
  const small = madd(f32x4.mul(p, z), ax, ax);
  const mag = v128.bitselect(small, big, f32x4.lt(ax, splat(0.4)));
  return v128.or(mag, v128.and(x, i32x4.splat(0x80000000))); // copy the sign of x
}

/** erfc(z) for z >= 0. */
@inline
export function erfcPosv(z: v128): v128 {
  const t = f32x4.div(splat(1.0), madd(splat(0.5), z, splat(1.0)));
  let p = madd(splat(0.17087277), t, splat(-0.82215223));
  p = madd(p, t, splat(1.48851587));
  p = madd(p, t, splat(-1.13520398));
  p = madd(p, t, splat(0.27886807));
  p = madd(p, t, splat(-0.18628806));
  p = madd(p, t, splat(0.09678418));
  p = madd(p, t, splat(0.37409196));
  p = madd(p, t, splat(1.00002368));
  p = madd(p, t, splat(-1.26551223));
  return f32x4.mul(t, expNegv(f32x4.sub(p, f32x4.mul(z, z)))); // the exponent is <= 0
}

// ---- scalar forms for loop tails (one lane through the vector code keeps them identical) ----

@inline
export function lane0(v: v128): f32 {
  return f32x4.extract_lane(v, 0);
}

export function expf(x: f32): f32 {
  return lane0(expv(f32x4.splat(x)));
}

export { LN2 };
