/**
 * The chunk-parallel linear scan under both Mamba kernels: the selective scan (Gu & Dao 2023)
 * and Mamba-2's SSD (Dao & Gu 2024) are the same elementwise recurrence
 *   h[d, n]_t = exp(step_t A) h[d, n]_{t-1} + step_t B_t[n] u_t[d],     y_t[d] = C_t . h[d, :]_t
 * over channels d and state n; they differ only in what is shared (SSD: one step and one A per
 * head of R = P channels, B/C per group of heads; Mamba: per channel, B/C shared by all) and in
 * the gate. A `ScanShape` says which; the WGSL index functions below read it.
 *
 * Forward: one of four kernels (planFor): scan_forward.ts (a subgroup per channel), scan_block.ts
 * (many threads a channel along time), scan_chunks.ts (chunk partials, carries
 * h_in(k + 1) = prod_k h_in(k) + part_k over chunks, then each chunk re-run from its carry) or
 * scan_lookback.ts (the same in one dispatch, carries passed by a decoupled look-back);
 * scan_specialized.ts (one walk, walker and stager threads) is timed as a variant, not a default; each
 * writes the state every `chunk` steps (the checkpoints the backward, scan_backward.ts, starts
 * from). Atomics appear only in scan_lookback.ts, to pass carries between chunks; it applies them
 * in chunk order, so results are deterministic there too. This file holds what the forward and
 * the backward share: the shape, the uniforms, the WGSL index functions and the step function.
 */
import type { GpuContext } from "./context.js";
import { MATH } from "./wgsl.js";
import { flags, pow2, Temps, type S } from "./kit.js";
import { chooseScanForward, dispatchScanForward, type ScanForwardPlan } from "./scan_forward.js";
import { chooseScanBlock, dispatchScanBlock, fitScanBlock, scanBlockName, type ScanBlockPlan } from "./scan_block.js";
import { dispatchScanChunks, scanChunksName, type ScanChunksPlan } from "./scan_chunks.js";
import { dispatchScanLookback, scanLookbackName, scanLookbackWords, type ScanLookbackPlan } from "./scan_lookback.js";
import { dispatchScanSpecialized, scanSpecializedName, type ScanSpecializedPlan } from "./scan_specialized.js";

/**
 * A forward kernel and its tile: scan_forward.ts (a subgroup per channel), scan_block.ts,
 * scan_chunks.ts, scan_lookback.ts or scan_specialized.ts.
 */
export type ScanPlan = ScanForwardPlan | ScanBlockPlan | ScanChunksPlan | ScanLookbackPlan | ScanSpecializedPlan;

export function scanPlanName(p: ScanPlan): string {
  if (!("kind" in p)) return `lanes L${p.L} I${p.I} DB${p.DB}`;
  if (p.kind === "block") return scanBlockName(p);
  if (p.kind === "specialized") return scanSpecializedName(p);
  return p.kind === "chunks" ? scanChunksName(p) : scanLookbackName(p);
}

/**
 * Sequences at least BLOCK_MIN_T long were the block kernel's (scan_block.ts), faster than
 * scan_forward.ts at every length timed (1k to 64k steps, H200, B = 1, D = 1536, N = 16); shorter
 * ones were not timed and keep scan_forward.ts. The block kernel stays the default where the
 * look-back kernel cannot hold the states in registers (N > LOOKBACK_MAX_N): 4 steps a lane and
 * two state quads a barrier from BLOCK_LONG_T, the small tile below. Numbers:
 * bench/notes/gpu-tuning.md, "Selective scan forward, block kernel".
 */
export const BLOCK_MIN_T = 1024;
export const BLOCK_LONG_T = 4096;

/**
 * From BLOCK_MIN_T steps and up to LOOKBACK_MAX_N states, scan_lookback.ts (the chunk-parallel
 * forward in one dispatch) is the default: on one H200 run
 * (bench/results/gpu-h200-scan-lookback-2026-11-27.json, B = 1, D = 1536, N = 16) it beat both
 * the block kernel and the three-kernel scan_chunks.ts at every length timed; the plans by length
 * are the fastest of the chunk lengths (32 to 256), workgroup widths (32 to 128) and steps per
 * loop iteration (1 to 8) timed there. At 1k steps chunks of 128 ran 1.4x slower than 64 (too
 * few workgroups to fill the card); from 32k, chunks of 256 with 8 steps an iteration beat 128.
 */
export const LOOKBACK_MID_T = 2048;
export const LOOKBACK_LONG_T = 32768;
export const LOOKBACK_MAX_N = 64;

/** The recurrence's sharing pattern and dims (see the file comment). */
export interface ScanShape {
  B: number;
  T: number;
  /** channels (Mamba D, SSD H * P) and state size */
  Dc: number;
  N: number;
  chunk: number;
  /** channels that share one step / Dskip / dtBias (Mamba 1, SSD P) */
  R: number;
  /** B/C groups: the channels of group g are the g-th of G equal ranges (Mamba 1) */
  G: number;
  /** A is (Dc, N) (Mamba) rather than one value per R channels (SSD) */
  aPerState: boolean;
  softplus: boolean;
  /** clamp the step to [dtMin, dtMax] (SSD's time_step_limit) */
  clamp: boolean;
  dtMin: number;
  dtMax: number;
}

/** threads of a workgroup of the backward's element-wise kernels */
export const SCAN_WG = 256;
export interface ScanInputs {
  u: S;
  dt: S;
  A: S;
  Bmat: S;
  Cmat: S;
  Dskip: S | null;
  z: S | null;
  dtBias: S | null;
}

export const SCAN_UNIFORMS: [string, "u32" | "f32"][] = [
  ["B", "u32"], ["T", "u32"], ["Dc", "u32"], ["N", "u32"], ["chunk", "u32"], ["K", "u32"], ["R", "u32"], ["G", "u32"],
  ["bps", "u32"], ["offD", "u32"], ["offBias", "u32"], ["dtMin", "f32"], ["dtMax", "f32"],
];

/** WGSL shared by every pass: the flags, index functions and the step nonlinearity. */
export function scanCommon(s: ScanShape, f: Record<string, boolean>): { wgsl: string; key: string } {
  const fl = flags({ ...f, SOFTPLUS: s.softplus, CLAMP: s.clamp, A_PER_N: s.aPerState });
  const NP = pow2(s.N);
  return {
    key: fl.key + ":" + NP,
    wgsl: `${fl.wgsl}${MATH}
const NP: u32 = ${NP}u;
// (b, t, d) rows of u, z, out; the step, Dskip and dtBias of channel d; the B/C row of (b, t, d)
fn chanIdx(b: u32, t: u32, d: u32) -> u32 { return (b * u.T + t) * u.Dc + d; }
fn dtIdx(b: u32, t: u32, d: u32) -> u32 { return (b * u.T + t) * (u.Dc / u.R) + d / u.R; }
fn bcIdx(b: u32, t: u32, d: u32) -> u32 { return ((b * u.T + t) * u.G + d / (u.Dc / u.G)) * u.N; }
// where (b, t = 0, d) sits in the channel, step and B/C layouts, and what one step adds to each:
// the walks below index by t * stride + offset, with the divisions done once per thread
struct Rows { c: u32, s: u32, bc: u32, sS: u32, sBC: u32 }
fn rowsOf(b: u32, d: u32) -> Rows { return Rows(chanIdx(b, 0u, d), dtIdx(b, 0u, d), bcIdx(b, 0u, d), u.Dc / u.R, u.G * u.N); }
fn aOf(d: u32, n: u32) -> f32 { if (A_PER_N) { return params[d * u.N + n]; } return params[d / u.R]; }
fn dskipOf(d: u32) -> f32 { if (HAS_D) { return params[u.offD + d / u.R]; } return 0.0; }
fn biasOf(d: u32) -> f32 { if (HAS_BIAS) { return params[u.offBias + d / u.R]; } return 0.0; }
fn stepOf(v: f32) -> f32 {
  var s = v;
  if (SOFTPLUS) { s = softplus_(v); }
  if (CLAMP) { s = min(max(s, u.dtMin), u.dtMax); }
  return s;
}
fn stepGrad(v: f32) -> f32 {
  if (CLAMP) {
    var sp = v;
    if (SOFTPLUS) { sp = softplus_(v); }
    if (sp < u.dtMin || sp > u.dtMax) { return 0.0; }
  }
  if (SOFTPLUS) { return select(sigmoid_(v), 1.0, v > 20.0); }
  return 1.0;
}
fn silu_(v: f32) -> f32 { return v * sigmoid_(v); }
fn siluGrad_(v: f32) -> f32 { let s = sigmoid_(v); return s * (1.0 + v * (1.0 - s)); }
`,
  };
}

/** [A | Dskip | dtBias] in one buffer (the kernels have a limited number of bindings). */
export function scanParams(ctx: GpuContext, temps: Temps, s: ScanShape, x: ScanInputs): { buf: GPUBuffer; offD: number; offBias: number } {
  const aLen = s.aPerState ? s.Dc * s.N : s.Dc / s.R;
  const pLen = s.Dc / s.R;
  const buf = temps.get(aLen + 2 * pLen);
  ctx.copy(x.A.buffer, 0, buf, 0, aLen * 4);
  if (x.Dskip) ctx.copy(x.Dskip.buffer, 0, buf, aLen * 4, pLen * 4);
  if (x.dtBias) ctx.copy(x.dtBias.buffer, 0, buf, (aLen + pLen) * 4, pLen * 4);
  return { buf, offD: aLen, offBias: aLen + pLen };
}

/** The values of SCAN_UNIFORMS. */
export function scanUniformValues(s: ScanShape, K: number, bps: number, offD: number, offBias: number): number[] {
  return [s.B, s.T, s.Dc, s.N, s.chunk, K, s.R, s.G, bps, offD, offBias, s.clamp ? s.dtMin : 0, s.clamp ? s.dtMax : 0];
}

export class ScanCore {
  constructor(private ctx: GpuContext) {}

  private scanLimits() {
    const l = this.ctx.limits;
    return { bytes: l.maxComputeWorkgroupStorageSize, invocations: l.maxComputeInvocationsPerWorkgroup, subgroupMinSize: this.ctx.acquired.subgroupMinSize };
  }

  /** The one-subgroup-per-channel forward's tile plan for state size N on this device. */
  forwardPlan(N: number): ScanForwardPlan {
    return chooseScanForward(N, this.scanLimits());
  }

  /** The block forward's default tile (scan_block.ts). */
  blockPlan(N: number): ScanBlockPlan {
    return chooseScanBlock(N, this.scanLimits());
  }

  /**
   * The plan `forward` runs without an override: scan_lookback.ts from BLOCK_MIN_T steps (N up to
   * LOOKBACK_MAX_N), the block kernel from BLOCK_MIN_T steps when its staged B/C tile fits the
   * device's workgroup memory (large N may not), else scan_forward.ts. scan_chunks.ts is the
   * look-back kernel's three-kernel form, kept for comparison (plan overrides, --variants), and
   * scan_specialized.ts lost to the look-back kernel at B = 1 on an H100 (2.34 vs 2.07 ms at 64k
   * steps) and won by 1.1x at B = 8, T = 4096 (one run: bench/notes/gpu-tuning.md), too little
   * evidence for a default.
   */
  planFor(s: ScanShape): ScanPlan {
    if (s.T >= BLOCK_MIN_T && s.N <= LOOKBACK_MAX_N) {
      const p: ScanLookbackPlan =
        s.T < LOOKBACK_MID_T ? { kind: "lookback", CH: 64, WD: 64, U: 4 } : s.T < LOOKBACK_LONG_T ? { kind: "lookback", CH: 128, WD: 64, U: 4 } : { kind: "lookback", CH: 256, WD: 128, U: 8 };
      // the published carries take (N + 1 + N / 4) / CH words per input element u: longer chunks
      // for large states, so that they never outgrow the inputs (and the binding size limit)
      while (p.CH < s.T && scanLookbackWords(s.B, s.T, s.Dc, s.N, p.CH) > s.B * s.T * s.Dc) p.CH *= 2;
      return p;
    }
    const block = s.T >= BLOCK_MIN_T ? fitScanBlock(s.N, this.scanLimits(), s.T >= BLOCK_LONG_T ? {} : { I: 2, Q: 1 }) : null;
    return block ?? this.forwardPlan(s.N);
  }

  /**
   * The forward (scan_forward.ts, scan_block.ts or scan_chunks.ts, as planFor says). `plan`
   * overrides the choice (benchmarks and tests).
   */
  forward(out: S, stateOut: S | null, checkpoints: S | null, x: ScanInputs, stateIn: S | null, s: ScanShape, tag: string, plan?: ScanPlan): void {
    const { ctx } = this;
    if (s.B * s.T * s.Dc === 0) return;
    const p = plan ?? this.planFor(s);
    const K = Math.ceil(s.T / s.chunk);
    const seg = s.Dc / s.G;
    const temps = new Temps(ctx);
    const prm = scanParams(ctx, temps, s, x);
    const c = scanCommon(s, { HAS_D: !!x.Dskip, HAS_Z: !!x.z, HAS_BIAS: !!x.dtBias, HAS_IN: !!stateIn, HAS_OUT: !!stateOut, HAS_CKPT: !!checkpoints });
    const bufs = { out, ckpt: temps.or(checkpoints), stateOut: temps.or(stateOut), u: x.u, dt: x.dt, Bm: x.Bmat, Cm: x.Cmat, z: temps.or(x.z), stateIn: temps.or(stateIn), params: prm.buf };
    const uni = (bps: number) => scanUniformValues(s, K, bps, prm.offD, prm.offBias);
    if ("kind" in p && p.kind === "chunks") {
      dispatchScanChunks(ctx, p, c.key, tag, c.wgsl, s, bufs, SCAN_UNIFORMS, uni);
    } else if ("kind" in p && p.kind === "lookback") {
      dispatchScanLookback(ctx, p, c.key, tag, c.wgsl, s, bufs, SCAN_UNIFORMS, uni);
    } else if ("kind" in p && p.kind === "specialized") {
      const bps = Math.ceil(seg / p.CW);
      dispatchScanSpecialized(ctx, p, c.key, tag, c.wgsl, { B: s.B, N: s.N, nblk: s.G * bps, chunk: s.chunk }, bufs, SCAN_UNIFORMS, uni(bps));
    } else {
      const bps = Math.ceil(seg / p.DB);
      const shape = { B: s.B, N: s.N, nblk: s.G * bps };
      if ("kind" in p) dispatchScanBlock(ctx, p, c.key, tag, c.wgsl, shape, bufs, SCAN_UNIFORMS, uni(bps));
      else dispatchScanForward(ctx, p, c.key, tag, c.wgsl, shape, bufs, SCAN_UNIFORMS, uni(bps));
    }
    temps.release();
  }
}
