/**
 * The machine's f32x4 arithmetic peak as wasm code reaches it: the 4x8 micro-kernel of gemm.ts
 * run over panels that stay in L1 (A 4 x 256, B 256 x 8: 12 KiB), so nothing but the mul+add
 * issue rate limits it: 8 flops per 4 lanes, a fused multiply-add in the relaxed build and a
 * multiply and an add in the simd128 build (common.ts madd; on this 2-core EPYC both peak alike,
 * 92-99 GFLOP/s on two threads, since its separate add pipes match the fused ones).
 * (Register-only loops are worse yardsticks here: a dependent acc = acc * m + c chain is
 * latency-bound, and V8 rematerialises v128 constants inside loops.)
 * Each thread runs `iters` micro-kernel calls (16384 flops each) on its own scratch.
 */
import { micro4x8 } from "./gemm";

export const PEAK_KC = 256;

export function simdPeak(tid: i32, nth: i32, iters: i32, scratch: usize, scratchStride: i32): void {
  const a = scratch + <usize>tid * scratchStride;
  const b = a + PEAK_KC * 16;
  const c = b + PEAK_KC * 32;
  for (let i = 0; i < PEAK_KC * 4; i++) store<f32>(a + (<usize>i << 2), 1 + <f32>i * 1e-6);
  for (let i = 0; i < PEAK_KC * 8; i++) store<f32>(b + (<usize>i << 2), 1 - <f32>i * 1e-6);
  for (let i = 0; i < iters; i++) micro4x8(a, b, PEAK_KC, c, 32, false);
}

/** Scratch bytes per thread simdPeak needs. */
export function simdPeakScratchBytes(): i32 {
  return PEAK_KC * 48 + 128;
}
