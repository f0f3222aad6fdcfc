/**
 * Helpers shared by the mixer kernels (scan, ssd, rwkv, deltanet, moe, optim): partial vector
 * loads and stores for ragged edges, strided gathers (4 channels of a channel-last tensor, or
 * 4 rows of a row-major one), a 4-way horizontal sum, and the dt nonlinearity.
 *
 * The mixers vectorise over a dimension whose 4 lanes are independent recurrences (channels,
 * state rows), so a ragged edge is a vector with its upper lanes zero: every recurrence keeps
 * a zero there, and nothing leaks into the lanes that are stored.
 */
import { expv, log1pv, sigmoidSide } from "./simd_math";
import { splitLo, splitHi } from "./common";

@inline
export function sp(x: f32): v128 {
  return f32x4.splat(x);
}

/** f32x4 at p + 16 i. */
@inline
export function vat(p: usize, i: i32): usize {
  return p + (<usize>i << 4);
}

/** Lanes 0..len-1 from consecutive floats at p, zeros above (len in 1..4; 4 is one load). */
@inline
export function load4(p: usize, len: i32): v128 {
  if (len >= 4) return v128.load(p);
  let v = f32x4.splat(0);
  v = v128.load32_lane(p, v, 0);
  if (len > 1) v = v128.load32_lane(p, v, 1, 4);
  if (len > 2) v = v128.load32_lane(p, v, 2, 8);
  return v;
}

/** Store lanes 0..len-1 to consecutive floats at p. */
@inline
export function store4(p: usize, v: v128, len: i32): void {
  if (len >= 4) {
    v128.store(p, v);
    return;
  }
  v128.store32_lane(p, v, 0);
  if (len > 1) v128.store32_lane(p, v, 1, 4);
  if (len > 2) v128.store32_lane(p, v, 2, 8);
}

/** Lane l from p + l * stride (bytes), zeros above len. */
@inline
export function gather4(p: usize, stride: usize, len: i32): v128 {
  let v = f32x4.splat(0);
  v = v128.load32_lane(p, v, 0);
  if (len > 1) v = v128.load32_lane(p + stride, v, 1);
  if (len > 2) v = v128.load32_lane(p + 2 * stride, v, 2);
  if (len > 3) v = v128.load32_lane(p + 3 * stride, v, 3);
  return v;
}

/** Lane l to p + l * stride (bytes), for l < len. */
@inline
export function scatter4(p: usize, stride: usize, v: v128, len: i32): void {
  v128.store32_lane(p, v, 0);
  if (len > 1) v128.store32_lane(p + stride, v, 1);
  if (len > 2) v128.store32_lane(p + 2 * stride, v, 2);
  if (len > 3) v128.store32_lane(p + 3 * stride, v, 3);
}

/** (sum of a's lanes, of b's, of c's, of d's): a transpose-and-add. */
@inline
export function hsum4(a: v128, b: v128, c: v128, d: v128): v128 {
  const ab = f32x4.add(i32x4.shuffle(a, b, 0, 4, 1, 5), i32x4.shuffle(a, b, 2, 6, 3, 7));
  const cd = f32x4.add(i32x4.shuffle(c, d, 0, 4, 1, 5), i32x4.shuffle(c, d, 2, 6, 3, 7));
  return f32x4.add(i32x4.shuffle(ab, cd, 0, 1, 4, 5), i32x4.shuffle(ab, cd, 2, 3, 6, 7));
}

/** softplus as PyTorch computes it: x above 20, log(1 + e^x) below. */
@inline
export function softplusv(x: v128): v128 {
  return v128.bitselect(x, log1pv(expv(x)), f32x4.gt(x, sp(20.0)));
}

/** d softplus / dx: 1 above 20, sigmoid(x) below. */
@inline
export function softplusGradv(x: v128): v128 {
  return v128.bitselect(sp(1.0), sigmoidSide(x, 0), f32x4.gt(x, sp(20.0)));
}

/** Scalar lane 0 of a vector function (loop tails share the vector code's rounding). */
@inline
export function lane(v: v128): f32 {
  return f32x4.extract_lane(v, 0);
}

/** Largest lane. */
@inline
export function hmaxv(v: v128): f32 {
  const s = f32x4.max(v, i32x4.shuffle(v, v, 2, 3, 0, 1));
  return f32x4.extract_lane(f32x4.max(s, i32x4.shuffle(s, s, 1, 0, 3, 2)), 0);
}

/**
 * out[c] (+)= sum over r < rows of x[r * stride + offset + c], for c < cols: the fixed-order
 * reduction of per-sequence or per-slab partial results (so sums do not depend on threads).
 */
export function reduceRows(tid: i32, nth: i32, out: usize, x: usize, rows: i32, cols: i32, stride: i32, offset: i32, accumulate: i32): void {
  const c0 = splitLo(cols, tid, nth, 16);
  const c1 = splitHi(cols, tid, nth, 16);
  let c = c0;
  for (; c + 4 <= c1; c += 4) {
    let s = accumulate ? v128.load(out + (<usize>c << 2)) : f32x4.splat(0);
    for (let r = 0; r < rows; r++) s = f32x4.add(s, v128.load(x + ((<usize>r * stride + offset + c) << 2)));
    v128.store(out + (<usize>c << 2), s);
  }
  for (; c < c1; c++) {
    let s: f32 = accumulate ? load<f32>(out + (<usize>c << 2)) : 0;
    for (let r = 0; r < rows; r++) s += load<f32>(x + ((<usize>r * stride + offset + c) << 2));
    store<f32>(out + (<usize>c << 2), s);
  }
}
