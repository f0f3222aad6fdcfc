/**
 * The forward of both Mamba scans (scan_core.ts states the recurrence) in one pass that reads
 * every input once and computes each decay exp(step_t A[d, n]) once:
 *
 *   a workgroup owns DB channels of one batch row and walks the whole sequence in tiles of
 *   TT = L * I steps. Each channel is L consecutive lanes of a subgroup; lane l owns the I
 *   consecutive steps tile + l * I .. + I - 1. For four states at a time (vec4s), a lane
 *     1. runs the recurrence over its steps from zero, keeping each step's partial state
 *        hl_i and decay product pc_i in registers (the only exp of the kernel),
 *     2. scans the (product, partial) pairs of its channel's lanes with subgroup shuffles
 *        (the associative combine of h_t = a_t h_{t-1} + b_t, Blelloch 1990), which gives
 *        the state entering its steps from the tile's carry, h_in = P_before carry + S_before,
 *     3. finishes h_i = hl_i + pc_i h_in and adds C_t[n] h_i to its outputs;
 *   the last lane's inclusive scan advances the carry to the next tile. Then y gets the skip
 *   Dskip u and the gate silu(z), and is written once.
 *
 * B and C rows of a tile (shared by all channels of a B/C group) are staged in workgroup
 * memory, NS states at a time (all of them when N <= 16), padded one vec4 per lane so that the
 * lanes' vec4 reads hit distinct banks. The carry lives in workgroup memory, double-buffered by
 * tile parity, so the tile's first barrier orders its writes and reads. The checkpoints for
 * the backward (the state entering every `chunk` steps) are written as the states pass by.
 *
 * Without subgroups (L = 1) every lane owns a channel's whole tile and no shuffle is needed.
 * Lanes of a channel are consecutive invocations inside one subgroup (how Vulkan drivers lay
 * out a one-dimensional workgroup; the attention kernels assume the same).
 *
 * Work per (t, d, n): one exp2 and about seven multiply-adds, plus the lane scan amortised over
 * I steps. Decays use the hardware exp2 of step * (A log2 e): relative error about 1e-7 for
 * the |step A| of a real model, where the software exp_ of wgsl.ts cost four times the
 * instructions (measured: bench/notes/gpu-tuning.md).
 */
import { SeqlabError } from "../../util/errors.js";
import type { GpuContext } from "./context.js";
import { launch, type Buf, type S } from "./kit.js";

/** Tile shape of the forward scan: lanes per channel, steps per lane, channels per workgroup. */
export interface ScanForwardPlan {
  L: number;
  I: number;
  DB: number;
  /** states staged in workgroup memory at a time (a multiple of 4) */
  NS: number;
}

export interface ScanLimits {
  bytes: number;
  invocations: number;
  subgroupMinSize: number;
}

/** Workgroup memory a plan needs for states padded to NP4. */
export function scanForwardBytes(p: ScanForwardPlan, NP4: number): number {
  const rs = (p.NS / 4) * p.I + 1;
  return 2 * p.L * rs * 16 + 2 * p.DB * NP4 * 4;
}

/** The default: 32 lanes (a whole NVIDIA subgroup) of 8 steps, 4 channels per workgroup. */
export function chooseScanForward(N: number, lim: ScanLimits, want: Partial<ScanForwardPlan> = {}): ScanForwardPlan {
  const NP4 = Math.ceil(N / 4) * 4;
  // subgroup sizes are powers of two
  const L = want.L ?? (lim.subgroupMinSize >= 2 ? Math.min(32, lim.subgroupMinSize) : 1);
  if (L > 1 && L > lim.subgroupMinSize) throw new SeqlabError(`webgpu: scan plan with ${L} lanes per channel needs subgroups of at least ${L} lanes`);
  let I = want.I ?? 8;
  let DB = want.DB ?? Math.max(1, Math.min(4, Math.floor(128 / L)));
  while (DB * L > lim.invocations && DB > 1) DB >>= 1;
  let NS = want.NS ?? Math.min(16, NP4);
  const plan = () => ({ L, I, DB, NS });
  while (scanForwardBytes(plan(), NP4) > lim.bytes && NS > 4) NS -= 4;
  while (scanForwardBytes(plan(), NP4) > lim.bytes && I > 1) I >>= 1;
  if (DB * L > lim.invocations || scanForwardBytes(plan(), NP4) > lim.bytes) {
    throw new SeqlabError(`webgpu: no forward scan tile fits this device (state size ${N})`);
  }
  return plan();
}

const items = (n: number) => [...Array(n).keys()];

/**
 * WGSL of the forward (the shared declarations of scan_core.ts's `common` come first): needs
 * uniforms B T Dc N chunk K R G bps offD offBias dtMin dtMax and the bindings
 * out ckpt stateOut uu dt Bm Cm z stateIn params.
 */
export function scanForwardWgsl(p: ScanForwardPlan, N: number, vecBC: boolean): string {
  const { L, I, DB, NS } = p;
  const NP4 = Math.ceil(N / 4) * 4;
  const NS4 = NS / 4;
  const NSLAB = Math.ceil(NP4 / NS);
  const RS = NS4 * I + 1;
  const TT = L * I;
  const offs: number[] = [];
  for (let o = 1; o < L; o *= 2) offs.push(o);
  const perItem = (f: (i: number) => string) => items(I).map(f).join("\n      ");
  // B/C tile fill: row r of the tile, states slab*NS + j, zero past T or N
  const fill = vecBC
    ? `for (var e = lid; e < ${TT * NS4}u; e += ${DB * L}u) {
        let r = e / ${NS4}u;
        let j4 = e % ${NS4}u;
        let t = tt0 + r;
        let n4 = slab * ${NS4}u + j4;
        var bv = vec4<f32>(0.0);
        var cv = vec4<f32>(0.0);
        if (t < u.T && n4 * 4u < u.N) {
          let o = (((b * u.T + t) * u.G + g) * u.N) / 4u + n4;
          bv = Bm[o];
          cv = Cm[o];
        }
        let s = (r / ${I}u) * ${RS}u + (r % ${I}u) * ${NS4}u + j4;
        sB[s] = bv;
        sC[s] = cv;
      }`
    : `for (var e = lid; e < ${TT * NS}u; e += ${DB * L}u) {
        let r = e / ${NS}u;
        let j = e % ${NS}u;
        let t = tt0 + r;
        let n = slab * ${NS}u + j;
        var bv = 0.0;
        var cv = 0.0;
        if (t < u.T && n < u.N) {
          let o = ((b * u.T + t) * u.G + g) * u.N + n;
          bv = Bm[o];
          cv = Cm[o];
        }
        let s = (r / ${I}u) * ${RS}u + (r % ${I}u) * ${NS4}u + j / 4u;
        sB[s][j % 4u] = bv;
        sC[s][j % 4u] = cv;
      }`;
  const scan = offs
    .map(
      (o) => `{
          let pP = subgroupShuffleUp(Pi, ${o}u);
          let pS = subgroupShuffleUp(Si, ${o}u);
          if (lane >= ${o}u) { Si = Pi * pS + Si; Pi = Pi * pP; }
        }`,
    )
    .join("\n        ");
  const exclusive =
    L > 1
      ? `var Pe = subgroupShuffleUp(Pi, 1u);
        var Se = subgroupShuffleUp(Si, 1u);
        if (lane == 0u) { Pe = vec4<f32>(1.0); Se = vec4<f32>(0.0); }`
      : `let Pe = vec4<f32>(1.0);
        let Se = vec4<f32>(0.0);`;
  return /* wgsl */ `
const L: u32 = ${L}u;
const NQ: u32 = ${NP4 / 4}u;
var<workgroup> sB: array<vec4<f32>, ${L * RS}>;
var<workgroup> sC: array<vec4<f32>, ${L * RS}>;
// the state entering the tile, per channel: [parity][channel][state / 4]
var<workgroup> sCarry: array<array<vec4<f32>, ${NP4 / 4}>, ${2 * DB}>;

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

// states 4 n4 .. 4 n4 + 3 (those below N) of one channel, at base + n
fn writeCkpt4(base: u32, v: vec4<f32>, n4: u32) {
  for (var k = 0u; k < 4u; k++) { if (n4 * 4u + k < u.N) { ckpt[base + n4 * 4u + k] = v[k]; } }
}
fn writeOut4(base: u32, v: vec4<f32>, n4: u32) {
  for (var k = 0u; k < 4u; k++) { if (n4 * 4u + k < u.N) { stateOut[base + n4 * 4u + k] = v[k]; } }
}

@compute @workgroup_size(${DB * L})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let c = lid / L;
  let lane = lid % L;
  let blk = wid.x;
  let b = wid.y;
  let seg = u.Dc / u.G;
  let g = blk / u.bps;
  let dLocal = (blk % u.bps) * ${DB}u + c;
  let d = g * seg + dLocal;
  let vd = dLocal < seg;
  let ds = select(0.0, dskipOf(d), vd);

  // the carry starts at the initial state (zeros without one); it is the first checkpoint
  for (var q = lane; q < NQ; q += L) {
    var h = vec4<f32>(0.0);
    if (HAS_IN && vd) {
      for (var k = 0u; k < 4u; k++) {
        if (q * 4u + k < u.N) { h[k] = stateIn[(b * u.Dc + d) * u.N + q * 4u + k]; }
      }
    }
    sCarry[c][q] = h;
    if (HAS_CKPT && vd) { writeCkpt4(((b * u.K) * u.Dc + d) * u.N, h, q); }
  }

  let ntiles = (u.T + ${TT - 1}u) / ${TT}u;
  for (var tile = 0u; tile < ntiles; tile++) {
    let par = tile & 1u;
    let tt0 = tile * ${TT}u;
    let t0 = tt0 + lane * ${I}u;
    // per step: the step size, step * u, the output so far (skip term), the checkpoint it ends
    ${perItem((i) => `var dl${i} = 0.0; var du${i} = 0.0; var y${i} = 0.0; var kc${i} = 0u;`)}
    ${perItem(
      (i) => `if (vd && t0 + ${i}u < u.T) {
        let t = t0 + ${i}u;
        dl${i} = stepOf(dt[dtIdx(b, t, d)] + biasOf(d));
        let x = uu[chanIdx(b, t, d)];
        du${i} = dl${i} * x;
        y${i} = ds * x;
        if (HAS_CKPT && (t + 1u) % u.chunk == 0u && t + 1u < u.T) { kc${i} = (t + 1u) / u.chunk; }
      }`,
    )}
    let row = lane * ${RS}u;
    for (var slab = 0u; slab < ${NSLAB}u; slab++) {
      workgroupBarrier();
      ${fill}
      workgroupBarrier();
      for (var q = 0u; q < ${NS4}u; q++) {
        let n4 = slab * ${NS4}u + q;
        if (n4 >= NQ) { break; }
        let a = a4(d, n4, vd);
        // 1. this lane's steps from a zero state
        var P = vec4<f32>(1.0);
        var S = vec4<f32>(0.0);
        ${perItem(
          (i) => `let dec${i} = exp2(dl${i} * a);
        P = P * dec${i};
        S = dec${i} * S + du${i} * sB[row + ${i * NS4}u + q];
        let pc${i} = P;
        let hl${i} = S;`,
        )}
        // 2. inclusive scan of (P, S) over the channel's lanes, then the lane's entering state
        var Pi = P;
        var Si = S;
        ${scan}
        ${exclusive}
        let carry = sCarry[par * ${DB}u + c][n4];
        let hin = Pe * carry + Se;
        // 3. the states, their outputs, and the checkpoints they end
        ${perItem(
          (i) => `{
          let h = pc${i} * hin + hl${i};
          y${i} += dot(sC[row + ${i * NS4}u + q], h);
          if (HAS_CKPT && kc${i} != 0u) { writeCkpt4(((b * u.K + kc${i}) * u.Dc + d) * u.N, h, n4); }
        }`,
        )}
        if (lane == L - 1u) { sCarry[(1u - par) * ${DB}u + c][n4] = Pi * carry + Si; }
      }
    }
    ${perItem(
      (i) => `if (vd && t0 + ${i}u < u.T) {
        let o = chanIdx(b, t0 + ${i}u, d);
        var v = y${i};
        if (HAS_Z) { v = v * silu_(z[o]); }
        out[o] = v;
      }`,
    )}
  }
  if (HAS_OUT) {
    workgroupBarrier();
    let par = ntiles & 1u;
    for (var q = lane; q < NQ; q += L) {
      if (vd) { writeOut4((b * u.Dc + d) * u.N, sCarry[par * ${DB}u + c][q], q); }
    }
  }
}
`;
}

/** The buffers every one-pass forward binds (unused optional ones are placeholders). */
export interface ScanForwardBuffers {
  out: S;
  ckpt: Buf;
  stateOut: Buf;
  u: S;
  dt: S;
  Bm: S;
  Cm: S;
  z: Buf;
  stateIn: Buf;
  params: Buf;
}

/**
 * WGSL reads of B/C quad q (states 4q .. 4q + 3) of the row at `r`: a vec4 index into vec4 rows
 * when vecBC (N a multiple of 4), else a float index, with states past N read as 0.
 */
export function bcQuadsWgsl(vecBC: boolean): string {
  return vecBC
    ? `// B/C quad q of the row starting at vec4 index r
fn bq(r: u32, q: u32) -> vec4<f32> { return Bm[r + q]; }
fn cq(r: u32, q: u32) -> vec4<f32> { return Cm[r + q]; }`
    : `// B/C quad q of the row starting at float index r (states past N read as 0)
fn bq(r: u32, q: u32) -> vec4<f32> {
  var v = vec4<f32>(0.0);
  for (var k = 0u; k < 4u; k++) { if (q * 4u + k < u.N) { v[k] = Bm[r + q * 4u + k]; } }
  return v;
}
fn cq(r: u32, q: u32) -> vec4<f32> {
  var v = vec4<f32>(0.0);
  for (var k = 0u; k < 4u; k++) { if (q * 4u + k < u.N) { v[k] = Cm[r + q * 4u + k]; } }
  return v;
}`;
}

/**
 * Launch a one-pass forward kernel (this file's or scan_block.ts's): both bind the same buffers
 * in the same order, B/C as vec4 rows when N is a multiple of 4; `body(vecBC)` is its WGSL.
 */
export function launchScanForwardKernel(
  ctx: GpuContext,
  cacheKey: string,
  label: string,
  subgroups: boolean,
  body: (vecBC: boolean) => string,
  shape: { B: number; N: number; nblk: number },
  bufs: ScanForwardBuffers,
  uniforms: [string, "u32" | "f32"][],
  uniformValues: number[],
): void {
  const vecBC = shape.N % 4 === 0;
  const bc = vecBC ? "array<vec4<f32>>" : "array<f32>";
  launch(
    ctx,
    `${cacheKey}:${+vecBC}`,
    () => ({
      label,
      uniforms,
      bindings: [
        ["out", "write", "array<f32>"], ["ckpt", "write", "array<f32>"], ["stateOut", "write", "array<f32>"], ["uu", "read", "array<f32>"],
        ["dt", "read", "array<f32>"], ["Bm", "read", bc], ["Cm", "read", bc], ["z", "read", "array<f32>"], ["stateIn", "read", "array<f32>"],
        ["params", "read", "array<f32>"],
      ],
      enables: subgroups ? ["subgroups"] : [],
      body: body(vecBC),
    }),
    [bufs.out, bufs.ckpt, bufs.stateOut, bufs.u, bufs.dt, bufs.Bm, bufs.Cm, bufs.z, bufs.stateIn, bufs.params],
    uniformValues,
    [shape.nblk, shape.B],
  );
}

/** Record the forward: `decl` is scan_core.ts's shared WGSL for this shape and flags. */
export function dispatchScanForward(
  ctx: GpuContext,
  plan: ScanForwardPlan,
  key: string,
  tag: string,
  decl: string,
  shape: { B: number; N: number; nblk: number },
  bufs: ScanForwardBuffers,
  uniforms: [string, "u32" | "f32"][],
  uniformValues: number[],
): void {
  const cacheKey = `${tag}:fwd:${key}:${plan.L}:${plan.I}:${plan.DB}:${plan.NS}`;
  launchScanForwardKernel(ctx, cacheKey, `${tag}:fwd`, plan.L > 1, (vecBC) => `${decl}${scanForwardWgsl(plan, shape.N, vecBC)}`, shape, bufs, uniforms, uniformValues);
}
