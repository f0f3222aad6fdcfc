/** Shared pieces of the cpu backend's mixer kernel tables (mixers_*.ts). */
import type { CpuRuntime } from "./runtime.js";

/** Work per thread below which a mixer kernel stays on fewer threads. */
export const MIXER_GRAIN = {
  /** streaming work, in elements */
  memory: 1 << 16,
  /** work with an exp (or a few mul-adds on L1-resident state) per unit */
  exp: 1 << 13,
  /** multiply-adds */
  flops: 1 << 20,
};

/**
 * out[c] (+)= sum over r < rows of x[r * stride + offset + c] (c < cols), rows in order: how the
 * per-sequence and per-slab partial results of a backward are combined, so that gradients do
 * not depend on the thread count. x is a byte address in the wasm memory.
 */
export function reduceRows(rt: CpuRuntime, out: number, x: number, rows: number, cols: number, stride: number, offset: number, accumulate: boolean): void {
  if (cols <= 0) return;
  rt.call("reduceRows", rt.threadsFor(rows * cols, MIXER_GRAIN.memory), out, x, rows, cols, stride, offset, accumulate ? 1 : 0);
}
