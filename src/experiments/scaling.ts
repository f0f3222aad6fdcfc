/**
 * Claim 1 and 3: forward time and peak memory against sequence length. Each architecture runs
 * an inference forward of one sequence at T = 256, 512, ... until the next length would exceed
 * the memory budget (naive attention's (T, T) scores) or the time allowed for one point; the
 * log-log slope of the largest lengths estimates the exponent of time and memory in T.
 *
 * An exponent is only what the slope says where the work that grows with T dominates the time.
 * Every forward also pays a fixed cost (on a GPU, the dispatches and the wait for the queue:
 * about a millisecond for these models, as long as the whole T-dependent work up to many
 * thousands of tokens), and terms linear in T bend a quadratic's slope until T is large. So past
 * the planned lengths T keeps doubling, up to `maxLength` and within the same budgets, while the
 * fit's smallest point is still under 1 / fixedCostShare times the smallest length's time (which
 * bounds the fixed cost from above) or the largest point is under minSecondsAtLargest. On a CPU
 * the planned lengths are mostly past both already; each series records the share it reached.
 */
import type { Backend } from "../backend/backend.js";
import type { PresetOptions } from "../models/presets.js";
import { Rng } from "../util/rng.js";
import { formatBytes } from "../util/format.js";
import { TensorTooLargeError } from "../util/errors.js";
import { logLogSlope, measure } from "./measure.js";
import { buildArch, type Arch } from "./zoo.js";

export interface ScalingPoint {
  T: number;
  seconds: number;
  peakBytes: number;
}

export interface ScalingSeries {
  arch: string;
  label: string;
  params: number;
  points: ScalingPoint[];
  /** why the series ends where it does */
  stop: string;
  /** time at the smallest length over time at the fit's smallest length (the fixed cost's share there, at most) */
  fixedCostShare: number;
  timeSlope: number;
  memorySlope: number;
}

export interface ScalingOptions {
  lengths: number[];
  /** how far T may keep doubling past `lengths` while the fixed cost is a large share */
  maxLength: number;
  /** the fixed cost's largest acceptable share of the fit's smallest time */
  fixedCostShare: number;
  /** ... and the least time the largest length should take */
  minSecondsAtLargest: number;
  memoryBudgetBytes: number;
  secondsPerPoint: number;
  minSecondsPerPoint: number;
  model: PresetOptions;
  seed: number;
  log?: (line: string) => void;
}

/** Extrapolate the next point's cost from the last two (power law), or assume linear growth. */
function predict(points: ScalingPoint[], T: number, key: "seconds" | "peakBytes"): number {
  const n = points.length;
  if (n === 0) return 0;
  const last = points[n - 1];
  const k = n >= 2 ? Math.max(1, logLogSlope([points[n - 2].T, last.T], [points[n - 2][key], last[key]])) : 1;
  return last[key] * (T / last.T) ** k;
}

/** The points the slopes are fitted over: the three largest lengths. */
export const fitWindow = (points: ScalingPoint[]) => points.slice(-3);

/** The smallest length's time as a share of the fit window's smallest time (1 with one point). */
function fixedShare(points: ScalingPoint[]): number {
  if (points.length < 2) return 1;
  return points[0].seconds / fitWindow(points)[0].seconds;
}

/**
 * The length to measure after `points`, or why the series ends there: the planned lengths, then
 * doublings up to maxLength while the fixed cost may still weigh in the fit, each within the
 * memory budget and the time per point (both extrapolated from the last two points).
 */
export function nextLength(o: Omit<ScalingOptions, "model" | "seed" | "log" | "minSecondsPerPoint">, points: ScalingPoint[]): { T: number } | { stop: string } {
  const planned = o.lengths.length;
  const i = points.length;
  const T = i < planned ? o.lengths[i] : o.lengths[planned - 1] * 2 ** (i - planned + 1);
  if (i >= planned) {
    const last = points[i - 1];
    if (fixedShare(points) <= o.fixedCostShare && last.seconds >= o.minSecondsAtLargest) {
      return { stop: i === planned ? `reached the largest length, ${last.T}` : `reached T = ${last.T}, where the fixed cost is at most ${(100 * fixedShare(points)).toFixed(1)}% of the fit's smallest time` };
    }
    if (T > o.maxLength) return { stop: `reached the largest length allowed, ${last.T}` };
  }
  const mem = predict(points, T, "peakBytes");
  if (mem > o.memoryBudgetBytes) return { stop: `T=${T} would need ~${formatBytes(mem)}, over the ${formatBytes(o.memoryBudgetBytes)} memory budget` };
  const secs = predict(points, T, "seconds");
  if (secs > o.secondsPerPoint) return { stop: `T=${T} would take ~${secs.toFixed(0)} s, over the ${o.secondsPerPoint} s allowed per point` };
  return { T };
}

export async function runScaling(be: Backend, archs: Arch[], o: ScalingOptions): Promise<ScalingSeries[]> {
  const out: ScalingSeries[] = [];
  for (const a of archs) {
    const model = buildArch(be, a, o.model, o.seed);
    const points: ScalingPoint[] = [];
    // one unmeasured forward first, so JIT compilation and first-touch allocation stay out of the numbers
    const warm = Array.from({ length: o.lengths[0] }, (_, i) => i % model.config.V);
    await measure(be, () => void model.forward(model.tokens(warm, 1, warm.length)), { repeats: 1 });
    let next = nextLength(o, points);
    while ("T" in next) {
      const T = next.T;
      const rng = new Rng(o.seed + T);
      const ids = Array.from({ length: T }, () => rng.int(0, model.config.V));
      let m;
      try {
        m = await measure(be, () => void model.forward(model.tokens(ids, 1, T)), { repeats: 3, minSeconds: o.minSecondsPerPoint, maxRepeats: 10, maxSeconds: o.secondsPerPoint });
      } catch (e) {
        // within the budget but over the device's largest buffer (naive attention's scores on a GPU)
        if (!(e instanceof TensorTooLargeError)) throw e;
        next = { stop: `T=${T}: ${e.message}` };
        break;
      }
      points.push({ T, seconds: m.seconds, peakBytes: m.peakBytes });
      o.log?.(`scaling ${a.id} T=${T}: ${(m.seconds * 1000).toFixed(1)} ms, peak ${(m.peakBytes / 2 ** 20).toFixed(1)} MiB`);
      next = nextLength(o, points);
    }
    const stop = next.stop;
    const tail = fitWindow(points);
    out.push({
      arch: a.id,
      label: a.label,
      params: model.parameterCount(),
      points,
      stop,
      fixedCostShare: fixedShare(points),
      timeSlope: tail.length >= 2 ? logLogSlope(tail.map((p) => p.T), tail.map((p) => p.seconds)) : NaN,
      memorySlope: tail.length >= 2 ? logLogSlope(tail.map((p) => p.T), tail.map((p) => p.peakBytes)) : NaN,
    });
    for (const t of model.parameters()) t.dispose();
    // the next architecture starts from an empty pool, not this one's buffers
    be.releaseCached?.();
  }
  return out;
}
