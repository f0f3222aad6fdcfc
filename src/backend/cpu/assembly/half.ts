/**
 * Half-precision conversions on f32x4 lanes, bit-exact with util/half.ts (round to nearest
 * even; NaN decodes to the canonical quiet NaN). Kinds: 1 f16 (IEEE binary16), 2 bf16.
 */

export const F16 = 1;
export const BF16 = 2;

/** 4 half values (zero-extended u16 in i32 lanes) to f32 lanes. */
@inline
export function halfToF32(h: v128, kind: i32): v128 {
  if (kind == BF16) return i32x4.shl(h, 16);
  // f16: shift exponent and mantissa into place and rebias; Inf/NaN get the f32 max exponent,
  // subnormals are renormalised by an exact float subtraction (F. Giesen, "half_to_float").
  let o = i32x4.shl(v128.and(h, i32x4.splat(0x7fff)), 13);
  const e = v128.and(o, i32x4.splat(0x0f800000));
  o = i32x4.add(o, i32x4.splat(112 << 23));
  const infnan = i32x4.eq(e, i32x4.splat(0x0f800000));
  o = i32x4.add(o, v128.and(infnan, i32x4.splat(112 << 23)));
  const sub = i32x4.eq(e, i32x4.splat(0));
  const renorm = f32x4.sub(i32x4.add(o, i32x4.splat(1 << 23)), i32x4.splat(113 << 23));
  o = v128.bitselect(renorm, o, sub);
  o = v128.or(o, i32x4.shl(v128.and(h, i32x4.splat(0x8000)), 16));
  // NaNs decode to the canonical quiet NaN, as util/half.ts does
  const nan = v128.and(infnan, i32x4.ne(v128.and(h, i32x4.splat(0x3ff)), i32x4.splat(0)));
  return v128.bitselect(i32x4.splat(0x7fc00000), o, nan);
}

/** 4 f32 lanes to half bits (in i32 lanes). */
@inline
export function f32ToHalf(x: v128, kind: i32): v128 {
  if (kind == BF16) {
    const hi = i32x4.shr_u(x, 16);
    const rounded = i32x4.shr_u(i32x4.add(x, i32x4.add(i32x4.splat(0x7fff), v128.and(hi, i32x4.splat(1)))), 16);
    const nan = f32x4.ne(x, x);
    return v128.and(v128.bitselect(v128.or(hi, i32x4.splat(0x40)), rounded, nan), i32x4.splat(0xffff));
  }
  const sign = v128.and(x, i32x4.splat(0x80000000));
  const f = v128.xor(x, sign); // |x| bits
  // overflow, Inf and NaN: 0x7c00 (Inf) or 0x7e00 (quiet NaN)
  const big = i32x4.ge_s(f, i32x4.splat(143 << 23));
  const infnan = v128.bitselect(i32x4.splat(0x7e00), i32x4.splat(0x7c00), i32x4.gt_s(f, i32x4.splat(0x7f800000)));
  // subnormal results: adding 0.5 lets the FPU round the mantissa into place
  const small = i32x4.lt_s(f, i32x4.splat(113 << 23));
  const denorm = i32x4.sub(f32x4.add(f, i32x4.splat(126 << 23)), i32x4.splat(126 << 23));
  // normal results: rebias and round to nearest even by hand
  const odd = v128.and(i32x4.shr_u(f, 13), i32x4.splat(1));
  const normal = i32x4.shr_u(i32x4.add(i32x4.add(f, i32x4.splat(((15 - 127) << 23) + 0xfff)), odd), 13);
  const o = v128.bitselect(infnan, v128.bitselect(denorm, normal, small), big);
  return v128.or(o, i32x4.shr_u(sign, 16));
}

/** Four half values at p (u16) widened to f32 lanes. */
@inline
export function loadHalf4(p: usize, kind: i32): v128 {
  return halfToF32(v128.load16x4_u(p), kind);
}

/** One half value at p as f32. */
@inline
export function loadHalf1(p: usize, kind: i32): f32 {
  return f32x4.extract_lane(halfToF32(i32x4.splat(<i32>load<u16>(p)), kind), 0);
}
