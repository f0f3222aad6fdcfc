/**
 * Elementwise kernels, data movement and conversions. Each splits its elements into
 * contiguous per-thread ranges (aligned to 16 elements so vectors never straddle threads).
 */
import { splitLo, splitHi, at32 } from "./common";
import { F16, BF16, halfToF32, f32ToHalf } from "./half";

import { expv, log1pv, sigmoidv, sigmoidSide, sigmoidSlope, tanhv, erfcPosv, lane0 } from "./simd_math";

// Unary op codes; the TypeScript side (cpu/kernels.ts UNARY_CODE) uses the same numbers.
const SILU = 0;
const GELU = 1;
const GELU_TANH = 2;
const RELU = 3;
const RELU_SQ = 4;
const SIGMOID = 5;
const SOFTPLUS = 6;
const EXP = 7;
const TANH = 8;
const NEG = 9;
const SQUARE = 10;

const INV_SQRT2: f32 = 0.7071067811865476;
const INV_SQRT_2PI: f32 = 0.3989422804014327;
const SQRT_2_OVER_PI: f32 = 0.7978845608028654;
const GELU_C: f32 = 0.044715;

@inline function sp(x: f32): v128 {
  return f32x4.splat(x);
}

/** Standard normal CDF Phi(x) from erfc, accurate in both tails. */
@inline function normalCdf(x: v128): v128 {
  const e = erfcPosv(f32x4.mul(f32x4.abs(x), sp(INV_SQRT2)));
  const half = f32x4.mul(e, sp(0.5));
  return v128.bitselect(half, f32x4.sub(sp(1.0), half), f32x4.lt(x, sp(0.0)));
}

/** f(x) for op (a compile-time constant after inlining). */
@inline function unaryValue(op: i32, x: v128): v128 {
  if (op == SILU) return f32x4.mul(x, sigmoidv(x));
  if (op == GELU) return f32x4.mul(x, normalCdf(x));
  if (op == GELU_TANH) return f32x4.mul(x, sigmoidv(geluTanhArg2(x))); // 0.5 (1 + tanh u) = sigmoid(2u)
  if (op == RELU) return v128.and(x, f32x4.gt(x, sp(0.0)));
  if (op == RELU_SQ) return v128.and(f32x4.mul(x, x), f32x4.gt(x, sp(0.0)));
  if (op == SIGMOID) return sigmoidv(x);
  if (op == SOFTPLUS) return v128.bitselect(x, log1pv(expv(x)), f32x4.gt(x, sp(20.0)));
  if (op == EXP) return expv(x);
  if (op == TANH) return tanhv(x);
  if (op == NEG) return f32x4.neg(x);
  return f32x4.mul(x, x); // SQUARE
}

/** 2u, u = sqrt(2/pi) (x + 0.044715 x^3): the tanh argument of gelu_tanh, doubled. */
@inline function geluTanhArg2(x: v128): v128 {
  return f32x4.mul(sp(2.0 * SQRT_2_OVER_PI), f32x4.add(x, f32x4.mul(sp(GELU_C), f32x4.mul(x, f32x4.mul(x, x)))));
}

/**
 * f'(x) for op. Where the textbook form has 1 - s (sigmoid) or 1 - t^2 (tanh), which cancel in
 * f32 for large |x|, the complementary quantity is computed directly (sigmoidSide, sigmoidSlope).
 */
@inline function unaryDerivative(op: i32, x: v128): v128 {
  if (op == SILU) return f32x4.mul(sigmoidSide(x, 0), f32x4.add(sp(1.0), f32x4.mul(x, sigmoidSide(x, 1))));
  if (op == GELU) {
    const pdf = f32x4.mul(sp(INV_SQRT_2PI), expv(f32x4.mul(sp(-0.5), f32x4.mul(x, x))));
    return f32x4.add(normalCdf(x), f32x4.mul(x, pdf));
  }
  if (op == GELU_TANH) {
    // d/dx [x sigmoid(2u)] = sigmoid(2u) + 2 x sigmoid(2u) sigmoid(-2u) u'
    const u2 = geluTanhArg2(x);
    const du = f32x4.mul(sp(SQRT_2_OVER_PI), f32x4.add(sp(1.0), f32x4.mul(sp(3.0 * GELU_C), f32x4.mul(x, x))));
    return f32x4.add(sigmoidSide(u2, 0), f32x4.mul(f32x4.mul(f32x4.add(x, x), sigmoidSlope(u2)), du));
  }
  if (op == RELU) return v128.and(sp(1.0), f32x4.gt(x, sp(0.0)));
  if (op == RELU_SQ) return v128.and(f32x4.add(x, x), f32x4.gt(x, sp(0.0)));
  if (op == SIGMOID) return sigmoidSlope(x);
  if (op == SOFTPLUS) return v128.bitselect(sp(1.0), sigmoidv(x), f32x4.gt(x, sp(20.0)));
  if (op == EXP) return expv(x);
  if (op == TANH) return f32x4.mul(sp(4.0), sigmoidSlope(f32x4.add(x, x))); // 1 - tanh^2 = 4 sigmoid(2x) sigmoid(-2x)
  if (op == NEG) return sp(-1.0);
  return f32x4.add(x, x); // SQUARE
}

/** Two vectors per iteration: independent dependency chains for the out-of-order core to overlap. */
@inline function forwardRange(op: i32, out: usize, x: usize, lo: i32, hi: i32): void {
  let i = lo;
  for (; i + 8 <= hi; i += 8) {
    const a = unaryValue(op, v128.load(at32(x, i)));
    const b = unaryValue(op, v128.load(at32(x, i), 16));
    v128.store(at32(out, i), a);
    v128.store(at32(out, i), b, 16);
  }
  for (; i + 4 <= hi; i += 4) v128.store(at32(out, i), unaryValue(op, v128.load(at32(x, i))));
  for (; i < hi; i++) store<f32>(at32(out, i), lane0(unaryValue(op, f32x4.splat(load<f32>(at32(x, i))))));
}

@inline function backwardRange(op: i32, dx: usize, dy: usize, x: usize, lo: i32, hi: i32): void {
  let i = lo;
  for (; i + 8 <= hi; i += 8) {
    const a = f32x4.mul(v128.load(at32(dy, i)), unaryDerivative(op, v128.load(at32(x, i))));
    const b = f32x4.mul(v128.load(at32(dy, i), 16), unaryDerivative(op, v128.load(at32(x, i), 16)));
    v128.store(at32(dx, i), a);
    v128.store(at32(dx, i), b, 16);
  }
  for (; i + 4 <= hi; i += 4) {
    v128.store(at32(dx, i), f32x4.mul(v128.load(at32(dy, i)), unaryDerivative(op, v128.load(at32(x, i)))));
  }
  for (; i < hi; i++) {
    const d = lane0(unaryDerivative(op, f32x4.splat(load<f32>(at32(x, i)))));
    store<f32>(at32(dx, i), load<f32>(at32(dy, i)) * d);
  }
}

export function unaryForward(tid: i32, nth: i32, op: i32, out: usize, x: usize, n: i32): void {
  const lo = splitLo(n, tid, nth, 16);
  const hi = splitHi(n, tid, nth, 16);
  switch (op) {
    case SILU: forwardRange(SILU, out, x, lo, hi); break;
    case GELU: forwardRange(GELU, out, x, lo, hi); break;
    case GELU_TANH: forwardRange(GELU_TANH, out, x, lo, hi); break;
    case RELU: forwardRange(RELU, out, x, lo, hi); break;
    case RELU_SQ: forwardRange(RELU_SQ, out, x, lo, hi); break;
    case SIGMOID: forwardRange(SIGMOID, out, x, lo, hi); break;
    case SOFTPLUS: forwardRange(SOFTPLUS, out, x, lo, hi); break;
    case EXP: forwardRange(EXP, out, x, lo, hi); break;
    case TANH: forwardRange(TANH, out, x, lo, hi); break;
    case NEG: forwardRange(NEG, out, x, lo, hi); break;
    default: forwardRange(SQUARE, out, x, lo, hi);
  }
}

export function unaryBackward(tid: i32, nth: i32, op: i32, dx: usize, dy: usize, x: usize, n: i32): void {
  const lo = splitLo(n, tid, nth, 16);
  const hi = splitHi(n, tid, nth, 16);
  switch (op) {
    case SILU: backwardRange(SILU, dx, dy, x, lo, hi); break;
    case GELU: backwardRange(GELU, dx, dy, x, lo, hi); break;
    case GELU_TANH: backwardRange(GELU_TANH, dx, dy, x, lo, hi); break;
    case RELU: backwardRange(RELU, dx, dy, x, lo, hi); break;
    case RELU_SQ: backwardRange(RELU_SQ, dx, dy, x, lo, hi); break;
    case SIGMOID: backwardRange(SIGMOID, dx, dy, x, lo, hi); break;
    case SOFTPLUS: backwardRange(SOFTPLUS, dx, dy, x, lo, hi); break;
    case EXP: backwardRange(EXP, dx, dy, x, lo, hi); break;
    case TANH: backwardRange(TANH, dx, dy, x, lo, hi); break;
    case NEG: backwardRange(NEG, dx, dy, x, lo, hi); break;
    default: backwardRange(SQUARE, dx, dy, x, lo, hi);
  }
}

// ---- binary ops with a periodic right operand ----

const ADD = 0;
const SUB = 1;

@inline function binaryValue(op: i32, a: v128, b: v128): v128 {
  if (op == ADD) return f32x4.add(a, b);
  if (op == SUB) return f32x4.sub(a, b);
  return f32x4.mul(a, b);
}

@inline function binaryScalar(op: i32, a: f32, b: f32): f32 {
  if (op == ADD) return a + b;
  if (op == SUB) return a - b;
  return a * b;
}

/** out[i] = a[i] op b[i] for i < len */
@inline function binarySpan(op: i32, out: usize, a: usize, b: usize, len: i32): void {
  let i = 0;
  for (; i + 4 <= len; i += 4) v128.store(at32(out, i), binaryValue(op, v128.load(at32(a, i)), v128.load(at32(b, i))));
  for (; i < len; i++) store<f32>(at32(out, i), binaryScalar(op, load<f32>(at32(a, i)), load<f32>(at32(b, i))));
}

@inline function binaryRange(op: i32, out: usize, a: usize, b: usize, bn: i32, lo: i32, hi: i32): void {
  if (bn == 1) {
    const bs = load<f32>(b);
    const bv = f32x4.splat(bs);
    let i = lo;
    for (; i + 4 <= hi; i += 4) v128.store(at32(out, i), binaryValue(op, v128.load(at32(a, i)), bv));
    for (; i < hi; i++) store<f32>(at32(out, i), binaryScalar(op, load<f32>(at32(a, i)), bs));
    return;
  }
  let i = lo;
  while (i < hi) {
    const c = i % bn;
    const len = min(hi - i, bn - c);
    binarySpan(op, at32(out, i), at32(a, i), at32(b, c), len);
    i += len;
  }
}

export function binaryForward(tid: i32, nth: i32, op: i32, out: usize, a: usize, b: usize, n: i32, bn: i32): void {
  const lo = splitLo(n, tid, nth, 16);
  const hi = splitHi(n, tid, nth, 16);
  if (op == ADD) binaryRange(ADD, out, a, b, bn, lo, hi);
  else if (op == SUB) binaryRange(SUB, out, a, b, bn, lo, hi);
  else binaryRange(2, out, a, b, bn, lo, hi);
}

/** out = alpha x + beta y; y is not read when beta is 0. */
export function axpby(tid: i32, nth: i32, out: usize, alpha: f32, x: usize, beta: f32, y: usize, n: i32): void {
  const lo = splitLo(n, tid, nth, 16);
  const hi = splitHi(n, tid, nth, 16);
  const av = f32x4.splat(alpha);
  const bv = f32x4.splat(beta);
  let i = lo;
  if (beta == 0) {
    for (; i + 4 <= hi; i += 4) v128.store(at32(out, i), f32x4.mul(av, v128.load(at32(x, i))));
    for (; i < hi; i++) store<f32>(at32(out, i), alpha * load<f32>(at32(x, i)));
  } else {
    for (; i + 4 <= hi; i += 4) {
      v128.store(at32(out, i), f32x4.add(f32x4.mul(av, v128.load(at32(x, i))), f32x4.mul(bv, v128.load(at32(y, i)))));
    }
    for (; i < hi; i++) store<f32>(at32(out, i), alpha * load<f32>(at32(x, i)) + beta * load<f32>(at32(y, i)));
  }
}

/** out[c] (+)= sum over rows of x[r, c]; threads own column ranges. */
export function sumRows(tid: i32, nth: i32, out: usize, x: usize, rows: i32, cols: i32, accumulate: i32): void {
  const lo = splitLo(cols, tid, nth, 16);
  const hi = splitHi(cols, tid, nth, 16);
  const rowBytes = <usize>cols << 2;
  let c = lo;
  for (; c + 16 <= hi; c += 16) {
    let s0 = f32x4.splat(0), s1 = f32x4.splat(0), s2 = f32x4.splat(0), s3 = f32x4.splat(0);
    let p = at32(x, c);
    for (let r = 0; r < rows; r++) {
      s0 = f32x4.add(s0, v128.load(p));
      s1 = f32x4.add(s1, v128.load(p, 16));
      s2 = f32x4.add(s2, v128.load(p, 32));
      s3 = f32x4.add(s3, v128.load(p, 48));
      p += rowBytes;
    }
    const o = at32(out, c);
    if (accumulate) {
      s0 = f32x4.add(s0, v128.load(o));
      s1 = f32x4.add(s1, v128.load(o, 16));
      s2 = f32x4.add(s2, v128.load(o, 32));
      s3 = f32x4.add(s3, v128.load(o, 48));
    }
    v128.store(o, s0);
    v128.store(o, s1, 16);
    v128.store(o, s2, 32);
    v128.store(o, s3, 48);
  }
  for (; c < hi; c++) {
    let s: f32 = 0;
    let p = at32(x, c);
    for (let r = 0; r < rows; r++) {
      s += load<f32>(p);
      p += rowBytes;
    }
    store<f32>(at32(out, c), accumulate ? load<f32>(at32(out, c)) + s : s);
  }
}

export function swigluForward(tid: i32, nth: i32, out: usize, g: usize, u: usize, n: i32): void {
  const lo = splitLo(n, tid, nth, 16);
  const hi = splitHi(n, tid, nth, 16);
  let i = lo;
  for (; i + 4 <= hi; i += 4) {
    const gv = v128.load(at32(g, i));
    v128.store(at32(out, i), f32x4.mul(f32x4.mul(gv, sigmoidv(gv)), v128.load(at32(u, i))));
  }
  for (; i < hi; i++) {
    const gs = load<f32>(at32(g, i));
    store<f32>(at32(out, i), gs * lane0(sigmoidv(f32x4.splat(gs))) * load<f32>(at32(u, i)));
  }
}

/** du = dy g s, dg = dy u s (1 + g (1 - s)), s = sigmoid(g), 1 - s without cancellation. */
@inline function swigluGrad(gv: v128, uv: v128, dyv: v128, dg: usize, du: usize): void {
  const s = sigmoidSide(gv, 0);
  v128.store(du, f32x4.mul(f32x4.mul(dyv, gv), s));
  const ds = f32x4.add(sp(1.0), f32x4.mul(gv, sigmoidSide(gv, 1)));
  v128.store(dg, f32x4.mul(f32x4.mul(f32x4.mul(dyv, uv), s), ds));
}

export function swigluBackward(tid: i32, nth: i32, dg: usize, du: usize, dy: usize, g: usize, u: usize, n: i32): void {
  const lo = splitLo(n, tid, nth, 16);
  const hi = splitHi(n, tid, nth, 16);
  let i = lo;
  for (; i + 4 <= hi; i += 4) {
    swigluGrad(v128.load(at32(g, i)), v128.load(at32(u, i)), v128.load(at32(dy, i)), at32(dg, i), at32(du, i));
  }
  for (; i < hi; i++) {
    const gv = f32x4.splat(load<f32>(at32(g, i)));
    const gs = load<f32>(at32(g, i));
    const s = lane0(sigmoidSide(gv, 0));
    const d = load<f32>(at32(dy, i));
    store<f32>(at32(du, i), d * gs * s);
    store<f32>(at32(dg, i), d * load<f32>(at32(u, i)) * s * (1 + gs * lane0(sigmoidSide(gv, 1))));
  }
}

// ---- data movement ----

/** Fill n elements of `bytes` (4 or 2) each with the bit pattern `bits`. */
export function fill(tid: i32, nth: i32, out: usize, bits: i32, n: i32, bytes: i32): void {
  const lo = splitLo(n, tid, nth, 16);
  const hi = splitHi(n, tid, nth, 16);
  const v = bytes == 4 ? i32x4.splat(bits) : i16x8.splat(<i16>bits);
  const shift = bytes == 4 ? 2 : 1;
  let p = out + (<usize>lo << shift);
  const end = out + (<usize>hi << shift);
  for (; p + 16 <= end; p += 16) v128.store(p, v);
  if (bytes == 4) for (; p < end; p += 4) store<i32>(p, bits);
  else for (; p < end; p += 2) store<i16>(p, <i16>bits);
}

/**
 * out[r*outStride + outOffset + c] (+)= x[r*xStride + xOffset + c], elements of `bytes` (4 or 2).
 * Threads split rows when there are enough of them, columns otherwise. Accumulation is f32 only.
 */
export function copy2d(
  tid: i32, nth: i32, out: usize, x: usize, rows: i32, cols: i32,
  outStride: i32, outOffset: i32, xStride: i32, xOffset: i32, accumulate: i32, bytes: i32,
): void {
  let r0 = 0, r1 = rows, c0 = 0, c1 = cols;
  if (rows >= nth) {
    r0 = splitLo(rows, tid, nth, 1);
    r1 = splitHi(rows, tid, nth, 1);
  } else {
    c0 = splitLo(cols, tid, nth, 16);
    c1 = splitHi(cols, tid, nth, 16);
  }
  const shift = bytes == 4 ? 2 : 1;
  const len = c1 - c0;
  if (len <= 0) return;
  for (let r = r0; r < r1; r++) {
    const o = out + ((<usize>r * outStride + outOffset + c0) << shift);
    const i = x + ((<usize>r * xStride + xOffset + c0) << shift);
    if (!accumulate) {
      memory.copy(o, i, <usize>len << shift);
      continue;
    }
    let c = 0;
    for (; c + 4 <= len; c += 4) v128.store(at32(o, c), f32x4.add(v128.load(at32(o, c)), v128.load(at32(i, c))));
    for (; c < len; c++) store<f32>(at32(o, c), load<f32>(at32(o, c)) + load<f32>(at32(i, c)));
  }
}

// ---- half-precision conversions (half.ts) ----

/**
 * cast between f32 (kind 0), f16 (1) and bf16 (2); same-kind casts are not sent here.
 */
export function cast(tid: i32, nth: i32, out: usize, x: usize, n: i32, outKind: i32, xKind: i32): void {
  const lo = splitLo(n, tid, nth, 16);
  const hi = splitHi(n, tid, nth, 16);
  let i = lo;
  for (; i < hi; i += 4) {
    const len = min(4, hi - i);
    let v: v128;
    if (xKind == 0) {
      v = len == 4 ? v128.load(at32(x, i)) : loadPartial32(at32(x, i), len);
    } else {
      const h = len == 4 ? v128.load16x4_u(x + (<usize>i << 1)) : loadPartial16(x + (<usize>i << 1), len);
      v = xKind == F16 ? halfToF32(h, F16) : halfToF32(h, BF16);
    }
    if (outKind == 0) {
      storePartial32(at32(out, i), v, len);
    } else {
      const h = outKind == F16 ? f32ToHalf(v, F16) : f32ToHalf(v, BF16);
      storePartial16(out + (<usize>i << 1), h, len);
    }
  }
}

@inline function loadPartial32(p: usize, len: i32): v128 {
  let v = f32x4.splat(0);
  v = f32x4.replace_lane(v, 0, load<f32>(p));
  if (len > 1) v = f32x4.replace_lane(v, 1, load<f32>(p, 4));
  if (len > 2) v = f32x4.replace_lane(v, 2, load<f32>(p, 8));
  if (len > 3) v = f32x4.replace_lane(v, 3, load<f32>(p, 12));
  return v;
}

@inline function loadPartial16(p: usize, len: i32): v128 {
  let v = i32x4.splat(0);
  v = i32x4.replace_lane(v, 0, <i32>load<u16>(p));
  if (len > 1) v = i32x4.replace_lane(v, 1, <i32>load<u16>(p, 2));
  if (len > 2) v = i32x4.replace_lane(v, 2, <i32>load<u16>(p, 4));
  if (len > 3) v = i32x4.replace_lane(v, 3, <i32>load<u16>(p, 6));
  return v;
}

@inline function storePartial32(p: usize, v: v128, len: i32): void {
  if (len == 4) {
    v128.store(p, v);
    return;
  }
  store<f32>(p, f32x4.extract_lane(v, 0));
  if (len > 1) store<f32>(p, f32x4.extract_lane(v, 1), 4);
  if (len > 2) store<f32>(p, f32x4.extract_lane(v, 2), 8);
}

@inline function storePartial16(p: usize, h: v128, len: i32): void {
  if (len == 4) {
    v128.store64_lane(p, i16x8.narrow_i32x4_u(h, h), 0);
    return;
  }
  store<u16>(p, <u16>i32x4.extract_lane(h, 0));
  if (len > 1) store<u16>(p, <u16>i32x4.extract_lane(h, 1), 2);
  if (len > 2) store<u16>(p, <u16>i32x4.extract_lane(h, 2), 4);
}
