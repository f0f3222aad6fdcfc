/**
 * A chunk-parallel forward of both Mamba scans (scan_core.ts states the recurrence), the shape
 * bench/notes/gpu-tuning.md ("Selective scan forward, block kernel", next step 1) proposes for
 * few channels: a thread per (batch row, chunk of CH steps, channel) keeps all N states of its
 * channel in registers and walks its chunk step by step, so
 *   - neighbouring threads are neighbouring channels: u, dt, z and y move in coalesced rows, and
 *     the B/C row of a step is one broadcast read for the whole workgroup,
 *   - there are no shuffles or barriers: the N states are N independent multiply-add chains,
 *   - any number of chunks are in flight, whatever B and D are.
 * The cost is a second exp2 per update (three passes):
 *   1. per (b, chunk, d): the chunk's state from zero, S, and its sum of steps, whose decay
 *      product is exp2(A log2e sum) (one exp per state per chunk, not per step),
 *   2. per (b, d, n): the carries, h_in(k + 1) = exp2(A log2e sum_k) h_in(k) + S_k,
 *   3. per (b, chunk, d): the chunk re-run from h_in with outputs, checkpoints as they pass.
 * It was the default from 2k steps until scan_lookback.ts, the same walks in one dispatch with
 * the carries passed between chunks by a look-back, beat it at every length (ScanCore.planFor).
 */
import type { GpuContext } from "./context.js";
import { grid1d } from "./context.js";
import { LINEAR_INDEX } from "./wgsl.js";
import { launch, Temps } from "./kit.js";
import type { ScanForwardBuffers } from "./scan_forward.js";

/** Chunk length in steps, and channels per workgroup. */
export interface ScanChunksPlan {
  kind: "chunks";
  CH: number;
  WD: number;
}

export function scanChunksName(p: ScanChunksPlan): string {
  return `chunks CH${p.CH} WD${p.WD}`;
}

/** WGSL helpers shared by passes 1 and 3: A and the B/C quads of a row, states in vec4s. */
function helpers(NQ: number, vecBC: boolean): string {
  const bc4 = vecBC
    ? `fn bc4(which: u32, row: u32, q: u32) -> vec4<f32> {
  if (which == 0u) { return Bm[row / 4u + q]; }
  return Cm[row / 4u + q];
}`
    : `fn bc4(which: u32, row: u32, q: u32) -> vec4<f32> {
  var r = vec4<f32>(0.0);
  for (var k = 0u; k < 4u; k++) {
    let n = q * 4u + k;
    if (n < u.N) { if (which == 0u) { r[k] = Bm[row + n]; } else { r[k] = Cm[row + n]; } }
  }
  return r;
}`;
  return `
const NQ: u32 = ${NQ}u;
${bc4}
// A of channel d for states 4 q .. 4 q + 3, times log2(e) (padding states: 0)
fn a4(d: u32, q: u32) -> vec4<f32> {
  var r = vec4<f32>(0.0);
  for (var k = 0u; k < 4u; k++) {
    let n = q * 4u + k;
    if (n < u.N) { r[k] = aOf(d, n) * LOG2E; }
  }
  return r;
}
`;
}

/** The (b, chunk, d) a thread owns: workgroups of WD channels (never crossing a B/C group). */
const OWN = (WD: number) => `
  let blk = wid.x;
  let kc = wid.y;
  let b = wid.z;
  let seg = u.Dc / u.G;
  let g = blk / u.bps;
  let dLocal = (blk % u.bps) * ${WD}u + lid;
  let d = g * seg + dLocal;
  if (dLocal >= seg) { return; }
  let t0 = kc * u.CH;
  let t1 = min(u.T, t0 + u.CH);
  var a: array<vec4<f32>, NQ>;
  for (var q = 0u; q < NQ; q++) { a[q] = a4(d, q); }
`;

/** The scan's sizes, as ScanCore hands them to a chunked forward (this file, scan_lookback.ts). */
export interface ChunkedScanShape {
  B: number;
  T: number;
  Dc: number;
  N: number;
  G: number;
}
export type ScanUniforms = [string, "u32" | "f32"][];

/**
 * What a chunked forward with chunks of CH steps and WD channels a workgroup derives: state
 * quads NQ, chunks NC, channel blocks per B/C group bps, whether B/C rows are read as vec4s, and
 * the uniforms (scan_core.ts's, then CH and NC).
 */
export function chunkedLayout(CH: number, WD: number, shape: ChunkedScanShape, uniforms: ScanUniforms, uniformValues: (bps: number) => number[]) {
  const { T, Dc, N, G } = shape;
  const NC = Math.ceil(T / CH);
  const bps = Math.ceil(Dc / G / WD);
  const vecBC = N % 4 === 0;
  return {
    NQ: Math.ceil(N / 4),
    NC,
    bps,
    vecBC,
    bc: vecBC ? "array<vec4<f32>>" : "array<f32>",
    uni: [...uniforms, ["CH", "u32"], ["NC", "u32"]] as ScanUniforms,
    vals: [...uniformValues(bps), CH, NC],
  };
}

/**
 * Record the three passes. `decl` is scan_core.ts's shared WGSL (flags, index functions); the
 * uniforms are scan_core.ts's plus CH and NC (chunkedLayout).
 */
export function dispatchScanChunks(
  ctx: GpuContext,
  plan: ScanChunksPlan,
  key: string,
  tag: string,
  decl: string,
  shape: ChunkedScanShape,
  bufs: ScanForwardBuffers,
  uniforms: ScanUniforms,
  uniformValues: (bps: number) => number[],
): void {
  const { CH, WD } = plan;
  const { B, Dc, N, G } = shape;
  const { NQ, NC, bps, vecBC, bc, uni, vals } = chunkedLayout(CH, WD, shape, uniforms, uniformValues);
  const temps = new Temps(ctx);
  // chunk partials (B, NC, Dc, N), then the chunks' step sums (B, NC, Dc); carries (B, NC, Dc, N)
  const part = temps.get(B * NC * Dc * (N + 1));
  const hin = temps.get(B * NC * Dc * N);
  const body = `${decl}${helpers(NQ, vecBC)}`;
  const k = `${key}:${CH}:${WD}:${+vecBC}`;
  const step = /* wgsl */ `
    let dl = stepOf(dt[dtIdx(b, t, d)] + biasOf(d));
    let x = uu[chanIdx(b, t, d)];
    let du = dl * x;
    let row = bcIdx(b, t, d);`;

  // 1. each chunk from a zero state, and its sum of steps
  launch(
    ctx,
    `${tag}:fwdch1:${k}`,
    () => ({
      label: `${tag}:fwdch1`,
      uniforms: uni,
      bindings: [["part", "write", "array<f32>"], ["uu", "read", "array<f32>"], ["dt", "read", "array<f32>"], ["Bm", "read", bc], ["params", "read", "array<f32>"], ["Cm", "read", bc]],
      body: `${body}
@compute @workgroup_size(${WD})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  ${OWN(WD)}
  var h: array<vec4<f32>, NQ>;
  var sum = 0.0;
  for (var t = t0; t < t1; t++) {
    ${step}
    sum += dl;
    for (var q = 0u; q < NQ; q++) { h[q] = exp2(dl * a[q]) * h[q] + du * bc4(0u, row, q); }
  }
  let e = ((b * u.NC + kc) * u.Dc + d) * u.N;
  for (var q = 0u; q < NQ; q++) {
    for (var j = 0u; j < 4u; j++) { if (q * 4u + j < u.N) { part[e + q * 4u + j] = h[q][j]; } }
  }
  part[u.B * u.NC * u.Dc * u.N + (b * u.NC + kc) * u.Dc + d] = sum;
}`,
    }),
    [part, bufs.u, bufs.dt, bufs.Bm, bufs.params, bufs.Cm],
    vals,
    [G * bps, NC, B],
  );

  // 2. carries over chunks per (b, d, n): the state entering every chunk, the final state
  launch(
    ctx,
    `${tag}:fwdch2:${k}`,
    () => ({
      label: `${tag}:fwdch2`,
      uniforms: uni,
      bindings: [["hin", "write", "array<f32>"], ["ckpt", "write", "array<f32>"], ["stateOut", "write", "array<f32>"], ["part", "read", "array<f32>"], ["stateIn", "read", "array<f32>"], ["params", "read", "array<f32>"]],
      body: `${decl}${LINEAR_INDEX(64)}
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = linearIndex(gid, nwg);
  if (i >= u.B * u.Dc * u.N) { return; }
  let b = i / (u.Dc * u.N);
  let dn = i % (u.Dc * u.N);
  let d = dn / u.N;
  let a = aOf(d, dn % u.N) * LOG2E;
  var h = 0.0;
  if (HAS_IN) { h = stateIn[i]; }
  if (HAS_CKPT) { ckpt[(b * u.K) * u.Dc * u.N + dn] = h; }
  let sums = u.B * u.NC * u.Dc * u.N;
  for (var kc = 0u; kc < u.NC; kc++) {
    let e = (b * u.NC + kc) * u.Dc * u.N + dn;
    hin[e] = h;
    h = exp2(a * part[sums + (b * u.NC + kc) * u.Dc + d]) * h + part[e];
  }
  if (HAS_OUT) { stateOut[i] = h; }
}`,
    }),
    [hin, bufs.ckpt, bufs.stateOut, part, bufs.stateIn, bufs.params],
    vals,
    grid1d(B * Dc * N, 64),
  );

  // 3. each chunk from its carry: outputs, skip, gate, checkpoints
  launch(
    ctx,
    `${tag}:fwdch3:${k}`,
    () => ({
      label: `${tag}:fwdch3`,
      uniforms: uni,
      bindings: [
        ["out", "write", "array<f32>"], ["ckpt", "write", "array<f32>"], ["hin", "read", "array<f32>"], ["uu", "read", "array<f32>"], ["dt", "read", "array<f32>"],
        ["Bm", "read", bc], ["Cm", "read", bc], ["z", "read", "array<f32>"], ["params", "read", "array<f32>"],
      ],
      body: `${body}
@compute @workgroup_size(${WD})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  ${OWN(WD)}
  let ds = dskipOf(d);
  let e = ((b * u.NC + kc) * u.Dc + d) * u.N;
  var h: array<vec4<f32>, NQ>;
  for (var q = 0u; q < NQ; q++) {
    for (var j = 0u; j < 4u; j++) { if (q * 4u + j < u.N) { h[q][j] = hin[e + q * 4u + j]; } }
  }
  for (var t = t0; t < t1; t++) {
    ${step}
    var y = ds * x;
    let ck = HAS_CKPT && (t + 1u) % u.chunk == 0u && t + 1u < u.T;
    let cb = ((b * u.K + (t + 1u) / u.chunk) * u.Dc + d) * u.N;
    for (var q = 0u; q < NQ; q++) {
      h[q] = exp2(dl * a[q]) * h[q] + du * bc4(0u, row, q);
      y += dot(bc4(1u, row, q), h[q]);
      if (ck) { for (var j = 0u; j < 4u; j++) { if (q * 4u + j < u.N) { ckpt[cb + q * 4u + j] = h[q][j]; } } }
    }
    let o = chanIdx(b, t, d);
    if (HAS_Z) { y = y * silu_(z[o]); }
    out[o] = y;
  }
}`,
    }),
    [bufs.out, bufs.ckpt, hin, bufs.u, bufs.dt, bufs.Bm, bufs.Cm, bufs.z, bufs.params],
    vals,
    [G * bps, NC, B],
  );
  temps.release();
}
