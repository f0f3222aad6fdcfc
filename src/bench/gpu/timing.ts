/**
 * What every GPU benchmark section shares: timing a recorded workload (GPU timestamp queries
 * when the adapter has them, else the wall clock around onSubmittedWorkDone), warming the
 * clocks up, inputs that are not zeros, and comparisons against the CPU reference.
 */
import type { WebGpuBackend } from "../../backend/webgpu/index.js";
import type { GpuTensorBuffer } from "../../backend/webgpu/pool.js";
import { BufferUsage } from "../../backend/webgpu/device.js";
import { Rng } from "../../util/rng.js";

export type Timing = "timestamp" | "wallclock";

/** One timed shape: `rate` is in `unit` (TFLOP/s, GB/s or tok/s). */
export interface Result {
  section: string;
  name: string;
  shape: string;
  variant?: string;
  ms: number;
  rate: number;
  unit: string;
  iterations: number;
  timing: Timing;
  /** extra figures of a section (bytes counted, fraction of copy bandwidth, GPU time ...) */
  extra?: Record<string, number | string>;
  /** data for the JSON only, too long for the printed row (the train section's per-parameter gradient norms) */
  detail?: Record<string, unknown>;
}

/** A kernel compared against the CPU reference on random inputs. */
export interface Check {
  kernel: string;
  variant: string;
  shape: string;
  relErr: number[];
  ok: boolean;
}

/** GPU seconds between two timestamps written around `record`, or null without timestamps. */
export async function gpuSeconds(be: WebGpuBackend, record: () => void): Promise<number | null> {
  const ctx = be.ctx;
  if (!ctx.acquired.timestamps) return null;
  const querySet = ctx.device.createQuerySet({ type: "timestamp", count: 2 });
  const resolved = ctx.device.createBuffer({ size: 16, usage: BufferUsage.QUERY_RESOLVE | BufferUsage.COPY_SRC });
  ctx.timestamp(querySet, 0);
  record();
  ctx.timestamp(querySet, 1);
  ctx.resolveTimestamps(querySet, 2, resolved);
  const ticks = new BigUint64Array(await ctx.read(resolved, 16));
  querySet.destroy();
  resolved.destroy();
  return Number(ticks[1] - ticks[0]) / 1e9;
}

/** Seconds per iteration of `record` (which enqueues one iteration), after warm-up. */
export async function timeIt(be: WebGpuBackend, record: () => void, iterations: number): Promise<{ seconds: number; timing: Timing }> {
  // warm-up: pipelines compiled, buffers touched, and the clocks up from idle (which takes a
  // fraction of a second of load: shorter warm-ups measured the first of a series slow)
  const t0 = performance.now();
  do {
    record();
    await be.sync();
  } while (performance.now() - t0 < 300);
  const s = await gpuSeconds(be, () => {
    for (let i = 0; i < iterations; i++) record();
  });
  if (s !== null) return { seconds: s / iterations, timing: "timestamp" };
  const t1 = performance.now();
  for (let i = 0; i < iterations; i++) record();
  await be.sync();
  return { seconds: (performance.now() - t1) / 1000 / iterations, timing: "wallclock" };
}

/**
 * Load the GPU for a while before the first timing: after CPU-bound work its clocks have
 * dropped to idle, and a 300 ms warm-up still measured the first kernel of a run 15% slow.
 */
export async function warmUp(be: WebGpuBackend, n: number, seconds = 2): Promise<void> {
  const [a, b, out] = [filled(be, n * n, 1), filled(be, n * n, 1), filled(be, n * n, 0)];
  const t0 = performance.now();
  while (performance.now() - t0 < seconds * 1000) {
    be.kernels.matmul(out, a, b, { M: n, N: n, K: n, transA: false, transB: false, accumulate: false });
    await be.sync();
  }
  for (const h of [a, b, out]) be.release(h);
}

export function filled(be: WebGpuBackend, n: number, value: number): GpuTensorBuffer {
  const h = be.allocate("f32", n);
  be.kernels.fill(h, value, n);
  return h;
}

/** Random-ish data without a host array of the full size: a pattern, scaled and shifted. */
export function patterned(be: WebGpuBackend, n: number, scale: number, shift = 0): GpuTensorBuffer {
  const period = 4099; // prime, so rows do not repeat in step with powers of two
  const pattern = Float32Array.from({ length: period }, (_, i) => shift + scale * Math.sin(i * 12.9898) * 1.7);
  const small = be.upload("f32", pattern);
  const h = be.allocate("f32", n);
  for (let o = 0; o < n; o += period) be.kernels.copy2d(h, small, 1, Math.min(period, n - o), 0, o, 0, 0, false);
  be.release(small);
  return h;
}

const rng = new Rng(7);

export function randn(n: number, std = 1): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = rng.normal() * std;
  return a;
}

export function uniform(n: number, lo: number, hi: number): Float32Array {
  return Float32Array.from({ length: n }, () => lo + (hi - lo) * rng.uniform());
}

export function relErr(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < want.length; i++) {
    const e = got[i] - want[i];
    num += e * e;
    den += want[i] * want[i];
  }
  return Number.isFinite(num) ? Math.sqrt(num / Math.max(den, 1e-30)) : Infinity;
}

/**
 * Runs `gpu` on uploaded copies of the inputs (outputs poisoned with NaN first, so an unwritten
 * element fails) and compares with `ref` on the host; returns each output's relative error.
 */
export async function compare(
  be: WebGpuBackend,
  inputs: Float32Array[],
  outputs: number[],
  ref: (outs: Float32Array[], ins: Float32Array[]) => void,
  gpu: (outs: GpuTensorBuffer[], ins: GpuTensorBuffer[]) => void,
): Promise<number[]> {
  const want = outputs.map((n) => new Float32Array(n));
  ref(want, inputs);
  const ins = inputs.map((a) => be.upload("f32", a));
  const outs = outputs.map((n) => be.upload("f32", new Float32Array(n).fill(Number.NaN)));
  gpu(outs, ins);
  const errs: number[] = [];
  for (let i = 0; i < outs.length; i++) errs.push(relErr((await be.read(outs[i], "f32", outputs[i])) as Float32Array, want[i]));
  for (const h of [...ins, ...outs]) be.release(h);
  return errs;
}

/** A table line of a result. */
export function fmt(r: Result): string {
  const extra = r.extra ? "  " + Object.entries(r.extra).map(([k, v]) => `${k} ${typeof v === "number" ? v.toPrecision(3) : v}`).join("  ") : "";
  return `${r.name.padEnd(18)} ${r.shape.padEnd(26)} ${(r.variant ?? "").padEnd(20)} ${r.ms.toFixed(3).padStart(10)} ms ${r.rate.toPrecision(4).padStart(8)} ${r.unit}${extra}`;
}
