/**
 * scan_chunks.ts's chunk-parallel forward in one dispatch: chunks pass their carries to each
 * other through a decoupled look-back (Merrill & Garland 2016, "Single-pass Parallel Prefix Scan
 * with Decoupled Look-back", the scheme of CUB's single-pass scans) instead of a carry kernel
 * between two kernels. A thread per (batch row, chunk of CH steps, channel) holds the N states of
 * its channel in registers (lanes are channels: u, dt, z, y move in coalesced rows, a step's B/C
 * row is one broadcast read), and
 *   1. runs its chunk from a zero state: the local state S and the sum of its steps, whose decay
 *      product is exp2(A log2e sum) (scan_chunks.ts pass 1),
 *   2. publishes (sum, S) as its chunk's aggregate, waits for the aggregates of the chunks since
 *      the last multiple of SG before it and for that chunk's carry, applies them to it in chunk
 *      order, and (if its own index is a multiple of SG) publishes its carry out,
 *   3. runs its chunk again from the entering state with outputs and checkpoints (pass 3); its
 *      inputs were read moments before, so this second read can hit in L2.
 * Both walks go U steps a loop iteration with the next U steps' loads in flight (see `walk`).
 *
 * Why not one exp2 per update: a chunk cannot produce outputs before its entering state is known,
 * and its aggregate needs every decay of the chunk, so the decays are computed either twice or
 * kept on chip between the two walks (CH x N values a channel: mamba_ssm's block scan keeps them
 * in registers, scan_block.ts too, at the cost of a cross-thread scan per tile). Waiting for the
 * carry before the only walk makes the chunks of a channel serial. What this saves over the
 * three kernels is the carry kernel, its launch, and DRAM traffic of the second walk. PX state
 * quads of walk 1 evaluate exp2 as a polynomial on the FMA pipes (FlashAttention-4's split
 * between the exponential unit and FMAs): on an H200 it was slower at every length (the SFUs are
 * not what bounds this kernel: bench/notes/gpu-tuning.md), so no default uses it.
 *
 * Forward progress. WebGPU promises none between workgroups, so chunk indices are not taken from
 * the workgroup id but handed out by an atomic counter (a ticket) in chunk order: every chunk a
 * workgroup waits on took its ticket earlier, so it is already running and never waits on a
 * later one; on GPUs a running workgroup stays resident, on SwiftShader it runs on its own worker
 * thread (workgroups are executed one after another per task). Memory model: WGSL atomics are
 * relaxed and there is no acquire/release between workgroups, so there is no separate flag; every
 * published word is its own flag (the float's bits + 1, 0 meaning not yet written), and a reader
 * polls until each word it needs is written. The words are zeroed by a small kernel before each
 * call.
 */
import type { GpuContext } from "./context.js";
import { grid1d } from "./context.js";
import { launch, Temps, zeroWords } from "./kit.js";
import { chunkedLayout, type ChunkedScanShape, type ScanUniforms } from "./scan_chunks.js";
import { bcQuadsWgsl, type ScanForwardBuffers } from "./scan_forward.js";

/** Chunk length in steps, channels per workgroup, and state quads of walk 1 with polynomial exp2. */
export interface ScanLookbackPlan {
  kind: "lookback";
  CH: number;
  WD: number;
  PX?: number;
  /** steps a loop iteration of both walks (default 1); their dt, u, z are loaded one iteration ahead */
  U?: number;
}

export function scanLookbackName(p: ScanLookbackPlan): string {
  return `lookback CH${p.CH} WD${p.WD}${p.PX ? ` PX${p.PX}` : ""}${(p.U ?? 1) > 1 ? ` U${p.U}` : ""}`;
}

/**
 * 2^x for x <= 0 on the FMA pipes: x = j + f with j = round(x), f in [-1/2, 1/2]; 2^f is a
 * degree-5 polynomial (relative error 7.5e-8 before rounding: a Lawson-weighted fit on Chebyshev
 * nodes), and j is added to its exponent field. Inputs below -125 are clamped (the result,
 * 2^-125, is as good as 0 for a decay). FlashAttention-4 rounds by adding 1.5 * 2^23; here
 * round() is kept, since a compiler that reassociates floats (SwiftShader's did) folds
 * (x + M) - M to x.
 */
const EXP2_POLY = /* wgsl */ `
fn exp2p(x: vec4<f32>) -> vec4<f32> {
  let xc = max(x, vec4<f32>(-125.0));
  let jf = round(xc);
  let j = vec4<i32>(jf);
  let f = xc - jf;
  var p = 1.327647129073739e-3 * f + vec4<f32>(9.675540961325169e-3);
  p = p * f + vec4<f32>(5.550713092088699e-2);
  p = p * f + vec4<f32>(2.4022120237350464e-1);
  p = p * f + vec4<f32>(6.931469440460205e-1);
  p = p * f + vec4<f32>(1.0000001192092896);
  return bitcast<vec4<f32>>(bitcast<vec4<i32>>(p) + (j << vec4<u32>(23u)));
}
`;

/** WGSL of the kernel: B/C quads, the polynomial exp2, publication and polling reads. */
function helpers(NQ: number, vecBC: boolean): string {
  const bc = bcQuadsWgsl(vecBC);
  return `
const NQ: u32 = ${NQ}u;
const SG: u32 = ${SG}u;
${bc}
${EXP2_POLY}
var<workgroup> ticket: u32;
// published words: a float's bits + 1 (0 = not yet written; the one pattern that wraps to 0, a NaN, is
// stored as another NaN)
fn publish(i: u32, x: f32) {
  let v = bitcast<u32>(x) + 1u;
  atomicStore(&flg[i], select(v, 0x80000000u, v == 0u));
}
// words of (batch row b, chunk k, channel d): the aggregate (sum of steps, S[N]) and the inclusive carry (N)
fn aggAt(b: u32, k: u32, d: u32) -> u32 { return 1u + ((b * u.NC + k) * u.Dc + d) * (u.N + 1u); }
// (k a multiple of SG: only those publish carries)
fn incAt(b: u32, k: u32, d: u32) -> u32 {
  return 1u + u.B * u.NC * u.Dc * (u.N + 1u) + ((b * ((u.NC + SG - 1u) / SG) + k / SG) * u.Dc + d) * u.N;
}
fn quadOf(v: array<f32, 4>) -> vec4<f32> { return vec4<f32>(v[0], v[1], v[2], v[3]); }
// Every loop over states below runs over (q < NQ, k < 4) with constant bounds, never n < u.N:
// a runtime-bounded index into h would put the states in local memory instead of registers.
`;
}

/**
 * Carries are published by every SG-th chunk (see the look-back in the kernel): 4 was the fastest
 * of 2, 4, 8, 16 or within 2% of it at every length timed (H200, bench/notes/gpu-tuning.md).
 */
const SG = 4;

/** Words of the flag buffer: the ticket, the aggregates and the carries of every SG-th chunk. */
export function scanLookbackWords(B: number, T: number, Dc: number, N: number, CH: number): number {
  const NC = Math.ceil(T / CH);
  return 1 + B * NC * Dc * (N + 1) + B * Math.ceil(NC / SG) * Dc * N;
}

/**
 * Record the zeroing of the flags and the fused kernel. `decl` is scan_core.ts's shared WGSL;
 * the uniforms are scan_core.ts's plus CH and NC (appended here).
 */
export function dispatchScanLookback(
  ctx: GpuContext,
  plan: ScanLookbackPlan,
  key: string,
  tag: string,
  decl: string,
  shape: ChunkedScanShape & { chunk: number },
  bufs: ScanForwardBuffers,
  uniforms: ScanUniforms,
  uniformValues: (bps: number) => number[],
): void {
  const { CH, WD } = plan;
  const { B, T, Dc, N, G } = shape;
  const { NQ, NC, bps, vecBC, bc, uni, vals } = chunkedLayout(CH, WD, shape, uniforms, uniformValues);
  const PX = Math.min(plan.PX ?? 0, NQ);
  const temps = new Temps(ctx);
  const words = scanLookbackWords(B, T, Dc, N, CH);
  const flg = temps.get(words);
  zeroWords(ctx, flg, words);

  const nb = G * bps;
  const groups = NC * B * nb;
  const vq = vecBC ? "4u" : "1u";
  const U = plan.U ?? 1;
  const idx = [...Array(U).keys()];
  // A walk over t0 <= t < t1 in groups of U steps, software-pipelined: the dt, u (and z) of the
  // next group are loaded while this group computes, so their latency overlaps U steps of work
  // (one step was not enough: a warp waited on DRAM every step at short T, where few warps run),
  // and the U steps' independent work (the step nonlinearity, the output dot products) can
  // interleave; only h chains them. Steps past t1 in the last group are dead: their step and
  // input are 0 (so h is unchanged: exp2(0) = 1, and B is zeroed so that no Inf or NaN of a row
  // outside the chunk leaks in) and they store nothing. Loads past the end of a buffer are
  // clamped by WGSL's bounds rules, harmlessly.
  // Checkpoints fall every `chunk` steps; where U divides both chunk and CH they fall at the end
  // of a group (groups start at multiples of U), so one test after the group does, and the
  // group's U steps stay one branch-free block the compiler can schedule as a whole
  const groupCkpt = shape.chunk % U === 0 && CH % U === 0;
  const walk = (withZ: boolean, step: (i: number) => string, after = "") => /* wgsl */ `{
  ic = ic0;
  idt = idt0;
  ibc = ibc0;
  ${idx.map((i) => `var pd${i} = dt[idt + ${i}u * dts];\n  var px${i} = uu[ic + ${i}u * u.Dc];${withZ ? `\n  var pz${i} = 0.0;\n  if (HAS_Z) { pz${i} = z[ic + ${i}u * u.Dc]; }` : ""}`).join("\n  ")}
  for (var t = t0; t < t1; t += ${U}u) {
    ${idx.map((i) => `let nd${i} = dt[idt + ${U + i}u * dts];\n    let nx${i} = uu[ic + ${U + i}u * u.Dc];${withZ ? `\n    var nz${i} = 0.0;\n    if (HAS_Z) { nz${i} = z[ic + ${U + i}u * u.Dc]; }` : ""}`).join("\n    ")}
    ${idx.map((i) => `{
      let live = t + ${i}u < t1;
      let dl = select(0.0, stepOf(pd${i} + bias), live);
      let x = px${i};
      let du = select(0.0, dl * x, live);
      let r = ibc + ${i}u * bcs;
      let o = ic + ${i}u * u.Dc;${withZ ? `\n      let zz = pz${i};` : ""}
      ${step(i)}
    }`).join("\n    ")}
    ${after}
    ${idx.map((i) => `pd${i} = nd${i};\n    px${i} = nx${i};${withZ ? `\n    pz${i} = nz${i};` : ""}`).join("\n    ")}
    ic += ${U}u * u.Dc;
    idt += ${U}u * dts;
    ibc += ${U}u * bcs;
  }
  }`;
  const bLive = "select(vec4<f32>(0.0), bq(r, q), live)";
  const quads = (from: number, to: number, exp: string) =>
    to > from ? `for (var q = ${from}u; q < ${to}u; q++) { h[q] = ${exp}(dl * a[q]) * h[q] + du * ${bLive}; }` : "";
  const walk1 = walk(false, () => `sum += dl;
      ${quads(0, PX, "exp2p")}
      ${quads(PX, NQ, "exp2")}`);
  // the state after `after` steps of this group is checkpoint kk when t + after is kk chunks
  const ckpt = (after: string, live: string) => `if (HAS_CKPT && ${live}t + ${after} == kk * u.chunk) {
        if (t + ${after} < u.T) {
          let cb = ((b * u.K + kk) * u.Dc + d) * u.N;
          for (var q = 0u; q < NQ; q++) { for (var k = 0u; k < 4u; k++) { if (q * 4u + k < u.N) { ckpt[cb + q * 4u + k] = h[q][k]; } } }
        }
        kk += 1u;
      }`;
  const walk2 = walk(
    true,
    (i) => `var y = ds * x;
      for (var q = 0u; q < NQ; q++) {
        h[q] = exp2(dl * a[q]) * h[q] + du * ${bLive};
        y += dot(cq(r, q), h[q]);
      }
      ${groupCkpt ? "" : ckpt(`${i + 1}u`, "live && ")}
      if (HAS_Z) { y = y * silu_(zz); }
      if (live) { out[o] = y; }`,
    groupCkpt ? ckpt(`${U}u`, "") : "",
  );
  launch(
    ctx,
    `${tag}:fwdlb:${key}:${CH}:${WD}:${PX}:${U}:${+vecBC}:${+groupCkpt}`,
    () => ({
      label: `${tag}:fwdlb`,
      uniforms: uni,
      bindings: [
        ["out", "write", "array<f32>"], ["ckpt", "write", "array<f32>"], ["stateOut", "write", "array<f32>"], ["flg", "write", "array<atomic<u32>>"],
        ["uu", "read", "array<f32>"], ["dt", "read", "array<f32>"], ["Bm", "read", bc], ["Cm", "read", bc],
        ["z", "read", "array<f32>"], ["params", "read", "array<f32>"], ["stateIn", "read", "array<f32>"],
      ],
      body: `${decl}${helpers(NQ, vecBC)}
@compute @workgroup_size(${WD})
fn main(@builtin(local_invocation_index) lid: u32) {
  // this workgroup's (chunk, batch row, channel block): the next ticket, chunk-major
  if (lid == 0u) { ticket = atomicAdd(&flg[0], 1u); }
  let tk = workgroupUniformLoad(&ticket);
  let nb = u.G * u.bps;
  if (tk >= u.NC * u.B * nb) { return; }
  let kc = tk / (u.B * nb);
  let b = (tk / nb) % u.B;
  let blk = tk % nb;
  let seg = u.Dc / u.G;
  let dLocal = (blk % u.bps) * ${WD}u + lid;
  let d = (blk / u.bps) * seg + dLocal;
  let t0 = kc * u.CH;
  let t1 = min(u.T, t0 + u.CH);
  if (dLocal >= seg) { return; }
  var a: array<vec4<f32>, NQ>;
  for (var q = 0u; q < NQ; q++) {
    var v: array<f32, 4>;
    for (var k = 0u; k < 4u; k++) { v[k] = select(0.0, aOf(d, q * 4u + k) * LOG2E, q * 4u + k < u.N); }
    a[q] = quadOf(v);
  }
  let bias = biasOf(d);
  // per step: u, z, y move by Dc, dt by Dc / R, the B/C row by G * N floats
  let dts = u.Dc / u.R;
  let bcs = u.G * u.N / ${vq};
  let ic0 = chanIdx(b, t0, d);
  let idt0 = dtIdx(b, t0, d);
  let ibc0 = bcIdx(b, t0, d) / ${vq};

  // 1. the chunk from a zero state, and its sum of steps (not needed of the last chunk)
  var h: array<vec4<f32>, NQ>;
  let e0 = (b * u.Dc + d) * u.N;
  var sum = 0.0;
  var ic: u32;
  var idt: u32;
  var ibc: u32;
  if (kc + 1u < u.NC) ${walk1}

  // 2. publish, look back, publish the carry out of this chunk
  var hin: array<vec4<f32>, NQ>;
  if (kc == 0u) {
    if (HAS_IN) {
      for (var q = 0u; q < NQ; q++) {
        var v: array<f32, 4>;
        for (var k = 0u; k < 4u; k++) { v[k] = select(0.0, stateIn[e0 + q * 4u + k], q * 4u + k < u.N); }
        hin[q] = quadOf(v);
      }
    }
  } else {
    if (kc + 1u < u.NC) {
      let ag = aggAt(b, kc, d);
      publish(ag, sum);
      for (var q = 0u; q < NQ; q++) { for (var k = 0u; k < 4u; k++) { if (q * 4u + k < u.N) { publish(ag + 1u + q * 4u + k, h[q][k]); } } }
    }
    // The aggregates of the chunks after j0, the last multiple of SG before this chunk, composed
    // in chunk order (s -> exp2(a accSum) s + accS, each chunk's map applied after the ones
    // before), then applied to j0's carry. Only multiples of SG publish carries, so a carry
    // waits on the one SG chunks back, not on every chunk before it, while what a chunk waits
    // for is fixed: its entering state is the same expression whatever the timing, so results
    // are deterministic (a look-back that folds back to whichever carry is out first was 4-11%
    // faster on an H200, but its rounding depends on the timing). The aggregates come first:
    // they are out as soon as their chunk's walk 1 is.
    let j0 = ((kc - 1u) / SG) * SG;
    var accSum = 0.0;
    var accS: array<vec4<f32>, NQ>;
    // m = kc: j0's carry (then done); m < kc: chunk m's aggregate (sum, then N words). A word still
    // 0 means: not yet written, load again
    var m = j0 + 1u;
    loop {
      let last = m >= kc;
      let w0 = select(aggAt(b, m, d), incAt(b, j0, d) - 1u, last);
      let s0 = select(atomicLoad(&flg[w0]), 1u, last);
      var wv: array<vec4<u32>, NQ>;
      var ok = s0 != 0u;
      for (var q = 0u; q < NQ; q++) {
        var v = vec4<u32>(1u);
        for (var k = 0u; k < 4u; k++) { if (q * 4u + k < u.N) { v[k] = atomicLoad(&flg[w0 + 1u + q * 4u + k]); } }
        ok = ok && all(v != vec4<u32>(0u));
        wv[q] = v;
      }
      if (!ok) { continue; }
      if (last) {
        for (var q = 0u; q < NQ; q++) { hin[q] = fma(exp2(a[q] * accSum), bitcast<vec4<f32>>(wv[q] - vec4<u32>(1u)), accS[q]); }
        break;
      }
      let sm = bitcast<f32>(s0 - 1u);
      for (var q = 0u; q < NQ; q++) { accS[q] = fma(exp2(a[q] * sm), accS[q], bitcast<vec4<f32>>(wv[q] - vec4<u32>(1u))); }
      accSum += sm;
      m += 1u;
    }
  }
  if (kc + 1u < u.NC && kc % SG == 0u) {
    let ci = incAt(b, kc, d);
    for (var q = 0u; q < NQ; q++) {
      let c = fma(exp2(a[q] * sum), hin[q], h[q]);
      for (var k = 0u; k < 4u; k++) { if (q * 4u + k < u.N) { publish(ci + q * 4u + k, c[k]); } }
    }
  }

  // 3. the chunk from its entering state: outputs, skip, gate, checkpoints
  h = hin;
  let ds = dskipOf(d);
  if (HAS_CKPT && kc == 0u) {
    for (var q = 0u; q < NQ; q++) { for (var k = 0u; k < 4u; k++) { if (q * 4u + k < u.N) { ckpt[(b * u.K * u.Dc + d) * u.N + q * 4u + k] = h[q][k]; } } }
  }
  // the next checkpoint: the state after step t is saved when t + 1 is a multiple of chunk
  var kk = t0 / u.chunk + 1u;
  ${walk2}
  if (HAS_OUT && kc + 1u == u.NC) {
    for (var q = 0u; q < NQ; q++) { for (var k = 0u; k < 4u; k++) { if (q * 4u + k < u.N) { stateOut[e0 + q * 4u + k] = h[q][k]; } } }
  }
}`,
    }),
    [bufs.out, bufs.ckpt, bufs.stateOut, flg, bufs.u, bufs.dt, bufs.Bm, bufs.Cm, bufs.z, bufs.params, bufs.stateIn],
    vals,
    grid1d(groups, 1),
  );
  temps.release();
}
