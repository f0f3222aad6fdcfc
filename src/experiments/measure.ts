/**
 * Measuring one thing: wall time (best of repeats, after the backend has finished its queued
 * work) and peak bytes allocated by the backend above what was live before (exact accounting
 * of tensor storage, not RSS).
 */
import type { Backend } from "../backend/backend.js";
import { tidyAsync } from "../tensor/scope.js";
import { noGradAsync } from "../autograd/tape.js";

export interface Measurement {
  seconds: number;
  /** peak bytes of tensor storage during the run, above what was live before it */
  peakBytes: number;
}

/**
 * At least `repeats` runs, more (up to `maxRepeats`) until `minSeconds` have passed, so that a
 * millisecond-scale run is the best of several; none started after `maxSeconds`.
 */
export async function measure(be: Backend, run: () => void | Promise<void>, opts: { repeats?: number; maxRepeats?: number; minSeconds?: number; maxSeconds?: number } = {}): Promise<Measurement> {
  const repeats = opts.repeats ?? 3;
  const maxRepeats = Math.max(repeats, opts.maxRepeats ?? repeats);
  let best = Infinity;
  let peak = 0;
  const start = performance.now();
  for (let i = 0; i < maxRepeats; i++) {
    const base = be.memory().bytesInUse;
    be.resetPeak();
    const t0 = performance.now();
    await noGradAsync(() =>
      tidyAsync(async () => {
        await run();
        await be.sync();
      }),
    );
    const s = (performance.now() - t0) / 1000;
    best = Math.min(best, s);
    peak = Math.max(peak, be.memory().peakBytes - base);
    const elapsed = (performance.now() - start) / 1000;
    if (elapsed > (opts.maxSeconds ?? Infinity)) break;
    if (i + 1 >= repeats && elapsed >= (opts.minSeconds ?? 0)) break;
  }
  return { seconds: best, peakBytes: peak };
}

/** Least-squares slope of log(y) against log(x): the exponent of a power law y ~ x^k. */
export function logLogSlope(xs: number[], ys: number[]): number {
  const lx = xs.map(Math.log);
  const ly = ys.map(Math.log);
  const n = xs.length;
  const mx = lx.reduce((a, b) => a + b, 0) / n;
  const my = ly.reduce((a, b) => a + b, 0) / n;
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i++) {
    num += (lx[i] - mx) * (ly[i] - my);
    den += (lx[i] - mx) ** 2;
  }
  return den > 0 ? num / den : NaN;
}
