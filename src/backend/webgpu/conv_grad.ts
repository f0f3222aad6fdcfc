/**
 * The filter (and bias) gradient of a causal depthwise conv1d, shared by Mamba's conv1d and the
 * Gated DeltaNet short convolution (their refs: backend/ref/scan.ts conv1dBackward and
 * ref/deltanet.ts deltanetConvBackward):
 *
 *   dweight[c, k] = sum_(b, t) dout[b, t, c] * xin(b, t + k - (W - 1), c)    xin(b, s < 0, c): the window state
 *   dbias[c]      = sum_(b, t) dout[b, t, c]
 *
 * A sum over all B T rows for only D (W + 1) outputs: one thread per output walking the rows (the
 * first form) ran 3.4 ms a call for B T = 4096, D = 1536 on an H100, a third of a 130M Mamba's
 * training step. Here it is a two-pass reduction without atomics, so the sums are the same from
 * run to run:
 *   1. partials: a thread per (channel, run of RPT consecutive rows), channels across the lanes
 *      (coalesced rows), the last W inputs of its channel kept in registers as the run slides;
 *      each run writes its W (+ 1) sums to slot `row / RPT` of a scratch buffer;
 *   2. sums: a thread per output adds its column of slots in order (and adds to the gradient
 *      already there where the caller accumulates).
 * RPT grows with B T so that there are at most MAX_SLOTS slots (scratch: MAX_SLOTS D (W + 1) words).
 */
import type { GpuContext } from "./context.js";
import { grid1d } from "./context.js";
import { LINEAR_INDEX } from "./wgsl.js";
import { flags, launch, Temps, type Buf, type S } from "./kit.js";

const WG = 256;
/** At most this many runs of rows per channel (partial sums in the scratch buffer). */
const MAX_SLOTS = 256;
/** At least this many rows a run (fewer slots to add when B T is small). */
const MIN_RUN = 16;

const UNIFORMS: [string, "u32"][] = [["B", "u32"], ["T", "u32"], ["D", "u32"], ["RPT", "u32"], ["slots", "u32"]];

export interface ConvGradArgs {
  dweight: S;
  /** the bias gradient (written as dweight is), or null without a bias */
  dbias: S | null;
  dout: S;
  x: S;
  /** the window state (B, W - 1, D) before the first step, or null for zeros */
  stateIn: S | null;
  /** add the sums to dweight rather than write them */
  accumulate: boolean;
}

/** Rows a run and the number of runs (slots) for B T rows. */
export function convGradRuns(rows: number): { RPT: number; slots: number } {
  const RPT = Math.max(MIN_RUN, Math.ceil(rows / MAX_SLOTS));
  return { RPT, slots: Math.ceil(rows / RPT) };
}

function partialsWgsl(W: number, outs: number): string {
  const S = W - 1;
  const taps = Array.from({ length: W }, (_, k) => k);
  return /* wgsl */ `${LINEAR_INDEX(WG)}
fn xin(b: u32, s: i32, c: u32) -> f32 {
  if (s >= 0) { return x[(b * u.T + u32(s)) * u.D + c]; }
  if (HAS_STATE) { return stateIn[(b * ${S}u + u32(${S} + s)) * u.D + c]; }
  return 0.0;
}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = linearIndex(gid, nwg);
  if (i >= u.slots * u.D) { return; }
  let c = i % u.D;
  let slot = i / u.D;
  let first = slot * u.RPT;
  let end = min(first + u.RPT, u.B * u.T);
  ${taps.map((k) => `var acc${k} = 0.0;`).join(" ")}
  var accBias = 0.0;
  // win${S - 0}: xin(t), win${S > 0 ? S - 1 : 0}: xin(t - 1), ... (reloaded where a run crosses into the next sequence)
  ${taps.map((k) => `var win${k} = 0.0;`).join(" ")}
  for (var r = first; r < end; r++) {
    let b = r / u.T;
    let t = i32(r % u.T);
    if (r == first || t == 0) {
      ${taps.map((k) => `win${k} = xin(b, t + ${k - S}, c);`).join(" ")}
    } else {
      ${taps.slice(0, S).map((k) => `win${k} = win${k + 1};`).join(" ")}
      win${S} = x[r * u.D + c];
    }
    let g = dout[r * u.D + c];
    ${taps.map((k) => `acc${k} += g * win${k};`).join(" ")}
    accBias += g;
  }
  let o = (slot * u.D + c) * ${outs}u;
  ${taps.map((k) => `part[o + ${k}u] = acc${k};`).join(" ")}
  if (HAS_BIAS) { part[o + ${W}u] = accBias; }
}`;
}

function sumsWgsl(W: number, outs: number): string {
  return /* wgsl */ `${LINEAR_INDEX(WG)}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = linearIndex(gid, nwg);
  if (i >= u.D * ${outs}u) { return; }
  var acc = 0.0;
  for (var s = 0u; s < u.slots; s++) { acc += part[s * u.D * ${outs}u + i]; }
  let c = i / ${outs}u;
  let k = i % ${outs}u;
  if (k == ${W}u) { if (HAS_BIAS) { dbias[c] = acc; } return; }
  if (ACCUMULATE) { acc += dweight[c * ${W}u + k]; }
  dweight[c * ${W}u + k] = acc;
}`;
}

/** Record both passes; `label` names the kernels in profiles ("conv1d:bwdw", "dnconv:bwdw"). */
export function convWeightGrad(ctx: GpuContext, label: string, a: ConvGradArgs, B: number, T: number, D: number, W: number): void {
  if (D * W === 0) return;
  const temps = new Temps(ctx);
  const f = flags({ HAS_STATE: !!a.stateIn, HAS_BIAS: !!a.dbias, ACCUMULATE: a.accumulate });
  const outs = W + (a.dbias ? 1 : 0);
  const { RPT, slots } = convGradRuns(B * T);
  const part = temps.get(Math.max(1, slots) * D * outs);
  const uniforms = [B, T, D, RPT, slots];
  if (slots > 0) {
    launch(
      ctx,
      `${label}:partials:${W}:${f.key}`,
      () => ({
        label: `${label}:partials`,
        uniforms: UNIFORMS,
        bindings: [["part", "write", "array<f32>"], ["dout", "read", "array<f32>"], ["x", "read", "array<f32>"], ["stateIn", "read", "array<f32>"]],
        body: `${f.wgsl}${partialsWgsl(W, outs)}`,
      }),
      [part, a.dout, a.x, temps.or(a.stateIn)] as Buf[],
      uniforms,
      grid1d(slots * D, WG),
    );
  }
  launch(
    ctx,
    `${label}:sums:${W}:${f.key}`,
    () => ({
      label: `${label}:sums`,
      uniforms: UNIFORMS,
      bindings: [["dweight", "write", "array<f32>"], ["dbias", "write", "array<f32>"], ["part", "read", "array<f32>"]],
      body: `${f.wgsl}${sumsWgsl(W, outs)}`,
    }),
    [a.dweight, temps.or(a.dbias), part],
    uniforms,
    grid1d(D * outs, WG),
  );
  temps.release();
}
