/**
 * The machine's f32x4 arithmetic peak as this module's code sees it: twelve independent
 * chains of acc = acc * m + c (wasm SIMD has no fused multiply-add, so a multiply and an add
 * per 4 lanes: 8 flops). Twelve chains cover the mul + add latency at two pairs per cycle.
 * Each thread runs `iters` iterations; the host times the call.
 */
@inline function step(a: v128, m: v128, c: v128): v128 {
  return f32x4.add(f32x4.mul(a, m), c);
}

export const PEAK_FLOPS_PER_ITER = 12 * 8;

export function simdPeak(tid: i32, nth: i32, iters: i32, sink: usize): void {
  let a0 = f32x4.splat(1.0), a1 = f32x4.splat(1.1), a2 = f32x4.splat(1.2), a3 = f32x4.splat(1.3);
  let a4 = f32x4.splat(1.4), a5 = f32x4.splat(1.5), a6 = f32x4.splat(1.6), a7 = f32x4.splat(1.7);
  let a8 = f32x4.splat(1.8), a9 = f32x4.splat(1.9), a10 = f32x4.splat(2.0), a11 = f32x4.splat(2.1);
  const m = f32x4.splat(0.9999999);
  const c = f32x4.splat(<f32>tid * 1e-7 + 1e-7);
  for (let i = 0; i < iters; i++) {
    a0 = step(a0, m, c);
    a1 = step(a1, m, c);
    a2 = step(a2, m, c);
    a3 = step(a3, m, c);
    a4 = step(a4, m, c);
    a5 = step(a5, m, c);
    a6 = step(a6, m, c);
    a7 = step(a7, m, c);
    a8 = step(a8, m, c);
    a9 = step(a9, m, c);
    a10 = step(a10, m, c);
    a11 = step(a11, m, c);
  }
  let s = f32x4.add(f32x4.add(f32x4.add(a0, a1), f32x4.add(a2, a3)), f32x4.add(f32x4.add(a4, a5), f32x4.add(a6, a7)));
  s = f32x4.add(s, f32x4.add(f32x4.add(a8, a9), f32x4.add(a10, a11)));
  // the result goes to memory so the loop is not optimised away
  store<f32>(sink + (<usize>tid << 2), f32x4.extract_lane(s, 0));
}
