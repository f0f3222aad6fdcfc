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
 * Measured (H100, bench/notes/gpu-tuning.md, "warp-specialized"): 2.34 ms at B = 1, T = 64k
 * (CW 8, S 4, TT 32, 128 stagers, PF 1), against the look-back kernel's 2.07; 0.92 against 1.02
 * ms at B = 8, T = 4096. Walkers alone took 1.8 ms and stagers alone 2.7 (timing-only ablations,
 * X): both sides are latency-bound, so it is a variant (--variants), not a default.
 *
 * Dead steps past T have step and input 0 (h unchanged: exp2(0) = 1) and B, C 0; padding states
 * (n >= N) have A = 0 and B = C = 0, so their v is 0. Tiles past the last are walked dead, so
 * that the loop (lcm(2, PF + 1) tiles a trip, for constant array parities and register slots)
 * needs no branch around a barrier.
 * Checkpoints (the state every `chunk` steps, for scan_backward.ts) are written by the walkers as
 * their states pass by: once a tile when TT divides `chunk`.
 */
import { SeqlabError } from "../../util/errors.js";
import type { GpuContext } from "./context.js";
import { pow2 } from "./kit.js";
import { bcQuadsWgsl, launchScanForwardKernel, type ScanForwardBuffers } from "./scan_forward.js";

/** Channels a workgroup, states a walker, steps a tile, stager threads. */
export interface ScanSpecializedPlan {
  kind: "specialized";
  CW: number;
  S: 1 | 2 | 4;
  TT: number;
  SW: number;
  /** tiles of loads in flight beyond the one staged (0 to 3) */
  PF?: number;
  /** timing only, wrong results: only the walkers ("walk") or only the stagers ("stage") work */
  X?: "walk" | "stage";
}

export function scanSpecializedName(p: ScanSpecializedPlan): string {
  return `ws CW${p.CW} S${p.S} TT${p.TT} SW${p.SW}${p.PF ? ` PF${p.PF}` : ""}${p.X ? ` X${p.X}` : ""}`;
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

const seq = (n: number) => [...Array(n).keys()];

/** WGSL of the kernel, after scan_core.ts's shared declarations. */
function scanSpecializedWgsl(p: ScanSpecializedPlan, N: number, vecBC: boolean, groupCkpt: boolean): string {
  const { CW, S, TT, SW } = p;
  const PF = p.PF ?? 0;
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
  const bc = bcQuadsWgsl(vecBC);
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
  // The workgroup reads of a block of 4 steps are written before the previous block's product
  // store: the compiler keeps workgroup loads and stores in program order (it cannot tell the
  // arrays apart), so this is what lets a block's reads overlap the block before it.
  const walk = (par: number) => {
    const reads = (q: number) =>
      [
        ...[2 * q, 2 * q + 1].map((j) => `let p${j} = sDU[duB + ${par * CW * HTP + j}u];`),
        ...seq(4).map((m) => `let b${4 * q + m} = sB[bcB + ${par * LC * TTP + 4 * q + m}u];\n      let c${4 * q + m} = sC[bcB + ${par * LC * TTP + 4 * q + m}u];`),
      ].join("\n      ");
    const lines: string[] = [reads(0)];
    for (let q = 0; q < TT / 4; q++) {
      for (let m = 0; m < 4; m++) {
        const t = 4 * q + m;
        const j = t >> 1;
        const [dl, du] = t % 2 === 0 ? [`p${j}.x`, `p${j}.y`] : [`p${j}.z`, `p${j}.w`];
        lines.push(`h = fma(exp2(${dl} * a), h, ${du} * b${t});`);
        lines.push(`v[${m}] = ${S === 1 ? `c${t} * h` : `dot(c${t}, h)`};`);
        if (!groupCkpt) lines.push(ckptAt(`(t0 + ${t + 1}u)`));
      }
      if (q + 1 < TT / 4) lines.push(reads(q + 1));
      lines.push(`sRed[redB + ${(par * CW * CS) / 4 + q}u] = v;`);
    }
    if (groupCkpt) lines.push(ckptAt(`(t0 + ${TT}u)`));
    return lines.join("\n      ");
  };

  // stagers: raw inputs of tile `ti` into the registers of slot `sl`. The staging that reads them
  // is one branch-free block: NVIDIA's compiler sinks a global load into the block of its first
  // use, so loads followed by branchy code (softplus, the guarded stores) ended up issued one
  // element at a time, a memory round trip each. With PF > 0 a tile's loads are issued PF barrier
  // intervals before it is staged. (Relaxed atomic loads, which a compiler keeps in place, were
  // 7-18% slower than these: bench/notes/gpu-tuning.md.)
  const quad = (buf: string, r: string, q: string) => `${buf === "Bm" ? "bq" : "cq"}(${vecBC ? `${r} / 4u` : r}, ${q})`;
  const load = (sl: number, ti: string) =>
    [
      ...seq(EP).map(
        (k) => `{
      let tt = ${ti} * ${TT}u + eT${k};
      rd${sl}_${k} = dt[dtIdx(b, tt, eD${k})];
      rx${sl}_${k} = uu[chanIdx(b, tt, eD${k})];
      if (HAS_Z) { rz${sl}_${k} = z[chanIdx(b, tt, eD${k})]; }
    }`,
      ),
      ...seq(UP).map(
        (k) => `{
      let r = bcIdx(b, ${ti} * ${TT}u + uT${k}, d0);
      rb${sl}_${k} = ${quad("Bm", "r", `uQ${k}`)};
      rc${sl}_${k} = ${quad("Cm", "r", `uQ${k}`)};
    }`,
      ),
    ].join("\n    ");
  // ... and from slot `sl` into the arrays of parity `par`: (step, step u) pairs, B/C laid out by
  // walker lane; each element's skip term and gate go to the `next` registers
  const lanesOfQuad = (v: string, t: string, arr: string, par: number, k: number) =>
    seq(4 / Math.min(S, 4))
      .map((m) => {
        const lane = `(uQ${k} * ${4 / S}u + ${m}u)`;
        const val = S === 4 ? v : S === 2 ? `${v}.${m === 0 ? "xy" : "zw"}` : `${v}[${m}]`;
        return `${arr}[${par * LC * TTP}u + ${lane} * ${TTP}u + ${t}] = ${val};`;
      })
      .join("\n      ");
  const stage = (sl: number, ti: string, par: number) =>
    [
      ...seq(EP).map((k) =>
        guard(`eOk${k}`, always(k, SW, E), `let tt = ${ti} * ${TT}u + eT${k};
      let live = tt < u.T && eCv${k};
      let dl = select(0.0, stepSel_(rd${sl}_${k} + eBias${k}), live);
      let du = select(0.0, dl * rx${sl}_${k}, live);
      sDU[${par * CW * HTP}u + eC${k} * ${HTP}u + eT${k} / 2u][(eT${k} & 1u) * 2u] = dl;
      sDU[${par * CW * HTP}u + eC${k} * ${HTP}u + eT${k} / 2u][(eT${k} & 1u) * 2u + 1u] = du;
      ny${k} = eDs${k} * rx${sl}_${k};
      ng${k} = 1.0;
      if (HAS_Z) { ng${k} = rz${sl}_${k} * sigmoidSel_(rz${sl}_${k}); }`),
      ),
      ...seq(UP).map((k) =>
        guard(`uOk${k}`, always(k, SW, UNITS), `let l = ${ti} * ${TT}u + uT${k} < u.T && uQ${k} * 4u < u.N;
      let bv = select(vec4<f32>(0.0), rb${sl}_${k}, l);
      let cv = select(vec4<f32>(0.0), rc${sl}_${k}, l);
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

  // Copy k of a trip runs tile ti = i + k: array parity k mod 2, and the raw inputs of tile t in
  // slot t mod NS (NS = PF + 1 slots; a trip is lcm(2, NS) copies, so both are constants). The
  // stagers stage tile ti + 1 from its slot and load tile ti + 1 + PF into the slot tile ti left.
  const NS = PF + 1;
  const U = NS % 2 === 0 ? NS : 2 * NS;
  const stagerWork = (k: number) =>
    PF
      ? `${stage((k + 1) % NS, "(ti + 1u)", 1 - (k % 2))}
    ${load(k % NS, `(ti + ${1 + PF}u)`)}`
      : `${load(0, "(ti + 1u)")}
    ${stage(0, "(ti + 1u)", 1 - (k % 2))}`;
  const body = (k: number) => `{
    let ti = i + ${k}u;
    if (lid < ${W}u) {
      let t0 = ti * ${TT}u;
      ${p.X === "stage" ? "" : walk(k % 2)}
    } else {
    ${p.X === "walk" ? "" : stagerWork(k)}
      if (ti > 0u) {
    ${p.X === "walk" ? "" : epilogue("(ti - 1u)", 1 - (k % 2))}
      }
    ${rotate}
    }
    workgroupBarrier();
  }`;
  const slots = seq(PF + 1)
    .map((sl) =>
      [
        ...seq(EP).map((k) => `var rd${sl}_${k} = 0.0; var rx${sl}_${k} = 0.0; var rz${sl}_${k} = 0.0;`),
        ...seq(UP).map((k) => `var rb${sl}_${k} = vec4<f32>(0.0); var rc${sl}_${k} = vec4<f32>(0.0);`),
      ].join("\n  "),
    )
    .join("\n  ");

  return /* wgsl */ `
${bc}
// stepOf and sigmoid_ without branches, for the stagers' one block (see \`load\`)
fn stepSel_(v: f32) -> f32 {
  var s = v;
  if (SOFTPLUS) { s = select(max(v, 0.0) + log1p01_(exp(-abs(v))), v, v > 20.0); }
  if (CLAMP) { s = min(max(s, u.dtMin), u.dtMax); }
  return s;
}
fn sigmoidSel_(x: f32) -> f32 {
  let e = exp(-abs(x));
  let r = 1.0 / (1.0 + e);
  return select(e * r, r, x >= 0.0);
}
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

  // walker (c, lane): S states of channel d, n = lane S .. lane S + S - 1
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
  var py${k} = 0.0; var pg${k} = 0.0; var cy${k} = 0.0; var cg${k} = 0.0; var ny${k} = 0.0; var ng${k} = 0.0;`,
    )
    .join("\n  ")}
  ${seq(UP)
    .map(
      (k) => `let uT${k} = (sid + ${k * SW}u) / ${NQ}u;
  let uQ${k} = (sid + ${k * SW}u) % ${NQ}u;
  let uOk${k} = sid + ${k * SW}u < ${UNITS}u;
`,
    )
    .join("\n  ")}

  ${slots}

  // tile 0 staged before the first trip (and with PF, tile 1 loaded)
  if (lid >= ${W}u) {
    ${load(0, "0u")}
    ${stage(0, "0u", 0)}
    ${seq(PF)
      .map((t) => load(t + 1, `${t + 1}u`))
      .join("\n    ")}
    ${seq(EP)
      .map((k) => `cy${k} = ny${k}; cg${k} = ng${k};`)
      .join(" ")}
  }
  workgroupBarrier();
  for (var i = 0u; i <= ntiles; i += ${U}u) {
  ${seq(U)
    .map((k) => body(k))
    .join("\n  ")}
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
  if (TT % 4 !== 0 || TT < 4 || CW < 1 || SW < 1 || ![1, 2, 4].includes(S) || ![0, 1, 2, 3].includes(plan.PF ?? 0)) {
    throw new SeqlabError(`webgpu: scan plan ${scanSpecializedName(plan)}: steps a tile must be a multiple of 4, states a walker 1, 2 or 4, tiles loaded ahead 0 to 3, channels and stagers at least 1`);
  }
  const groupCkpt = shape.chunk % TT === 0;
  const cacheKey = `${tag}:fwdws:${key}:${CW}:${S}:${TT}:${SW}:${plan.PF ?? 0}:${plan.X ?? ""}:${+groupCkpt}`;
  launchScanForwardKernel(ctx, cacheKey, `${tag}:fwdws`, false, (vecBC) => `${decl}${scanSpecializedWgsl(plan, shape.N, vecBC, groupCkpt)}`, shape, bufs, uniforms, uniformValues);
}
