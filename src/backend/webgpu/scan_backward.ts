/**
 * The backward of the chunk-parallel linear scan (scan_core.ts: Mamba's selective scan and
 * Mamba-2's SSD), parallel across T in chunks of `chunk` steps, from the forward's checkpoints.
 * The adjoint g_{t-1} = a_t (g_t + dy_t C_t) is linear, so (1) its chunk partials and (2) reverse
 * carries over chunks come first; then (3) every chunk in parallel recomputes its states from its
 * checkpoint and runs the adjoint back through them, BLK steps at a time held in registers. A
 * pass (0) first computes what depends on (b, t, d) alone. Passes 1 and 3 give each thread a
 * quad of 4 states of one channel (vec4s); sums over the states n (du, dstep, y) are 3 adds in a
 * thread and subgroup butterflies across the channel's lanes (kit.ts segmentSumLanes); sums over
 * the channels of a block (dB, dC) are collected for FLUSH steps and summed in workgroup memory;
 * sums over blocks, chunks and batch are ordered loops in small follow-up kernels, so the
 * results are deterministic. The walks are latency-bound: each thread indexes by stride from
 * row offsets it computes once, and issues the loads of several steps before the chain of
 * updates that uses them (bench/notes/gpu-tuning.md, "Selective scan backward: from 55 to
 * 118-191 GB/s" and "Selective scan backward: a quad of states a thread").
 */
import type { GpuContext } from "./context.js";
import { grid1d } from "./context.js";
import { LINEAR_INDEX } from "./wgsl.js";
import { columnSum } from "./elementwise.js";
import { launch, pow2, segmentLanes, segmentSumLanes, Temps, type S } from "./kit.js";
import { SeqlabError } from "../../util/errors.js";
import { SCAN_UNIFORMS, SCAN_WG as WG, scanCommon, scanParams, scanUniformValues, type ScanInputs, type ScanShape } from "./scan_core.js";

/**
 * steps recomputed at a time by the backward pass: the checkpoint interval
 * (SCAN_CHECKPOINT_EVERY), so that each state is recomputed once; 32 recomputed half of the chunk
 * twice and was 7% slower at T = 64k (H200), 16 slower still
 */
const SUB = 64;
/**
 * steps whose (dB, dC) terms the backward collects in workgroup memory before summing them over
 * the block's channels: two barriers every BC_FLUSH steps instead of 2 + log2(DB) every step
 */
const BC_FLUSH = 4;
/** steps a loop iteration in the adjoint partials (pass 1) */
const UNROLL = 4;
/**
 * steps of the chunk re-run (pass 3) whose states are held in registers at a time: the states at
 * each block's start are kept (in local memory, one write and one read a block) while walking
 * forward, then each block is re-run from its start right before the adjoint goes back through
 * it. A local array of every state of the interval (65 vec4s a thread, a write and two reads of
 * local memory a step, more than L1 holds at this residency) was 8% slower at T = 64k on an H100
 * (8.96 against 8.32 ms). Blocks of 8 steps took SwiftShader's compiler minutes.
 */
const BLK = 4;
/**
 * threads of a workgroup of the chunk re-run (pass 3): with 4 states a thread, its FLUSH steps of
 * (dB, dC) terms take FLUSH x 32 bytes a thread of workgroup memory, 16 KiB at 128
 */
const WG3 = 128;
const unrolled = (step: (j: number) => string, count = UNROLL) => Array.from({ length: count }, (_, j) => step(j)).join("\n    ");

/**
 * Each thread of the walks holds a quad: 4 consecutive states n0 .. n0 + 3 of one channel, as
 * vec4s, so that what depends on (t, d) alone (the step, u, dy, the gate) is loaded once for 4
 * states and sums over n are 3 adds in a thread plus log2(QL) shuffles across its channel's QL
 * lanes. (A thread per state spent about 85 instructions an update, 12 of them shuffles; notes:
 * bench/notes/gpu-tuning.md, "The backward's decays".) States are padded to NQ = max(4, pow2(N)).
 */
function quadGeometry(N: number): { NQ: number; QL: number } {
  const NQ = Math.max(4, pow2(N));
  return { NQ, QL: NQ / 4 };
}

/**
 * WGSL: the quad loads. bAt / cAt read B or C at `base + n0 .. + 3` (zero past N or for an
 * absent channel), aQuad the decay rates of a quad.
 */
function quadWgsl(N: number, loads: [name: string, arr: string][]): string {
  // branch-free: clamped loads and a select (SwiftShader's compiler took minutes over the chunk
  // re-run when these were branches feeding the register-held states)
  const quadLoad = (name: string, arr: string) => /* wgsl */ `
fn ${name}(base: u32, n0: u32, ok: bool) -> vec4<f32> {
  let k = vec4<u32>(n0, n0 + 1u, n0 + 2u, n0 + 3u);
  let i = min(base + k, vec4<u32>(arrayLength(&${arr}) - 1u));
  let v = vec4<f32>(${arr}[i.x], ${arr}[i.y], ${arr}[i.z], ${arr}[i.w]);
  return select(vec4<f32>(0.0), v, (k < vec4<u32>(u.N)) & vec4<bool>(ok));
}`;
  return /* wgsl */ `
const QL: u32 = ${quadGeometry(N).QL}u;
const NQ: u32 = ${quadGeometry(N).NQ}u;
fn quadOk(n0: u32, ok: bool) -> vec4<bool> {
  return vec4<bool>(ok && n0 < u.N, ok && n0 + 1u < u.N, ok && n0 + 2u < u.N, ok && n0 + 3u < u.N);
}
fn aQuad(d: u32, n0: u32, ok: vec4<bool>) -> vec4<f32> {
  var r = vec4<f32>(0.0);
  if (ok.x) { r.x = aOf(d, n0); }
  if (ok.y) { r.y = aOf(d, n0 + 1u); }
  if (ok.z) { r.z = aOf(d, n0 + 2u); }
  if (ok.w) { r.w = aOf(d, n0 + 3u); }
  return r;
}
${loads.map(([name, arr]) => quadLoad(name, arr)).join("\n")}
`;
}

/**
 * WGSL: a quad of per-state values from or to an (..., N) buffer at element e0 (its state n0);
 * reads are clamped into the buffer (an absent channel's e0 may lie past it) and masked by ok.
 */
const quadRead = (arr: string, e0: string, ok: string) =>
  `select(vec4<f32>(0.0), vec4<f32>(${[0, 1, 2, 3].map((k) => `${arr}[min(${e0} + ${k}u, arrayLength(&${arr}) - 1u)]`).join(", ")}), ${ok})`;
const quadWrite = (arr: string, e0: string, ok: string, v: string) =>
  ["x", "y", "z", "w"].map((c, k) => `if (${ok}.${c}) { ${arr}[${e0}${k ? ` + ${k}u` : ""}] = ${v}.${c}; }`).join(" ");

/**
 * WGSL: the steps tb .. tb + BLK - 1 of a block re-run from its first state hr0 into registers
 * hr1 .. hrBLK (constant indices, so no local memory); in_j says whether step tb + j is in the
 * interval (t < te): those past it load zeros, so they leave the state as it is.
 */
function blockStates(): string {
  const steps = Array.from({ length: BLK }, (_, j) => j);
  return `${steps.map((j) => `let in${j} = vd && tb + ${j}u < te;
      let f${j} = chanAt(rows, tb + ${j}u, in${j});
      let fb${j} = bAt(rows.bc + (tb + ${j}u) * rows.sBC, n0, in${j});`).join("\n      ")}
      ${steps.map((j) => `let hr${j + 1} = exp2(f${j}.x * a2) * hr${j} + (f${j}.x * f${j}.y) * fb${j};`).join("\n      ")}`;
}

/**
 * WGSL: the adjoint back through steps tb + g FLUSH + FLUSH - 1 down to tb + g FLUSH (gs = dL/dh
 * after the step): the group's loads first, then its chain of updates, their gradients, and
 * their (dB, dC) terms into workgroup slots 0 .. FLUSH - 1 (slot s: step tb + g FLUSH + FLUSH - 1 - s).
 * Steps past the interval (!in_j, from blockStates) load zeros, which leave gs and every sum as
 * they are; only their stores are skipped.
 */
function reverseGroup(g: number, flush: number): string {
  const ks = Array.from({ length: flush }, (_, i) => flush - 1 - i);
  const loads = ks.map((k) => {
    const j = g * flush + k;
    return `let tt${j} = tb + ${j}u;
      let q${j} = f${j};
      let bq${j} = fb${j};
      let cq${j} = cAt(rows.bc + tt${j} * rows.sBC, n0, in${j});
      let i${j} = rows.c + tt${j} * u.Dc;
      var dy${j} = 0.0;
      var dzz${j} = 0.0;
      if (in${j}) { dy${j} = dyg[i${j}]; if (HAS_Z) { dzz${j} = pre[offZ + i${j}]; } }`;
  });
  const steps = ks.map((k) => {
    const j = g * flush + k;
    return `{
      let delta = q${j}.x;
      let x = q${j}.y;
      let decay = exp2(delta * a2);
      var y = 0.0;
      if (HAS_Z) { y = lsum(dot(cq${j}, hr${j + 1}), lid) + ds * x; }
      gs = gs + dy${j} * cq${j};
      let hd = hr${j} * decay;
      let r = lsum2(vec2<f32>(dot(gs, hd * a + bq${j} * x), dot(gs, bq${j}) * delta), lid);
      dAacc += gs * hd * delta;
      let termB = gs * (delta * x);
      let termC = dy${j} * hr${j + 1};
      let o = (${flush - 1 - k}u * QDB + dl) * NQ + n0;
      xbc[o] = vec2<f32>(termB.x, termC.x);
      xbc[o + 1u] = vec2<f32>(termB.y, termC.y);
      xbc[o + 2u] = vec2<f32>(termB.z, termC.z);
      xbc[o + 3u] = vec2<f32>(termB.w, termC.w);
      if (in${j} && qd == 0u) {
        du[i${j}] = r.y + ds * dy${j};
        grads[i${j}] = r.x;
        if (HAS_Z) { dz[i${j}] = dzz${j} * y; }
        dDacc += dy${j} * x;
      }
      gs = gs * decay;
    }`;
  });
  return `${loads.join("\n      ")}
      ${steps.join("\n      ")}
      workgroupBarrier();
      flushBC(tb + ${g * flush + flush - 1}u, te, blk, b, lid);
      workgroupBarrier();`;
}

/** The channel block a pass-3 workgroup owns: blocks never cross a B/C group. */
const BLOCK = /* wgsl */ `
  let blk = wid.x;
  let kc = wid.y;
  let b = wid.z;
  let seg = u.Dc / u.G;
  let dl = lid / QL;
  let qd = lid % QL;
  let n0 = 4u * qd;
  let dLocal = (blk % u.bps) * QDB + dl;
  let d = (blk / u.bps) * seg + dLocal;
  let vd = dLocal < seg;
  let ok = quadOk(n0, vd);
  let t0 = kc * u.chunk;
  let t1 = min(u.T, t0 + u.chunk);
  let e0 = ((b * u.K + kc) * u.Dc + d) * u.N + n0;
`;

/** Decode a thread per (b, chunk, d, quad). */
const ELEMENT = /* wgsl */ `
  let e = linearIndex(gid, nwg);
  if (e >= u.B * u.K * u.Dc * QL) { return; }
  let qd = e % QL;
  let n0 = 4u * qd;
  let d = (e / QL) % u.Dc;
  let kc = (e / (QL * u.Dc)) % u.K;
  let b = e / (QL * u.Dc * u.K);
  let t0 = kc * u.chunk;
  let t1 = min(u.T, t0 + u.chunk);
  let ok = quadOk(n0, true);
  let a2 = aQuad(d, n0, ok) * LOG2E;
  let e0 = ((b * u.K + kc) * u.Dc + d) * u.N + n0;
`;

/**
 * Pass 3's blocks: QL lanes a channel (a quad of states each), QDB = WG3 / QL channels a
 * workgroup, `bps` blocks per B/C group of Dc / G channels (blocks never cross a group).
 */
function backwardGeometry(s: ScanShape) {
  if (s.N > WG) throw new SeqlabError(`webgpu: scan state size ${s.N} exceeds ${WG}`);
  const K = Math.ceil(s.T / s.chunk);
  const { QL } = quadGeometry(s.N);
  const QDB = WG3 / QL;
  const bps = Math.ceil(s.Dc / s.G / QDB);
  return { K, QL, QDB, bps, nblk: s.G * bps };
}

/** Steps of (dB, dC) terms pass 3 collects before summing them: BC_FLUSH, or fewer where workgroup memory is short. */
function bcFlush(ctx: GpuContext): number {
  // the reductions over a channel's lanes may need WG3 x 8 bytes each besides the terms
  const room = ctx.limits.maxComputeWorkgroupStorageSize - 2 * WG3 * 8;
  let flush = BC_FLUSH;
  while (flush > 1 && flush * WG3 * 32 > room) flush /= 2;
  return flush;
}

/** Gradients of every input of the scan (and of the initial state) from dL/d(out). */
export function scanBackward(
  ctx: GpuContext,
  g: { du: S; ddt: S; dA: S; dB: S; dC: S; dDskip: S | null; dz: S | null; ddtBias: S | null; dstateIn: S | null },
  dout: S,
  x: ScanInputs,
  checkpoints: S,
  s: ScanShape,
  tag: string,
): void {
  const { K, bps, nblk, QL, QDB } = backwardGeometry(s);
  const temps = new Temps(ctx);
  const p = scanParams(ctx, temps, s, x);
  const uni = scanUniformValues(s, K, bps, p.offD, p.offBias);
  const { B, T, Dc, N } = s;
  const BKDN = B * K * Dc * N;
  const BTD = B * T * Dc;
  const c = scanCommon(s, { HAS_D: !!x.Dskip, HAS_Z: !!x.z, HAS_BIAS: !!x.dtBias, HAS_OUT: !!g.dstateIn });
  // decays as the forward computes them (the hardware exp2 of step * A log2 e), so that the states
  // recomputed from a checkpoint follow the forward's to rounding; wgsl.ts's software exp_ cost
  // about 30 instructions a decay (bench/notes/gpu-tuning.md, "The backward's decays")
  const decl = `${c.wgsl}const SUB: u32 = ${SUB}u;
${LINEAR_INDEX(WG)}`;
  const work = temps.get(2 * BKDN);
  const gEnd = temps.get(BKDN);
  // grads: ddelta (B, T, Dc), dA partials (B*K, Dc*N), Dskip partials (B*K, Dc), dB/dC partials (nblk, B, T, N, 2)
  const offA = BTD;
  const offDs = offA + B * K * Dc * N;
  const offBC = offDs + B * K * Dc;
  const grads = temps.get(offBC + nblk * B * T * N * 2);

  // 0. what depends on (b, t, d) alone, once rather than once per state in each walk below:
  // the steps, the gated output gradient dy = dout silu(z), and dout silu'(z) for dz; the steps
  // and dout silu'(z) share one buffer (pre: steps, then from offZ = B T Dc / R the BTD factors),
  // which keeps the chunk re-run within 11 bindings with du and dz written in place
  const pre = temps.get(B * T * (Dc / s.R) + (x.z ? BTD : 0));
  const dyg = x.z ? temps.get(BTD) : dout;
  launch(
    ctx,
    `${tag}:bwd0:${c.key}`,
    () => ({
      label: `${tag}:bwd0`,
      uniforms: SCAN_UNIFORMS,
      bindings: [["pre", "write", "array<f32>"], ["dyg", "write", "array<f32>"], ["dout", "read", "array<f32>"], ["dt", "read", "array<f32>"], ["z", "read", "array<f32>"], ["params", "read", "array<f32>"]],
      body: `${decl}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = linearIndex(gid, nwg);
  if (i >= u.B * u.T * u.Dc) { return; }
  let d = i % u.Dc;
  let bt = i / u.Dc;
  if (d % u.R == 0u) { pre[bt * (u.Dc / u.R) + d / u.R] = stepOf(dt[bt * (u.Dc / u.R) + d / u.R] + biasOf(d)); }
  if (HAS_Z) {
    let zz = z[i];
    dyg[i] = dout[i] * silu_(zz);
    pre[u.B * u.T * (u.Dc / u.R) + i] = dout[i] * siluGrad_(zz);
  }
}`,
    }),
    [pre, x.z ? dyg : temps.get(4), dout, x.dt, temps.or(x.z), p.buf],
    uni,
    grid1d(BTD, WG),
  );

  // 1. the adjoint's chunk partials from zero at each chunk's end, and the decay products
  const quads = (loads: [string, string][]) => quadWgsl(N, loads);
  launch(
    ctx,
    `${tag}:bwd1:${c.key}`,
    () => ({
      label: `${tag}:bwd1`,
      uniforms: SCAN_UNIFORMS,
      bindings: [["work", "write", "array<f32>"], ["dyg", "read", "array<f32>"], ["pre", "read", "array<f32>"], ["Cm", "read", "array<f32>"], ["params", "read", "array<f32>"]],
      body: `${decl}${quads([["cAt", "Cm"]])}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  ${ELEMENT}
  let rows = rowsOf(b, d);
  var gs = vec4<f32>(0.0);
  var prod = vec4<f32>(1.0);
  // UNROLL steps a loop iteration, their loads issued before the chain of updates uses them
  var t = t1;
  for (; t >= t0 + ${UNROLL}u; t -= ${UNROLL}u) {
    ${unrolled((j) => `let s${j} = pre[rows.s + (t - ${j + 1}u) * rows.sS];
    let g${j} = dyg[rows.c + (t - ${j + 1}u) * u.Dc] * cAt(rows.bc + (t - ${j + 1}u) * rows.sBC, n0, true);`)}
    ${unrolled((j) => `let decay${j} = exp2(s${j} * a2);
    gs = decay${j} * (gs + g${j});
    prod = prod * decay${j};`)}
  }
  for (; t > t0; t--) {
    let tt = t - 1u;
    let decay = exp2(pre[rows.s + tt * rows.sS] * a2);
    gs = decay * (gs + dyg[rows.c + tt * u.Dc] * cAt(rows.bc + tt * rows.sBC, n0, true));
    prod = prod * decay;
  }
  ${quadWrite("work", "e0", "ok", "gs")}
  ${quadWrite("work", "u.B * u.K * u.Dc * u.N + e0", "ok", "prod")}
}`,
    }),
    [work, dyg, pre, x.Cmat, p.buf],
    uni,
    grid1d(B * K * Dc * QL, WG),
  );

  // 2. reverse carries of the adjoint: dL/dh at each chunk's end, and at the initial state
  launch(
    ctx,
    `${tag}:bwd2:${c.key}`,
    () => ({
      label: `${tag}:bwd2`,
      uniforms: SCAN_UNIFORMS,
      bindings: [["gEnd", "write", "array<f32>"], ["dstate", "write", "array<f32>"], ["work", "read", "array<f32>"], ["params", "read", "array<f32>"]],
      body: `${decl}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = linearIndex(gid, nwg);
  if (i >= u.B * u.Dc * u.N) { return; }
  let b = i / (u.Dc * u.N);
  let dn = i % (u.Dc * u.N);
  let BKDN = u.B * u.K * u.Dc * u.N;
  var gs = 0.0;
  for (var k = u.K; k > 0u; k--) {
    let e = (b * u.K + k - 1u) * u.Dc * u.N + dn;
    gEnd[e] = gs;
    gs = work[BKDN + e] * gs + work[e];
  }
  if (HAS_OUT) { dstate[i] = gs; }
}`,
    }),
    [gEnd, temps.or(g.dstateIn), work, p.buf],
    uni,
    grid1d(B * Dc * N, WG),
  );

  // 3. every chunk: states recomputed from its checkpoint, the adjoint run through them; sums
  // over a channel's states by subgroup shuffles across its QL lanes
  const sg = ctx.acquired.subgroupMinSize;
  const flush = bcFlush(ctx);
  launch(
    ctx,
    `${tag}:bwd3:${c.key}:${segmentLanes(QL, sg)}:${flush}`,
    () => ({
      label: `${tag}:bwd3`,
      enables: segmentLanes(QL, sg) > 1 ? ["subgroups"] : [],
      uniforms: [...SCAN_UNIFORMS, ["offA", "u32"], ["offDs", "u32"], ["offBC", "u32"]],
      bindings: [
        ["grads", "write", "array<f32>"], ["gEnd", "read", "array<f32>"], ["ckpt", "read", "array<f32>"], ["dyg", "read", "array<f32>"],
        ["uu", "read", "array<f32>"], ["pre", "read", "array<f32>"], ["Bm", "read", "array<f32>"], ["Cm", "read", "array<f32>"],
        ["params", "read", "array<f32>"], ["du", "write", "array<f32>"], ["dz", "write", "array<f32>"],
      ],
      body: `${decl}${quads([["bAt", "Bm"], ["cAt", "Cm"]])}${segmentSumLanes("lsum", WG3, "f32", QL, sg)}${segmentSumLanes("lsum2", WG3, "vec2<f32>", QL, sg)}
const FLUSH: u32 = ${flush}u;
const QDB: u32 = ${QDB}u;
// (dB, dC) terms of the last FLUSH steps, [slot][channel][state], summed over the block's
// channels once every FLUSH steps rather than every step
var<workgroup> xbc: array<vec2<f32>, ${(flush * WG3 * 32) / 8}>;
fn flushBC(tTop: u32, tEnd: u32, blk: u32, b: u32, lid: u32) {
  for (var p = lid; p < FLUSH * u.N; p += ${WG3}u) {
    // slot j holds step tTop - j: the adjoint walks backward in time
    let j = p / u.N;
    let n = p % u.N;
    if (tTop - j < tEnd) {
      var s = vec2<f32>(0.0);
      for (var dl = 0u; dl < QDB; dl++) { s += xbc[(j * QDB + dl) * NQ + n]; }
      let o = u.offBC + 2u * (((blk * u.B + b) * u.T + tTop - j) * u.N + n);
      grads[o] = s.x;
      grads[o + 1u] = s.y;
    }
  }
}
// (step, u) of one channel and time
fn chanAt(rows: Rows, t: u32, vd: bool) -> vec2<f32> {
  let v = vec2<f32>(pre[min(rows.s + t * rows.sS, arrayLength(&pre) - 1u)], uu[min(rows.c + t * u.Dc, arrayLength(&uu) - 1u)]);
  return select(vec2<f32>(0.0), v, vd);
}
@compute @workgroup_size(${WG3})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  ${BLOCK}
  let rows = rowsOf(b, d);
  // where dout silu'(z) starts in pre (after the steps)
  let offZ = u.B * u.T * rows.sS;
  let a = aQuad(d, n0, ok);
  let a2 = a * LOG2E;
  var gs = ${quadRead("gEnd", "e0", "ok")};
  let h0 = ${quadRead("ckpt", "e0", "ok")};
  let ds = dskipOf(d);
  var dAacc = vec4<f32>(0.0);
  var dDacc = 0.0;
  var starts: array<vec4<f32>, ${SUB / BLK}>;
  let nsub = (t1 - t0 + SUB - 1u) / SUB;
  for (var sc = nsub; sc > 0u; sc--) {
    let ts = t0 + (sc - 1u) * SUB;
    let te = min(t1, ts + SUB);
    var h = h0;
    for (var t = t0; t < ts; t++) {
      let q = chanAt(rows, t, vd);
      h = exp2(q.x * a2) * h + (q.x * q.y) * bAt(rows.bc + t * rows.sBC, n0, vd);
    }
    // forward through the interval, keeping each block's first state
    let nb = (te - ts + ${BLK - 1}u) / ${BLK}u;
    for (var kb = 0u; kb < nb; kb++) {
      starts[kb] = h;
      for (var t = ts + kb * ${BLK}u; t < ts + (kb + 1u) * ${BLK}u; t += ${UNROLL}u) {
        ${unrolled((j) => `let q${j} = chanAt(rows, t + ${j}u, vd && t + ${j}u < te);
        let bq${j} = bAt(rows.bc + (t + ${j}u) * rows.sBC, n0, vd && t + ${j}u < te);`)}
        ${unrolled((j) => `h = exp2(q${j}.x * a2) * h + (q${j}.x * q${j}.y) * bq${j};`)}
      }
    }
    // back through the blocks: each re-run into registers, then the adjoint through it
    for (var kb = nb; kb > 0u; kb--) {
      let tb = ts + (kb - 1u) * ${BLK}u;
      let hr0 = starts[kb - 1u];
      ${blockStates()}
      ${Array.from({ length: BLK / flush }, (_, i) => reverseGroup(BLK / flush - 1 - i, flush)).join("\n      ")}
    }
  }
  ${quadWrite("grads", "u.offA + e0", "ok", "dAacc")}
  if (vd && qd == 0u) { grads[u.offDs + (b * u.K + kc) * u.Dc + d] = dDacc; }
}`,
    }),
    [grads, gEnd, checkpoints, dyg, x.u, pre, x.Bmat, x.Cmat, p.buf, g.du, temps.or(g.dz)],
    [...uni, offA, offDs, offBC],
    [nblk, K, B],
  );

  // finishing sums, each an ordered loop
  const nPar = Dc / s.R;
  launch(
    ctx,
    `${tag}:ddt:${c.key}`,
    () => ({
      label: `${tag}:ddt`,
      uniforms: SCAN_UNIFORMS,
      bindings: [["ddt", "write", "array<f32>"], ["grads", "read", "array<f32>"], ["dt", "read", "array<f32>"], ["params", "read", "array<f32>"]],
      body: `${decl}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = linearIndex(gid, nwg);
  let per = u.Dc / u.R;
  if (i >= u.B * u.T * per) { return; }
  let row = i / per;
  let d0 = (i % per) * u.R;
  var s = 0.0;
  for (var r = 0u; r < u.R; r++) { s += grads[row * u.Dc + d0 + r]; }
  ddt[i] = s * stepGrad(dt[i] + biasOf(d0));
}`,
    }),
    [g.ddt, grads, x.dt, p.buf],
    uni,
    grid1d(B * T * nPar, WG),
  );
  // ordered sums over every (b, t) (dtBias), and of the partials over batch and chunks and the
  // channels and states of a head; COLSUM_CHUNK rows a thread (one thread walking all B * T rows
  // of dtBias took 30 ms at T = 64k on an H200)
  if (g.ddtBias) columnSum(ctx, g.ddtBias, g.ddt, B * T, nPar, false);
  columnSum(ctx, g.dA, grads, B * K, s.aPerState ? Dc * N : nPar, false, offA, s.aPerState ? 1 : s.R * N);
  if (g.dDskip) columnSum(ctx, g.dDskip, grads, B * K, nPar, false, offDs, s.R);
  launch(
    ctx,
    `${tag}:dbc:${c.key}`,
    () => ({
      label: `${tag}:dbc`,
      uniforms: [...SCAN_UNIFORMS, ["offBC", "u32"]],
      bindings: [["dB", "write", "array<f32>"], ["dC", "write", "array<f32>"], ["grads", "read", "array<f32>"], ["params", "read", "array<f32>"]],
      body: `${decl}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = linearIndex(gid, nwg);
  if (i >= u.B * u.T * u.G * u.N) { return; }
  let n = i % u.N;
  let g = (i / u.N) % u.G;
  let bt = i / (u.N * u.G);
  let b = bt / u.T;
  let t = bt % u.T;
  var s = vec2<f32>(0.0);
  for (var blk = g * u.bps; blk < (g + 1u) * u.bps; blk++) {
    let o = u.offBC + 2u * (((blk * u.B + b) * u.T + t) * u.N + n);
    s += vec2<f32>(grads[o], grads[o + 1u]);
  }
  dB[i] = s.x;
  dC[i] = s.y;
}`,
    }),
    [g.dB, g.dC, grads, p.buf],
    [...uni, offBC],
    grid1d(B * T * s.G * N, WG),
  );
  temps.release();
}
