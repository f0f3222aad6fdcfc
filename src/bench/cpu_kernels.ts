/**
 * Kernel-level measurements of the cpu backend, shared by `seqlab bench cpu` and
 * scripts/bench-cpu-kernels.ts: the machine's f32x4 peak as wasm code reaches it, matmul
 * GFLOP/s against it, and streaming bandwidth (the floor of memory-bound decoding).
 *
 * Counting: a matmul does 2 M N K flops. Times are the best of several runs: the machine may be
 * shared, and the best run is the least disturbed one.
 */
import type { CpuBackend } from "../backend/cpu/backend.js";
import type { MatmulDims } from "../backend/kernels.js";
import { f32ToF16 } from "../util/half.js";

/** Best wall time of `reps` runs of fn, in seconds, after one warm-up run. */
export function bestSeconds(fn: () => void, reps: number): number {
  fn();
  let t = Infinity;
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    fn();
    t = Math.min(t, (performance.now() - t0) / 1e3);
  }
  return t;
}

function randomView(be: CpuBackend, n: number): Float32Array {
  const a = be.allocate("f32", n) as Float32Array;
  for (let i = 0; i < n; i++) a[i] = Math.random() - 0.5;
  return a;
}

/**
 * GFLOP/s of the f32x4 multiply-add micro-kernel (fused in the relaxed build) on L1-resident operands, on every thread at once
 * (assembly/peak.ts): 2 * 4 * 8 * 256 flops per call.
 */
export function simdPeakGflops(be: CpuBackend, iters = 3000, reps = 25): number {
  const [scratch, stride] = be.runtime.scratch(be.runtime.exports.simdPeakScratchBytes());
  const t = bestSeconds(() => be.runtime.call("simdPeak", be.threads, iters, scratch, stride), reps);
  return (be.threads * iters * 2 * 4 * 8 * 256) / t / 1e9;
}

export interface MatmulCase {
  name: string;
  d: MatmulDims;
}

export interface MatmulResult {
  seconds: number;
  gflops: number;
  /** operand bytes (a, b at its storage width, out) over the time */
  gbytesPerSecond: number;
}

export function benchMatmul(be: CpuBackend, c: MatmulCase, reps: number): MatmulResult {
  const { M, N, K } = c.d;
  const half = c.d.bDtype === "f16" || c.d.bDtype === "bf16";
  const a = randomView(be, M * K);
  let b: Float32Array | Uint16Array;
  if (half) {
    b = be.allocate(c.d.bDtype!, K * N) as Uint16Array;
    for (let i = 0; i < b.length; i++) b[i] = c.d.bDtype === "f16" ? f32ToF16(Math.random() - 0.5) : 0x3f80;
  } else {
    b = randomView(be, K * N);
  }
  const out = be.allocate("f32", M * N) as Float32Array;
  const t = bestSeconds(() => be.kernels.matmul(out, a, b, c.d), reps);
  be.release(a);
  be.release(b);
  be.release(out);
  const flops = 2 * M * N * K;
  const bytes = 4 * (M * K + M * N) + (half ? 2 : 4) * K * N;
  return { seconds: t, gflops: flops / t / 1e9, gbytesPerSecond: bytes / t / 1e9 };
}
