/**
 * Claim 1 and 3: forward time and peak memory against sequence length. Each architecture runs
 * an inference forward of one sequence at T = 256, 512, ... until the next length would exceed
 * the memory budget (naive attention's (T, T) scores) or the time allowed for one point; the
 * log-log slope of the largest lengths estimates the exponent of time and memory in T.
 */
import type { Backend } from "../backend/backend.js";
import type { PresetOptions } from "../models/presets.js";
import { Rng } from "../util/rng.js";
import { formatBytes } from "../util/format.js";
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
  timeSlope: number;
  memorySlope: number;
}

export interface ScalingOptions {
  lengths: number[];
  memoryBudgetBytes: number;
  secondsPerPoint: number;
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

export async function runScaling(be: Backend, archs: Arch[], o: ScalingOptions): Promise<ScalingSeries[]> {
  const out: ScalingSeries[] = [];
  for (const a of archs) {
    const model = buildArch(be, a, o.model, o.seed);
    const points: ScalingPoint[] = [];
    let stop = `reached the largest length, ${o.lengths.at(-1)}`;
    // one unmeasured forward first, so JIT compilation and first-touch allocation stay out of the numbers
    const warm = Array.from({ length: o.lengths[0] }, (_, i) => i % model.config.V);
    await measure(be, () => void model.forward(model.tokens(warm, 1, warm.length)), { repeats: 1 });
    for (const T of o.lengths) {
      const mem = predict(points, T, "peakBytes");
      if (mem > o.memoryBudgetBytes) {
        stop = `T=${T} would need ~${formatBytes(mem)}, over the ${formatBytes(o.memoryBudgetBytes)} memory budget`;
        break;
      }
      const secs = predict(points, T, "seconds");
      if (secs > o.secondsPerPoint) {
        stop = `T=${T} would take ~${secs.toFixed(0)} s, over the ${o.secondsPerPoint} s allowed per point`;
        break;
      }
      const rng = new Rng(o.seed + T);
      const ids = Array.from({ length: T }, () => rng.int(0, model.config.V));
      const m = await measure(be, () => void model.forward(model.tokens(ids, 1, T)), { repeats: 3, maxSeconds: o.secondsPerPoint });
      points.push({ T, seconds: m.seconds, peakBytes: m.peakBytes });
      o.log?.(`scaling ${a.id} T=${T}: ${(m.seconds * 1000).toFixed(1)} ms, peak ${(m.peakBytes / 2 ** 20).toFixed(1)} MiB`);
    }
    const tail = points.slice(-3);
    out.push({
      arch: a.id,
      label: a.label,
      params: model.parameterCount(),
      points,
      stop,
      timeSlope: tail.length >= 2 ? logLogSlope(tail.map((p) => p.T), tail.map((p) => p.seconds)) : NaN,
      memorySlope: tail.length >= 2 ? logLogSlope(tail.map((p) => p.T), tail.map((p) => p.peakBytes)) : NaN,
    });
    for (const t of model.parameters()) t.dispose();
  }
  return out;
}
