/**
 * The forward of both Mamba scans (scan_core.ts states the recurrence) in one walk over time with
 * specialized threads, the producer/consumer split of FlashAttention-3 and of CUTLASS's
 * warp-specialized kernels:
 *
 *   a workgroup owns CW channels of one batch row and walks the whole sequence in tiles of TT
 *   steps. Its first W = CW x LC threads are walkers: walker (c, l) holds S states of channel c
 *   (n = l S .. l S + S - 1) in registers, so every decay exp(step_t A[d, n]) is computed once
 *   and there is no second walk, no carry between chunks and no cross-lane scan:
 *       h = exp2(step_t A log2 e) h + (step_t u_t) B_t[n],      v_t = sum_s C_t[n] h
 *   The other SW threads are stagers. In the barrier interval in which the walkers run tile i,
 *   the stagers
 *     1. load tile i + 1's raw inputs from global memory (dt, u, z, and the B/C rows),
 *     2. finish tile i - 1: y_t[d] = (sum_l v_t[l] + Dskip u_t) silu(z_t), stored coalesced,
 *     3. compute tile i + 1's step nonlinearity (softplus, clamp) and step u once per (t, d), lay
 *        out its B/C rows a walker lane's states together, and keep its skip term and gate in
 *        registers for step 2 two intervals later;
 *   one barrier a tile orders it all (workgroup arrays double-buffered by tile parity).
 *
 * Why: a walker never touches global memory, so it never waits on it. A one-role kernel with a
 * thread per (channel, state) (scan_states.ts on branch scan-states; bench/notes/gpu-tuning.md)
 * was latency-bound at B = 1 because NVIDIA's Vulkan compiler sinks every global load to just
 * before its first use, so the software prefetch its walkers issued tiles ahead waited anyway,
 * every tile, with only six warps an SM to cover it. Here the wait is the stagers', and it runs
 * under the walkers' tile of work: a tile is as long as it takes the walkers to cover one memory
 * round trip.
 *
 * Dead steps past T have step and input 0 (h unchanged: exp2(0) = 1) and B, C 0; padding states
 * (n >= N) have A = 0 and B = C = 0, so their v is 0. Tiles past the last are walked dead, so
 * that the loop (two tiles a trip, for constant array parities) needs no branch around a barrier.
 * Checkpoints (the state every `chunk` steps, for scan_backward.ts) are written by the walkers as
 * their states pass by: once a tile when TT divides `chunk`.
 */
import { SeqlabError } from "../../util/errors.js";
import type { GpuContext } from "./context.js";
import { pow2 } from "./kit.js";
import { launchScanForwardKernel, type ScanForwardBuffers } from "./scan_forward.js";

/** Channels a workgroup, states a walker, steps a tile, stager threads. */
export interface ScanSpecializedPlan {
  kind: "specialized";
  CW: number;
  S: 1 | 2 | 4;
  TT: number;
  SW: number;
}

export function scanSpecializedName(p: ScanSpecializedPlan): string {
  return `ws CW${p.CW} S${p.S} TT${p.TT} SW${p.SW}`;
}

/** Workgroup arrays and strides of a plan for state size N (see `layoutOf`). */
interface Layout {
  /** states padded (at least one quad), walkers a channel, walkers, state quads */
  SP: number;
  LC: number;
  W: number;
  NQ: number;
  /** vec4s a channel's (step, step u) row (two steps a vec4), padded to an odd count */
  HTP: number;
  /** B or C values of one walker lane: TTP steps, padded to an odd count */
  TTP: number;
  /** products: words a (channel, lane) row and a channel */
  RS: number;
  CS: number;
  bytes: number;
}

/**
 * Strides chosen so that 32 consecutive threads hit distinct banks of 32 words: walkers read
 * their lanes' B/C rows (odd strides in units of the read), stagers read products at one lane
 * for 32 (channel, step) elements e -> (e mod CW, e / CW) (channel stride CS chosen by count),
 * walkers write products a vec4 of steps at a time along their lanes (RS / 4 odd).
 */
function layoutOf(p: ScanSpecializedPlan, N: number): Layout {
  const SP = Math.max(4, pow2(N), p.S);
  const LC = SP / p.S;
  const HT = p.TT / 2;
  const HTP = HT % 2 === 0 ? HT + 1 : HT;
  const TTP = p.TT % 2 === 0 ? p.TT + 1 : p.TT;
  const q = p.TT / 4;
  const RS = 4 * (q % 2 === 0 ? q + 1 : q);
  const conflicts = (CS: number) => {
    const banks = new Set<number>();
    for (let e = 0; e < 32; e++) banks.add(((e % p.CW) * CS + Math.floor(e / p.CW)) % 32);
    return 32 - banks.size;
  };
  let CS = LC * RS;
  for (let x = CS; x <= LC * RS + 28; x += 4) if (conflicts(x) < conflicts(CS)) CS = x;
  const bytes = 4 * (2 * p.CW * HTP * 4 + 2 * 2 * LC * TTP * p.S + 2 * p.CW * CS);
  return { SP, LC, W: p.CW * LC, NQ: SP / 4, HTP, TTP, RS, CS, bytes };
}

/** Threads and workgroup memory of a plan for state size N. */
export function scanSpecializedSize(p: ScanSpecializedPlan, N: number): { threads: number; bytes: number } {
  const l = layoutOf(p, N);
  return { threads: l.W + p.SW, bytes: l.bytes };
}

/**
 * The plan `want` on a device with these limits: steps a tile, then channels a workgroup, halved
 * until threads and memory fit; null when even one channel and tiles of four steps do not.
 */
export function fitScanSpecialized(N: number, lim: { bytes: number; invocations: number }, want: ScanSpecializedPlan): ScanSpecializedPlan | null {
  const p = { ...want };
  const fits = () => {
    const s = scanSpecializedSize(p, N);
    return s.threads <= lim.invocations && s.bytes <= lim.bytes;
  };
  while (!fits() && p.TT > 16) p.TT = Math.max(16, (p.TT >> 3) * 4);
  while (!fits() && p.CW > 1) p.CW = Math.max(1, p.CW >> 1);
  while (!fits() && p.TT > 4) p.TT = Math.max(4, (p.TT >> 3) * 4);
  return fits() ? p : null;
}

const seq = (n: number) => [...Array(n).keys()];

/** WGSL of the kernel, after scan_core.ts's shared declarations. */
function scanSpecializedWgsl(p: ScanSpecializedPlan, N: number, vecBC: boolean, groupCkpt: boolean): string {
  const { CW, S, TT, SW } = p;
  const L = layoutOf(p, N);
  const { LC, W, NQ, HTP, TTP, RS, CS } = L;
  const WG = W + SW;
  const E = CW * TT;
  const EP = Math.ceil(E / SW);
  const UNITS = TT * NQ;
  const UP = Math.ceil(UNITS / SW);
  const VS = S === 1 ? "f32" : `vec${S}<f32>`;
  const zero = `${VS}(0.0)`;
  const comp = (v: string, s: number) => (S === 1 ? v : `${v}[${s}]`);
  const bc = vecBC
    ? `// B/C quad q of the row starting at float index r
fn bq(r: u32, q: u32) -> vec4<f32> { return Bm[r / 4u + q]; }
fn cq(r: u32, q: u32) -> vec4<f32> { return Cm[r / 4u + q]; }`
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
  const always = (k: number, per: number, total: number) => (k + 1) * per <= total;
  const guard = (cond: string, ok: boolean, body: string) => (ok ? `{\n      ${body}\n    }` : `if (${cond}) {\n      ${body}\n    }`);

  // walkers: tile `ti` from the arrays of parity `par`, the chain of TT steps unrolled, products
  // written four steps a vec4
  const ckptAt = (te: string) => `if (HAS_CKPT && ${te} % u.chunk == 0u && ${te} < u.T) {
        let cb = ((b * u.K + ${te} / u.chunk) * u.Dc + d) * u.N;
        ${seq(S)
          .map((s) => `if (nOk${s}) { ckpt[cb + n${s}] = ${comp("h", s)}; }`)
          .join("\n        ")}
      }`;
  const walk = (par: number) => {
    const lines: string[] = [];
    for (let j = 0; j < TT / 2; j++) {
      lines.push(`let p${j} = sDU[duB + ${par * CW * HTP + j}u];`);
      for (const k of [0, 1]) {
        const t = 2 * j + k;
        const [dl, du] = k === 0 ? [`p${j}.x`, `p${j}.y`] : [`p${j}.z`, `p${j}.w`];
        lines.push(`h = fma(exp2(${dl} * a), h, ${du} * sB[bcB + ${par * LC * TTP + t}u]);`);
        lines.push(`v[${t % 4}] = ${S === 1 ? "" : "dot"}(sC[bcB + ${par * LC * TTP + t}u]${S === 1 ? " * " : ", "}h);`);
        if (!groupCkpt) lines.push(ckptAt(`(t0 + ${t + 1}u)`));
        if (t % 4 === 3) lines.push(`sRed[redB + ${(par * CW * CS + t - 3) / 4}u] = v;`);
      }
    }
    if (groupCkpt) lines.push(ckptAt(`(t0 + ${TT}u)`));
    return lines.join("\n      ");
  };

  // stagers: raw inputs of tile `ti` into registers (never under a branch: a load inside one is
  // merged with the register's old value where the branch ends, and that copy waits for it)
  const load = (ti: string) =>
    [
      ...seq(EP).map(
        (k) => `{
      let tt = ${ti} * ${TT}u + eT${k};
      rd${k} = dt[dtIdx(b, tt, eD${k})];
      rx${k} = uu[chanIdx(b, tt, eD${k})];
      if (HAS_Z) { rz${k} = z[chanIdx(b, tt, eD${k})]; }
    }`,
      ),
      ...seq(UP).map(
        (k) => `{
      let r = bcIdx(b, ${ti} * ${TT}u + uT${k}, d0);
      rb${k} = bq(r, uQ${k});
      rc${k} = cq(r, uQ${k});
    }`,
      ),
    ].join("\n    ");
  // ... and into the arrays of parity `par`: (step, step u) pairs, B/C laid out by walker lane;
  // each element's skip term and gate go to the `next` registers
  const lanesOfQuad = (v: string, t: string, arr: string, par: number, k: number) =>
    seq(4 / Math.min(S, 4))
      .map((m) => {
        const lane = `(uQ${k} * ${4 / S}u + ${m}u)`;
        const val = S === 4 ? v : S === 2 ? `${v}.${m === 0 ? "xy" : "zw"}` : `${v}[${m}]`;
        return `${arr}[${par * LC * TTP}u + ${lane} * ${TTP}u + ${t}] = ${val};`;
      })
      .join("\n      ");
  const stage = (ti: string, par: number) =>
    [
      ...seq(EP).map((k) =>
        guard(`eOk${k}`, always(k, SW, E), `let tt = ${ti} * ${TT}u + eT${k};
      let live = tt < u.T && eCv${k};
      let dl = select(0.0, stepOf(rd${k} + eBias${k}), live);
      let du = select(0.0, dl * rx${k}, live);
      let o = ${par * CW * HTP}u + eC${k} * ${HTP}u + eT${k} / 2u;
      sDU[o][(eT${k} & 1u) * 2u] = dl;
      sDU[o][(eT${k} & 1u) * 2u + 1u] = du;
      ny${k} = eDs${k} * rx${k};
      ng${k} = 1.0;
      if (HAS_Z) { ng${k} = silu_(rz${k}); }`),
      ),
      ...seq(UP).map((k) =>
        guard(`uOk${k}`, always(k, SW, UNITS), `let l = ${ti} * ${TT}u + uT${k} < u.T && uQ${k} * 4u < u.N;
      let bv = select(vec4<f32>(0.0), rb${k}, l);
      let cv = select(vec4<f32>(0.0), rc${k}, l);
      ${lanesOfQuad("bv", `uT${k}`, "sB", par, k)}
      ${lanesOfQuad("cv", `uT${k}`, "sC", par, k)}`),
      ),
    ].join("\n    ");
  // tile `ti`'s outputs from the products of parity `par`: the sum over the channel's lanes, skip, gate
  const epilogue = (ti: string, par: number) =>
    seq(EP)
      .map((k) =>
        guard(`eOk${k}`, always(k, SW, E), `let tt = ${ti} * ${TT}u + eT${k};
      let w = ${par * CW * CS}u + eC${k} * ${CS}u + eT${k};
      ${seq(4)
        .map((j) => `var s${j} = 0.0;`)
        .join(" ")}
      ${seq(LC)
        .map((l) => `s${l % 4} += sRed[(w + ${l * RS}u) / 4u][(w + ${l * RS}u) % 4u];`)
        .join("\n      ")}
      let y = ((s0 + s1) + (s2 + s3) + py${k}) * pg${k};
      if (tt < u.T && eCv${k}) { out[chanIdx(b, tt, eD${k})] = y; }`),
      )
      .join("\n    ");
  const rotate = seq(EP)
    .map((k) => `py${k} = cy${k}; pg${k} = cg${k}; cy${k} = ny${k}; cg${k} = ng${k};`)
    .join("\n    ");

  // one trip's copy for tile ti = i + par
  const body = (par: number) => `{
    let ti = i + ${par}u;
    if (lid < ${W}u) {
      let t0 = ti * ${TT}u;
      ${walk(par)}
    } else {
      ${load("(ti + 1u)")}
      if (ti > 0u) {
    ${epilogue("(ti - 1u)", 1 - par)}
      }
    ${stage("(ti + 1u)", 1 - par)}
    ${rotate}
    }
    workgroupBarrier();
  }`;

  return /* wgsl */ `
${bc}
// (step, step u) of two steps a vec4: [parity][channel][pair]; B and C: [parity][walker lane][step];
// products: [parity][channel][walker lane][step] (strides: layoutOf)
var<workgroup> sDU: array<vec4<f32>, ${2 * CW * HTP}>;
var<workgroup> sB: array<${VS}, ${2 * LC * TTP}>;
var<workgroup> sC: array<${VS}, ${2 * LC * TTP}>;
var<workgroup> sRed: array<vec4<f32>, ${(2 * CW * CS) / 4}>;

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let b = wid.y;
  let seg = u.Dc / u.G;
  let g = wid.x / u.bps;
  let dl0 = (wid.x % u.bps) * ${CW}u;
  let d0 = g * seg + dl0;
  let ntiles = (u.T + ${TT - 1}u) / ${TT}u;

  // walker (c, l): S states of channel d from state n0
  let c = min(lid / ${LC}u, ${CW - 1}u);
  let lane = lid % ${LC}u;
  let d = d0 + c;
  let cOk = lid < ${W}u && dl0 + c < seg;
  var a = ${zero};
  var h = ${zero};
  ${seq(S)
    .map((s) => `let n${s} = lane * ${S}u + ${s}u;
  let nOk${s} = cOk && n${s} < u.N;
  if (nOk${s}) {
    ${S === 1 ? "a" : `a[${s}]`} = aOf(d, n${s}) * LOG2E;
    if (HAS_IN) { ${comp("h", s)} = stateIn[(b * u.Dc + d) * u.N + n${s}]; }
    if (HAS_CKPT) { ckpt[((b * u.K) * u.Dc + d) * u.N + n${s}] = ${comp("h", s)}; }
  }`)
    .join("\n  ")}
  let duB = c * ${HTP}u;
  let bcB = lane * ${TTP}u;
  let redB = (c * ${CS}u + lane * ${RS}u) / 4u;
  var v = vec4<f32>(0.0);

  // stager: elements e = sid + k SW of a tile's TT x CW grid (channel e mod CW, step e / CW), and
  // B/C units f = sid + k SW (step f / NQ, state quad f mod NQ)
  let sid = max(lid, ${W}u) - ${W}u;
  ${seq(EP)
    .map(
      (k) => `let eC${k} = (sid + ${k * SW}u) % ${CW}u;
  let eT${k} = (sid + ${k * SW}u) / ${CW}u;
  let eOk${k} = sid + ${k * SW}u < ${E}u;
  let eD${k} = d0 + eC${k};
  let eCv${k} = dl0 + eC${k} < seg;
  let eDs${k} = select(0.0, dskipOf(eD${k}), eCv${k});
  let eBias${k} = select(0.0, biasOf(eD${k}), eCv${k});
  var rd${k} = 0.0; var rx${k} = 0.0; var rz${k} = 0.0;
  var py${k} = 0.0; var pg${k} = 0.0; var cy${k} = 0.0; var cg${k} = 0.0; var ny${k} = 0.0; var ng${k} = 0.0;`,
    )
    .join("\n  ")}
  ${seq(UP)
    .map(
      (k) => `let uT${k} = (sid + ${k * SW}u) / ${NQ}u;
  let uQ${k} = (sid + ${k * SW}u) % ${NQ}u;
  let uOk${k} = sid + ${k * SW}u < ${UNITS}u;
  var rb${k} = vec4<f32>(0.0); var rc${k} = vec4<f32>(0.0);`,
    )
    .join("\n  ")}

  // tile 0 staged before the first trip
  if (lid >= ${W}u) {
    ${load("0u")}
    ${stage("0u", 0)}
    ${seq(EP)
      .map((k) => `cy${k} = ny${k}; cg${k} = ng${k};`)
      .join(" ")}
  }
  workgroupBarrier();
  for (var i = 0u; i <= ntiles; i += 2u) {
  ${body(0)}
  ${body(1)}
  }
  if (HAS_OUT) {
    ${seq(S)
      .map((s) => `if (nOk${s}) { stateOut[(b * u.Dc + d) * u.N + n${s}] = ${comp("h", s)}; }`)
      .join("\n    ")}
  }
}
`;
}

/** Record the forward: `decl` is scan_core.ts's shared WGSL for this shape and flags. */
export function dispatchScanSpecialized(
  ctx: GpuContext,
  plan: ScanSpecializedPlan,
  key: string,
  tag: string,
  decl: string,
  shape: { B: number; N: number; nblk: number; chunk: number },
  bufs: ScanForwardBuffers,
  uniforms: [string, "u32" | "f32"][],
  uniformValues: number[],
): void {
  const { CW, S, TT, SW } = plan;
  if (TT % 4 !== 0 || TT < 4 || CW < 1 || SW < 1 || ![1, 2, 4].includes(S)) {
    throw new SeqlabError(`webgpu: scan plan ${scanSpecializedName(plan)}: steps a tile must be a multiple of 4, states a walker 1, 2 or 4, channels and stagers at least 1`);
  }
  const groupCkpt = shape.chunk % TT === 0;
  const cacheKey = `${tag}:fwdws:${key}:${CW}:${S}:${TT}:${SW}:${+groupCkpt}`;
  launchScanForwardKernel(ctx, cacheKey, `${tag}:fwdws`, false, (vecBC) => `${decl}${scanSpecializedWgsl(plan, shape.N, vecBC, groupCkpt)}`, shape, bufs, uniforms, uniformValues);
}
