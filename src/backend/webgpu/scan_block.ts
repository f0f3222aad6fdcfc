/**
 * The forward of both Mamba scans (scan_core.ts states the recurrence) with many threads per
 * channel along time: the shape of mamba_ssm's selective_scan_fwd_kernel (state-spaces/mamba,
 * csrc/selective_scan), where a thread block of kNThreads owns one channel, each thread holds
 * kNItems consecutive steps in registers, and a block scan of (decay, input) pairs with a
 * running prefix carries the state from one chunk of kNThreads * kNItems steps to the next.
 *
 * Why: scan_forward.ts gives a channel one subgroup of lanes, so B = 1, D = 1536 keeps only
 * D * 32 threads busy (about 12 warps an SM on an H100/H200) and every step of a lane waits on
 * shuffles and barriers with nothing else to hide them. Here a workgroup is W groups along time
 * of DB channels x L lanes, so a channel has W * L threads (64 by default: ~23 warps an SM at
 * B = 1, D = 1536 on 132 SMs) and the tile is TT = W * L * I steps.
 *
 * Per tile and four states (vec4) at a time, a thread
 *   1. runs the recurrence over its I steps from zero (the kernel's only exp2 per decay),
 *      keeping each step's partial state and decay product in registers,
 *   2. scans (product, partial) over the L lanes of its group with subgroup shuffles,
 *   3. publishes its group's total (lane L - 1) in workgroup memory; after one barrier every
 *      thread folds the totals of the groups before it into the tile's carry,
 *   4. finishes its states from the entering state and adds C . h to its outputs.
 * The last thread of the last group advances the carry for the next tile. Group totals and the
 * carry are double-buffered (by step and by tile parity), so each (tile, state quad) costs one
 * barrier.
 *
 * Latency, not bandwidth, bounded the first version of this kernel (B and C read from global
 * memory inside each quad's step, inputs loaded at the top of each tile: 6.2 ms at T = 64k, about
 * one (t, d, n) an SM per clock). So, as mamba_ssm loads a chunk before scanning it, a tile's B
 * and C rows are staged in workgroup memory (TT * N * 8 bytes: 32 KiB at the default TT = 256, N = 16), and
 * each tile issues the loads of the next tile's dt, u, z and B/C rows into registers before it
 * computes, so their latency overlaps the tile's work. The fold over earlier groups is unrolled
 * so its workgroup-memory loads issue together rather than one per link of the chain.
 *
 * Lanes of a group are consecutive invocations inside one subgroup (L divides the subgroup
 * size), as scan_forward.ts assumes.
 */
import { SeqlabError } from "../../util/errors.js";
import type { GpuContext } from "./context.js";
import { launchScanForwardKernel, type ScanForwardBuffers, type ScanLimits } from "./scan_forward.js";

/** Tile shape: lanes per channel group, steps per lane, channels, groups along time. */
export interface ScanBlockPlan {
  kind: "block";
  L: number;
  I: number;
  DB: number;
  W: number;
  /** state quads per barrier when N <= 16 (default 1) */
  Q?: number;
}

export function scanBlockBytes(p: ScanBlockPlan, N: number): number {
  const NQ = Math.ceil(N / 4);
  const TT = p.W * p.L * p.I;
  return (2 * 2 * (p.Q ?? 1) * p.W * p.DB + 2 * NQ * p.DB + 2 * (TT * NQ + p.W * p.L)) * 16;
}

export function scanBlockName(p: ScanBlockPlan): string {
  return `block L${p.L} I${p.I} DB${p.DB} W${p.W} Q${p.Q ?? 1}`;
}

/**
 * The default: groups of 8 lanes x 4 channels (a 32-lane subgroup), 8 groups, 4 steps a lane,
 * two state quads per barrier: the fastest of the tiles timed on an H200 at T = 4k and 64k
 * (B = 1, D = 1536, N = 16; bench/notes/gpu-tuning.md). ScanCore.planFor takes 2 steps a lane
 * and one quad for shorter sequences, where the smaller tile was faster.
 */
export function chooseScanBlock(N: number, lim: ScanLimits, want: Partial<ScanBlockPlan> = {}): ScanBlockPlan {
  const p = fitScanBlock(N, lim, want);
  if (!p) throw new SeqlabError(`webgpu: no block scan tile fits this device (state size ${N})`);
  return p;
}

/** The default shrunk (fewer groups) to the device's workgroup limits; null when none fits. */
export function fitScanBlock(N: number, lim: ScanLimits, want: Partial<ScanBlockPlan> = {}): ScanBlockPlan | null {
  const L = want.L ?? (lim.subgroupMinSize >= 2 ? Math.min(8, lim.subgroupMinSize) : 1);
  if (L > 1 && L > lim.subgroupMinSize) throw new SeqlabError(`webgpu: block scan with ${L} lanes per group needs subgroups of at least ${L} lanes`);
  const DB = want.DB ?? Math.max(1, Math.floor(32 / L));
  const I = want.I ?? 4;
  let W = want.W ?? 8;
  const Q = want.Q ?? 2;
  const fits = () => L * DB * W <= lim.invocations && scanBlockBytes({ kind: "block", L, I, DB, W, Q }, N) <= lim.bytes;
  while (!fits() && W > 1) W >>= 1;
  return fits() ? { kind: "block", L, I, DB, W, Q } : null;
}

const items = (n: number) => [...Array(n).keys()];

/**
 * WGSL of the block forward (after scan_core.ts's `common`): uniforms B T Dc N chunk K R G bps
 * offD offBias dtMin dtMax; bindings out ckpt stateOut uu dt Bm Cm z stateIn params.
 */
export function scanBlockWgsl(p: ScanBlockPlan, N: number, vecBC: boolean): string {
  const { L, I, DB, W } = p;
  const NQ = Math.ceil(N / 4);
  const TT = W * L * I;
  const GS = DB * L;
  const offs: number[] = [];
  for (let o = 1; o < L; o *= 2) offs.push(o);
  const perItem = (f: (i: number) => string) => items(I).map(f).join("\n      ");
  const WG = W * GS;
  // vec4s of B/C a thread loads per tile
  const PF = Math.ceil((2 * TT * NQ) / WG);
  // raw dt, u, z of this thread's steps of tile \`tl\`, and its share of that tile's B/C rows
  const load = (tl: string) => `{
    let tn = (${tl}) * ${TT}u + rl * ${I}u;
    ${perItem(
      (i) => `if (vd && tn + ${i}u < u.T) {
      let o = chanIdx(b, tn + ${i}u, d);
      nd${i} = dt[dtIdx(b, tn + ${i}u, d)];
      nx${i} = uu[o];
      if (HAS_Z) { nz${i} = z[o]; }
    }`,
    )}
    ${items(PF)
      .map(
        (k) => `{
      let e = lid + ${k * WG}u;
      if (e < ${2 * TT * NQ}u) {
        let rem = e % ${TT * NQ}u;
        pf${k} = bc4(e / ${TT * NQ}u, b, (${tl}) * ${TT}u + rem / NQ, g, rem % NQ);
      }
    }`,
      )
      .join("\n    ")}
  }`;
  // A * log2(e) held in registers across tiles when few quads, else reloaded per quad
  const hoist = NQ <= 4;
  // quads sharing one barrier: their chains interleave (the kernel is latency-bound); the quad
  // loop of large N (not hoisted) takes one at a time
  const QB = hoist ? Math.min(p.Q ?? 1, NQ) : 1;
  const NG = Math.ceil(NQ / QB);
  // group totals of quad slot k: [step parity][slot][P | S][group][channel]
  const tot = (k: number, ps: number, v: string) => `sTot[(((slot * ${QB}u + ${k}u) * 2u + ${ps}u) * ${W}u + ${v}) * ${DB}u + c]`;
  const scan = (x: string) =>
    offs
      .map(
        (o) => `{
          let pP = subgroupShuffleUp(Pi${x}, ${o}u);
          let pS = subgroupShuffleUp(Si${x}, ${o}u);
          if (lane >= ${o}u) { Si${x} = Pi${x} * pS + Si${x}; Pi${x} = Pi${x} * pP; }
        }`,
      )
      .join("\n        ");
  const exclusive = (x: string) =>
    L > 1
      ? `var Pe${x} = subgroupShuffleUp(Pi${x}, 1u);
        var Se${x} = subgroupShuffleUp(Si${x}, 1u);
        if (lane == 0u) { Pe${x} = vec4<f32>(1.0); Se${x} = vec4<f32>(0.0); }`
      : `let Pe${x} = vec4<f32>(1.0);
        let Se${x} = vec4<f32>(0.0);`;
  // steps 1-2 of quad q (variables suffixed x), group totals into slot k
  const quadA = (q: string, a: string, x: string, k: number) => `// quad ${q}: 1. this thread's steps from a zero state
        let a${x}_ = ${a};
        var P${x} = vec4<f32>(1.0);
        var S${x} = vec4<f32>(0.0);
        ${perItem(
          (i) => `let dec${x}_${i} = exp2(dl${i} * a${x}_);
        P${x} = P${x} * dec${x}_${i};
        S${x} = dec${x}_${i} * S${x} + du${i} * sB[row + ${i * NQ}u + ${q}];
        let pc${x}_${i} = P${x};
        let hl${x}_${i} = S${x};`,
        )}
        // 2. inclusive scan over the group's lanes; the group's total for the other groups
        var Pi${x} = P${x};
        var Si${x} = S${x};
        ${scan(x)}
        if (lane == ${L - 1}u) {
          ${tot(k, 0, "w")} = Pi${x};
          ${tot(k, 1, "w")} = Si${x};
        }`;
  // steps 3-4: the state entering this group (the carry through the groups before it), the outputs
  const quadB = (q: string, x: string, k: number) => `{
        var hg = sCarry[(par * NQ + ${q}) * ${DB}u + c];
        ${items(W - 1)
          .map((v) => `hg = select(hg, ${tot(k, 0, `${v}u`)} * hg + ${tot(k, 1, `${v}u`)}, ${v}u < w);`)
          .join("\n        ")}
        ${exclusive(x)}
        let hin = Pe${x} * hg + Se${x};
        if (w == ${W - 1}u && lane == ${L - 1}u) { sCarry[((1u - par) * NQ + ${q}) * ${DB}u + c] = Pi${x} * hg + Si${x}; }
        ${perItem(
          (i) => `{
          let h = pc${x}_${i} * hin + hl${x}_${i};
          y${i} += dot(sC[row + ${i * NQ}u + ${q}], h);
          if (HAS_CKPT && kc${i} != 0u) { writeCkpt4(((b * u.K + kc${i}) * u.Dc + d) * u.N, h, ${q}); }
        }`,
        )}
      }`;
  const group = (qs: number[], gi: string) => `{
        let slot = (tile * ${NG}u + ${gi}) & 1u;
        ${qs.map((q, k) => quadA(`${q}u`, `a${q}`, `${q}`, k)).join("\n        ")}
        workgroupBarrier();
        ${qs.map((q, k) => quadB(`${q}u`, `${q}`, k)).join("\n        ")}
      }`;
  const quads = hoist
    ? items(NG).map((gi) => group(items(NQ).slice(gi * QB, (gi + 1) * QB), `${gi}u`)).join("\n      ")
    : `for (var q = 0u; q < NQ; q++) {
        let slot = (tile * NQ + q) & 1u;
        ${quadA("q", "a4(d, q, vd)", "", 0)}
        workgroupBarrier();
        ${quadB("q", "", 0)}
      }`;
  // B (which = 0) or C (1) of row (b, t), states 4 q .. 4 q + 3; zero past T or N
  const bc4 = vecBC
    ? `fn bc4(which: u32, b: u32, t: u32, g: u32, q: u32) -> vec4<f32> {
  if (t >= u.T) { return vec4<f32>(0.0); }
  let o = (((b * u.T + t) * u.G + g) * u.N) / 4u + q;
  if (which == 0u) { return Bm[o]; }
  return Cm[o];
}`
    : `fn bc4(which: u32, b: u32, t: u32, g: u32, q: u32) -> vec4<f32> {
  var r = vec4<f32>(0.0);
  if (t >= u.T) { return r; }
  let o = ((b * u.T + t) * u.G + g) * u.N;
  for (var k = 0u; k < 4u; k++) {
    let n = q * 4u + k;
    if (n < u.N) { if (which == 0u) { r[k] = Bm[o + n]; } else { r[k] = Cm[o + n]; } }
  }
  return r;
}`;
  return /* wgsl */ `
const NQ: u32 = ${NQ}u;
// group totals (P, S): [step parity][quad of the step][P | S][group][channel]
var<workgroup> sTot: array<vec4<f32>, ${4 * QB * W * DB}>;
// the state entering the tile: [tile parity][state quad][channel]
var<workgroup> sCarry: array<vec4<f32>, ${2 * NQ * DB}>;
// the tile's B and C rows: [row][state quad], one vec4 of padding after each thread's I rows
var<workgroup> sB: array<vec4<f32>, ${TT * NQ + W * L}>;
var<workgroup> sC: array<vec4<f32>, ${TT * NQ + W * L}>;

${bc4}

// A of channel d for states 4 n4 .. 4 n4 + 3, times log2(e) (padding states: 0, a decay of 1)
fn a4(d: u32, n4: u32, vd: bool) -> vec4<f32> {
  var r = vec4<f32>(0.0);
  if (vd) {
    for (var k = 0u; k < 4u; k++) {
      let n = n4 * 4u + k;
      if (n < u.N) { r[k] = aOf(d, n) * LOG2E; }
    }
  }
  return r;
}
fn writeCkpt4(base: u32, v: vec4<f32>, n4: u32) {
  for (var k = 0u; k < 4u; k++) { if (n4 * 4u + k < u.N) { ckpt[base + n4 * 4u + k] = v[k]; } }
}

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let lane = lid % ${L}u;
  let c = (lid / ${L}u) % ${DB}u;
  let w = lid / ${GS}u;
  let blk = wid.x;
  let b = wid.y;
  let seg = u.Dc / u.G;
  let g = blk / u.bps;
  let dLocal = (blk % u.bps) * ${DB}u + c;
  let d = g * seg + dLocal;
  let vd = dLocal < seg;
  let ds = select(0.0, dskipOf(d), vd);
  ${hoist ? items(NQ).map((q) => `let a${q} = a4(d, ${q}u, vd);`).join("\n  ") : ""}

  // the carry starts at the initial state (zeros without one); it is the first checkpoint
  if (w == 0u) {
    for (var q = lane; q < NQ; q += ${L}u) {
      var h = vec4<f32>(0.0);
      if (HAS_IN && vd) {
        for (var k = 0u; k < 4u; k++) {
          if (q * 4u + k < u.N) { h[k] = stateIn[(b * u.Dc + d) * u.N + q * 4u + k]; }
        }
      }
      sCarry[q * ${DB}u + c] = h;
      if (HAS_CKPT && vd) { writeCkpt4(((b * u.K) * u.Dc + d) * u.N, h, q); }
    }
  }

  let ntiles = (u.T + ${TT - 1}u) / ${TT}u;
  let rl = w * ${L}u + lane;
  // this thread's rows of the staged B/C tile (padded one vec4 per thread against bank conflicts)
  let row = rl * ${I * NQ + 1}u;
  // the first tile's inputs; then each tile loads the next one's before computing its own
  ${perItem((i) => `var nd${i} = 0.0; var nx${i} = 0.0; var nz${i} = 0.0;`)}
  ${items(PF).map((k) => `var pf${k} = vec4<f32>(0.0);`).join("\n  ")}
  ${load("0u")}
  for (var tile = 0u; tile < ntiles; tile++) {
    let par = tile & 1u;
    let t0 = tile * ${TT}u + rl * ${I}u;
    // per step: the step size, step * u, the output so far (skip term), the gate input, the checkpoint it ends
    ${perItem((i) => `var dl${i} = 0.0; var du${i} = 0.0; var y${i} = 0.0; let zc${i} = nz${i}; var kc${i} = 0u;`)}
    ${perItem(
      (i) => `if (vd && t0 + ${i}u < u.T) {
        let t = t0 + ${i}u;
        dl${i} = stepOf(nd${i} + biasOf(d));
        du${i} = dl${i} * nx${i};
        y${i} = ds * nx${i};
        if (HAS_CKPT && (t + 1u) % u.chunk == 0u && t + 1u < u.T) { kc${i} = (t + 1u) / u.chunk; }
      }`,
    )}
    // the previous tile's reads of sB/sC are done: stage this tile's rows
    workgroupBarrier();
    ${items(PF)
      .map(
        (k) => `{
      let e = lid + ${k * WG}u;
      if (e < ${2 * TT * NQ}u) {
        let r = (e % ${TT * NQ}u) / NQ;
        let o = (e % ${TT * NQ}u) + r / ${I}u;
        if (e < ${TT * NQ}u) { sB[o] = pf${k}; } else { sC[o] = pf${k}; }
      }
    }`,
      )
      .join("\n    ")}
    ${load("tile + 1u")}
    workgroupBarrier();
    ${quads}
    ${perItem(
      (i) => `if (vd && t0 + ${i}u < u.T) {
        let o = chanIdx(b, t0 + ${i}u, d);
        var v = y${i};
        if (HAS_Z) { v = v * silu_(zc${i}); }
        out[o] = v;
      }`,
    )}
  }
  if (HAS_OUT) {
    workgroupBarrier();
    let par = ntiles & 1u;
    if (w == 0u && vd) {
      for (var q = lane; q < NQ; q += ${L}u) {
        let h = sCarry[(par * NQ + q) * ${DB}u + c];
        for (var k = 0u; k < 4u; k++) { if (q * 4u + k < u.N) { stateOut[(b * u.Dc + d) * u.N + q * 4u + k] = h[k]; } }
      }
    }
  }
}
`;
}

/** Record the block forward: `decl` is scan_core.ts's shared WGSL for this shape and flags. */
export function dispatchScanBlock(
  ctx: GpuContext,
  plan: ScanBlockPlan,
  key: string,
  tag: string,
  decl: string,
  shape: { B: number; N: number; nblk: number },
  bufs: ScanForwardBuffers,
  uniforms: [string, "u32" | "f32"][],
  uniformValues: number[],
): void {
  const cacheKey = `${tag}:fwdblk:${key}:${plan.L}:${plan.I}:${plan.DB}:${plan.W}:${plan.Q ?? 1}`;
  launchScanForwardKernel(ctx, cacheKey, `${tag}:fwdblk`, plan.L > 1, (vecBC) => `${decl}${scanBlockWgsl(plan, shape.N, vecBC)}`, shape, bufs, uniforms, uniformValues);
}
