/**
 * Optimizer kernels (see kernels_train.ts): the AdamW update, elementwise and split into
 * contiguous per-thread ranges, and the sum of squares behind the gradient norm, summed per
 * fixed block of elements in f64 (squares of f32 are exact in f64) so that the total does not
 * depend on how blocks are spread over threads.
 */
import { splitLo, splitHi } from "./common";

/** Elements per partial sum of sumSquares. */
export const SQUARES_BLOCK = 4096;

export function squaresBlock(): i32 {
  return SQUARES_BLOCK;
}

/**
 * In place (torch.optim.AdamW): p *= decay (1 - lr wd); m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
 * p -= stepSize m / (sqrt(v) invSqrtBc2 + eps), g = gradScale grad, stepSize = lr / (1 - b1^t),
 * invSqrtBc2 = 1 / sqrt(1 - b2^t).
 */
export function adamwStep(
  tid: i32, nth: i32, param: usize, m: usize, v: usize, grad: usize, n: i32,
  decay: f32, beta1: f32, beta2: f32, eps: f32, stepSize: f32, invSqrtBc2: f32, gradScale: f32,
): void {
  const lo = splitLo(n, tid, nth, 16);
  const hi = splitHi(n, tid, nth, 16);
  const dv = f32x4.splat(decay), b1 = f32x4.splat(beta1), b2 = f32x4.splat(beta2), c1 = f32x4.splat(1 - beta1), c2 = f32x4.splat(1 - beta2);
  const ev = f32x4.splat(eps), sv = f32x4.splat(stepSize), iv = f32x4.splat(invSqrtBc2), gs = f32x4.splat(gradScale);
  let i = lo;
  for (; i + 4 <= hi; i += 4) {
    const o = <usize>i << 2;
    const g = f32x4.mul(v128.load(grad + o), gs);
    const mi = f32x4.add(f32x4.mul(b1, v128.load(m + o)), f32x4.mul(c1, g));
    const vi = f32x4.add(f32x4.mul(b2, v128.load(v + o)), f32x4.mul(c2, f32x4.mul(g, g)));
    v128.store(m + o, mi);
    v128.store(v + o, vi);
    const denom = f32x4.add(f32x4.mul(f32x4.sqrt(vi), iv), ev);
    v128.store(param + o, f32x4.sub(f32x4.mul(v128.load(param + o), dv), f32x4.mul(sv, f32x4.div(mi, denom))));
  }
  for (; i < hi; i++) {
    const o = <usize>i << 2;
    const g = load<f32>(grad + o) * gradScale;
    const mi = beta1 * load<f32>(m + o) + (1 - beta1) * g;
    const vi = beta2 * load<f32>(v + o) + (1 - beta2) * g * g;
    store<f32>(m + o, mi);
    store<f32>(v + o, vi);
    store<f32>(param + o, load<f32>(param + o) * decay - stepSize * (mi / (sqrt<f32>(vi) * invSqrtBc2 + eps)));
  }
}

/** partials[k] (f64) = sum of x^2 over block k of SQUARES_BLOCK elements. */
export function sumSquaresBlocks(tid: i32, nth: i32, partials: usize, x: usize, n: i32): void {
  const blocks = (n + SQUARES_BLOCK - 1) / SQUARES_BLOCK;
  const lo = splitLo(blocks, tid, nth, 1);
  const hi = splitHi(blocks, tid, nth, 1);
  for (let k = lo; k < hi; k++) {
    const i0 = k * SQUARES_BLOCK;
    const i1 = min(n, i0 + SQUARES_BLOCK);
    let s0 = f64x2.splat(0), s1 = f64x2.splat(0), s2 = f64x2.splat(0), s3 = f64x2.splat(0);
    let i = i0;
    for (; i + 8 <= i1; i += 8) {
      const a = v128.load(x + (<usize>i << 2));
      const b = v128.load(x + (<usize>i << 2), 16);
      const a0 = f64x2.promote_low_f32x4(a);
      const a1 = f64x2.promote_low_f32x4(i32x4.shuffle(a, a, 2, 3, 0, 1));
      const b0 = f64x2.promote_low_f32x4(b);
      const b1 = f64x2.promote_low_f32x4(i32x4.shuffle(b, b, 2, 3, 0, 1));
      s0 = f64x2.add(s0, f64x2.mul(a0, a0));
      s1 = f64x2.add(s1, f64x2.mul(a1, a1));
      s2 = f64x2.add(s2, f64x2.mul(b0, b0));
      s3 = f64x2.add(s3, f64x2.mul(b1, b1));
    }
    const t = f64x2.add(f64x2.add(s0, s1), f64x2.add(s2, s3));
    let s = f64x2.extract_lane(t, 0) + f64x2.extract_lane(t, 1);
    for (; i < i1; i++) {
      const v = <f64>load<f32>(x + (<usize>i << 2));
      s += v * v;
    }
    store<f64>(partials + (<usize>k << 3), s);
  }
}
