/**
 * The fp32 attention forward on f16 tensor cores (subgroup matrices): FlashAttention-2's loop
 * (Dao 2023, Alg. 1) with each fp32 product taken as three f16 products (attention_split.ts), as
 * PyTorch's fp32 attention takes it as three TF32 ones (CUTLASS's OpMultiplyAddFastF32:
 * big x big + big x small + small x big).
 * Layouts as backend/ref/attention.ts: q, out (B, T, H, K); k, v (B, kvRows, G, K); lse (B, H, T).
 *
 * A workgroup: NW subgroups of 32 lanes, each owning 16 query rows (BM = 16 NW); keys in steps of
 * BN. A subgroup keeps its Q rows as 2 K/16 left matrices (hi, lo) for the whole loop and O as
 * K/16 f32 result matrices. Per step:
 *   K, V       the step's halves, loaded into registers one step ahead, stored to workgroup memory;
 *   S = Q K^T  3 products per 16 x 16 x 16 product, stored to the subgroup's scratch rows (a
 *              result matrix's elements are not addressable);
 *   m, l, P    lane (r, hf) takes the column pairs 4i + 2hf, 4i + 2hf + 1 of row r, scales them
 *              back by exact powers of two 2^-(e_q + e_k), masks (edge steps only) and keeps the
 *              row maximum m lazily: only when a row's scores pass m + 8 (log2 units) are m, l and
 *              O rescaled, so that P = exp2(s - m) <= 256 and after the first steps O rarely moves;
 *   O += P V   P written as f16 halves, loaded as left matrices, 3 products again;
 * and every `fold` steps O's accumulators are added into fp32 registers (the lane's half row) and
 * restart from zero: the tensor cores' f32 accumulation is not IEEE rounding (the alignment of
 * the addends truncates: Fasi et al. 2021) and its error grows with the number of steps it
 * accumulates (6e-5 relative at 16k keys without the fold, 2e-6 with fold 16 on an H200).
 *
 * What the driver makes of it (NVIDIA, read with scripts/gpu-sass.mjs; bench/notes/gpu-tuning.md,
 * "Tensor cores through WebGPU, part 3"): matrix loads from workgroup memory become LDSM only at
 * offsets it can prove 16-byte aligned, so every such load is at a constant offset (P's by a
 * branch on the subgroup, uniform to WGSL) and every workgroup variable is a multiple of 16 bytes
 * long (the driver places them in an order of its own). The grid runs query blocks fastest, so
 * the workgroups in flight together share a head's K and V in L2 (QC below).
 */
import type { AttentionDims } from "../kernels.js";
import type { GpuContext, KernelDef } from "./context.js";
import { grid1d } from "./context.js";
import type { GpuTensorBuffer } from "./pool.js";
import { INDEX, UNIFORMS, range, uniformValues } from "./attention_tiles.js";
import { COLMAX_ROWS, EXP_OF, LEFT, MMA_ENABLES, RESULT, RIGHT, colmaxDef, mma3, splitDef, splitRowsPerGroup } from "./attention_split.js";
import { zeroWords } from "./kit.js";
import { INF } from "./wgsl.js";

type S = GpuTensorBuffer;

/** query rows of one subgroup (the matrices' M) */
const ROWS = 16;
/** a row's maximum is moved only when its scores pass it by this much (log2 units): P <= 2^8 */
const RESCALE_MARGIN = 8;
/** halves of padding after each staged K / V row, and after each row of P */
const PAD = 8;
/** padded rows of the f32 scratch: 4 mod 32 floats, so that a warp's 64-bit pair reads hit 32 banks */
const scratchStride = (K: number, BN: number) => Math.max(BN, K) + 4;
const pStride = (BN: number) => BN + PAD;

export interface MmaTiles {
  /** subgroups per workgroup, 16 query rows each */
  NW: number;
  /** keys per step (a multiple of 16) */
  BN: number;
  /** O's accumulators are folded into fp32 registers every this many steps */
  fold: number;
  /**
   * query blocks are started in chunks of this many, longest first, every head's chunk before
   * the next chunk (0: one chunk: a head's blocks all before the next head's). One chunk keeps a
   * head's K and V in L2 but leaves the last heads' longest blocks for the end (at 16k rows a
   * longest block takes twice a head's share of the time); chunks spread them.
   */
  QC: number;
}

/**
 * Head sizes the kernel takes: whole 16 x 16 matrices, and at most 64 (the K and V copies of a
 * step live in K / 2 registers a thread; at 128 neither the registers nor 48 KiB suffice).
 */
export const mmaHeadOk = (K: number) => K % 16 === 0 && K <= 64;

/**
 * The tiles measured on an H200 (bench/notes/gpu-tuning.md) for T query rows: 4 subgroups (64
 * query rows), 32 keys a step, fold 16 (2e-6 at 16k keys; fold 8 1.4e-6 at 1% more time, fold
 * 32 3.8e-6 at 0.5% less, none 6e-5), query blocks in chunks of 64 (8k, 16k rows: 4-5% faster
 * than one chunk) or 128 from 32k (64k rows: 2% faster; 64 there was 1.5% slower); null where
 * the head size is not taken or the tiles do not fit `bytes` of workgroup memory.
 */
export function mmaTilesFor(K: number, bytes: number, T: number): MmaTiles | null {
  const c: MmaTiles = { NW: 4, BN: 32, fold: 16, QC: T >= 32768 ? 128 : 64 };
  return mmaHeadOk(K) && mmaBytes(c, K) <= bytes ? c : null;
}

export function mmaName(c: MmaTiles): string {
  return `mma f16x3 ${ROWS * c.NW}x${c.BN} fold${c.fold}${c.QC ? ` qc${c.QC}` : ""}`;
}

/** Workgroup bytes: f32 scratch rows, P's halves, the staged K and V halves, K's row scales, the rescale flag. */
export const mmaBytes = (c: MmaTiles, K: number) => 4 * c.NW * ROWS * scratchStride(K, c.BN) + 2 * c.NW * 2 * ROWS * pStride(c.BN) + 2 * 4 * c.BN * (K + PAD) + 4 * c.BN + 16;

const load = (type: string, major: "row_major" | "col_major", src: string, off: string, stride: string) => `subgroupMatrixLoad<${type}, ${major}>(&${src}, ${off}, ${stride})`;

export function mmaForwardDef(K: number, c: MmaTiles): KernelDef {
  const { NW, BN, fold } = c;
  const THREADS = 32 * NW;
  const PS = pStride(BN);
  const DC = K / 16; // 16-wide head chunks
  const KT = BN / 16; // 16-key tiles a step
  const SS = scratchStride(K, BN);
  const KS = K + PAD;
  const HK = K / 2; // output columns per lane
  const PAIRS = BN / 4; // score pairs per lane
  const V8 = K / 8; // vec4<u32>s (8 halves) per head row
  const TILE_V4 = BN * V8; // vec4s of one staged tile
  const COPIES = (4 * TILE_V4) / THREADS; // staged vec4s per thread a step
  if (!mmaHeadOk(K) || BN % 16 !== 0 || !Number.isInteger(COPIES)) throw new Error(`internal: mma tiles ${JSON.stringify(c)} for head size ${K}`);
  // one f16 array holds P's halves (hi, lo per subgroup) and the four staged tiles (K hi, K lo,
  // V hi, V lo), every region at a multiple of 8 halves (16 bytes)
  const PB = NW * 2 * ROWS * PS;
  const TILE = BN * KS;
  const at = (tile: number) => PB + tile * TILE;
  const GLOBAL = ["kh", "kl", "vh", "vl"];

  // the lane's i-th of n columns: lanes 2r, 2r + 1 share row r (even / odd column pairs), and rows
  // 8-15 start one pair later, so that a warp's 32 lanes hit 32 banks
  const col = (i: number, n: number) => `(2u * ((${i}u + rot) % ${n}u) + hf)`;
  const toScratch = (m: (j: number) => string) => range(DC).map((j) => `subgroupMatrixStore<row_major>(&sS, sw + ${16 * j}u, ${m(j)}, ${SS}u);`).join("\n    ");

  // copy e: vec4 number lid + e THREADS of the step's four tiles; which tile is a constant where
  // a copy never straddles two
  const idx = (e: number) => `(lid + ${e * THREADS}u)`;
  const tileOf = (e: number) => (TILE_V4 % THREADS === 0 ? `${Math.floor((e * THREADS) / TILE_V4)}u` : `(${idx(e)} / ${TILE_V4}u)`);
  const within = (e: number) => `(${idx(e)} % ${TILE_V4}u)`;
  const prefetch = (kvX: string) =>
    range(COPIES)
      .map((e) => {
        const g = `(kvb + ${kvX} + ${within(e)} / ${V8}u) * ${V8}u + ${within(e)} % ${V8}u`;
        if (TILE_V4 % THREADS === 0) return `pre${e} = ${GLOBAL[Math.floor((e * THREADS) / TILE_V4)]}[${g}];`;
        return `{ let a = ${tileOf(e)}; let g = ${g}; if (a == 0u) { pre${e} = kh[g]; } else if (a == 1u) { pre${e} = kl[g]; } else if (a == 2u) { pre${e} = vh[g]; } else { pre${e} = vl[g]; } }`;
      })
      .join("\n    ");
  // (unpack2x16float: exact for halves; bitcast<vec2<f16>> compiled to the same code)
  const stage = range(COPIES)
    .map(
      (e) =>
        `{ let o = ${PB}u + ${tileOf(e)} * ${TILE}u + ${within(e)} / ${V8}u * ${KS}u + ${within(e)} % ${V8}u * 8u; ${range(4)
          .map((q) => `let h${q} = unpack2x16float(pre${e}[${q}]); sH[o + ${2 * q}u] = f16(h${q}.x); sH[o + ${2 * q + 1}u] = f16(h${q}.y);`)
          .join(" ")} }`,
    )
    .join("\n    ");

  // S = Q K^T, the key tiles' accumulators interleaved (independent chains)
  const scores = `${range(KT)
    .map((j) => `var s${j} = ${RESULT}();`)
    .join(" ")}
    ${range(DC)
      .map(
        (cc) => `{
      ${range(KT)
        .map(
          (j) => `{
        let kH = ${load(RIGHT, "col_major", "sH", `${at(0) + 16 * j * KS + 16 * cc}u`, `${KS}u`)};
        let kL = ${load(RIGHT, "col_major", "sH", `${at(1) + 16 * j * KS + 16 * cc}u`, `${KS}u`)};
        ${mma3(`s${j}`, `qH${cc}`, `qL${cc}`, "kH", "kL")}
      }`,
        )
        .join("\n      ")}
    }`,
      )
      .join("\n    ")}
    ${range(KT)
      .map((j) => `subgroupMatrixStore<row_major>(&sS, sw + ${16 * j}u, s${j}, ${SS}u);`)
      .join("\n    ")}`;

  // the lane's scores (column pairs 4i + 2hf, + 1 of row r), back in log2 units, masked on edge steps
  const rowScores = range(PAIRS)
    .map(
      (i) => `var x${2 * i} = sS[sRow + ${4 * i}u] * rs * sKs[kc2 + ${4 * i}u];
    var x${2 * i + 1} = sS[sRow + ${4 * i + 1}u] * rs * sKs[kc2 + ${4 * i + 1}u];`,
    )
    .join("\n    ")
    .concat(`
    if (edge) {
      ${range(PAIRS)
        .map((i) => `if (!visible(t, kv0 + kc2 + ${4 * i}u)) { x${2 * i} = -1.0e38; } if (!visible(t, kv0 + kc2 + ${4 * i + 1}u)) { x${2 * i + 1} = -1.0e38; }`)
        .join("\n      ")}
    }
    ${range(2 * PAIRS)
      .map((i) => `mx = max(mx, x${i});`)
      .join(" ")}`);
  const probabilities = range(PAIRS)
    .map(
      (i) => `{ let p0 = exp2(x${2 * i} - m); let p1 = exp2(x${2 * i + 1} - m); l += p0 + p1;
      let h0 = hiPart(p0); let h1 = hiPart(p1);
      sH[pRow + ${4 * i}u] = f16(h0); sH[pRow + ${4 * i + 1}u] = f16(h1);
      sH[pRow + ${ROWS * PS + 4 * i}u] = f16(p0 - h0); sH[pRow + ${ROWS * PS + 4 * i + 1}u] = f16(p1 - h1); }`,
    )
    .join("\n    ");

  // O += P V; P's matrices at constant offsets, one branch per subgroup
  const pLoads = (kc: number) => `var pH: ${LEFT}; var pL: ${LEFT};
      ${range(NW)
        .map(
          (w) =>
            `${w ? "else " : ""}if (warp == ${w}u) { pH = ${load(LEFT, "row_major", "sH", `${w * 2 * ROWS * PS + 16 * kc}u`, `${PS}u`)}; pL = ${load(LEFT, "row_major", "sH", `${w * 2 * ROWS * PS + 16 * PS + 16 * kc}u`, `${PS}u`)}; }`,
        )
        .join(" ")}`;
  const pv = range(KT)
    .map(
      (kc) => `{
      ${pLoads(kc)}
      ${range(DC)
        .map(
          (j) => `{
        let vH = ${load(RIGHT, "row_major", "sH", `${at(2) + 16 * kc * KS + 16 * j}u`, `${KS}u`)};
        let vL = ${load(RIGHT, "row_major", "sH", `${at(3) + 16 * kc * KS + 16 * j}u`, `${KS}u`)};
        ${mma3(`o${j}`, "pH", "pL", "vH", "vL")}
      }`,
        )
        .join("\n      ")}
    }`,
    )
    .join("\n    ");

  // O's accumulators through the subgroup's scratch rows into the lane's fp32 registers oR (its
  // HK columns of row r, as the epilogue writes them), then restarted from zero
  const foldO = `${toScratch((j) => `o${j}`)}
      workgroupBarrier();
      ${range(HK)
        .map((i) => `oR${i} += sS[sw + r * ${SS}u + ${col(i, HK)}];`)
        .join(" ")}
      ${range(DC)
        .map((j) => `o${j} = ${RESULT}();`)
        .join(" ")}`;

  return {
    label: `attentionForwardMma${K}`,
    uniforms: UNIFORMS,
    enables: MMA_ENABLES,
    bindings: [
      ["out", "write", "array<f32>"],
      ["lse", "write", "array<f32>"],
      ["qh", "read", "array<f16>"],
      ["ql", "read", "array<f16>"],
      ["qe", "read", "array<i32>"],
      ["kh", "read", "array<vec4<u32>>"],
      ["kl", "read", "array<vec4<u32>>"],
      ["ke", "read", "array<i32>"],
      ["vh", "read", "array<vec4<u32>>"],
      ["vl", "read", "array<vec4<u32>>"],
      ["vmax", "read", "array<u32>"],
    ],
    body: `
const HEAD = ${K}u;
${INDEX}${INF}${EXP_OF}
var<workgroup> sH: array<f16, ${PB + 4 * TILE}>;
var<workgroup> sS: array<f32, ${NW * ROWS * SS}>;
var<workgroup> sKs: array<f32, ${BN}>;
var<workgroup> grow: vec4<u32>; // a row's maximum moved (x; the rest pads it to 16 bytes)

@compute @workgroup_size(${THREADS})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32, @builtin(subgroup_id) sgid: u32, @builtin(subgroup_invocation_id) lane: u32) {
  let warp = sgid; // matrix offsets must be uniform: subgroup_id is, lid / 32 is not (to WGSL)
  let r = lane / 2u; // the lane's row of the subgroup's 16
  let hf = lane % 2u;
  let rot = r / 8u;
  // grid (rank in chunk, head, chunk + chunks x batch row): the longest causal blocks start first
  ${c.QC ? `let nChunks = (u.nBlocks + ${c.QC - 1}u) / ${c.QC}u;
  let rank = wid.z % nChunks * ${c.QC}u + wid.x;
  let b = wid.z / nChunks;` : `let rank = wid.x;
  let b = wid.z;`}
  if (rank >= u.nBlocks) { return; }
  let h = wid.y;
  let g = h / (u.H / u.G);
  let q0 = (u.nBlocks - 1u - rank) * ${ROWS * NW}u;
  let Tp = u.nBlocks * ${ROWS * NW}u;
  let Sp = (u.S + ${BN - 1}u) / ${BN}u * ${BN}u;
  let sw = warp * ${ROWS * SS}u;
  let qrow = (b * u.H + h) * Tp + q0 + warp * ${ROWS}u;
  let kvb = (b * u.G + g) * Sp;
  let t = q0 + warp * ${ROWS}u + r;
  let rs = exp2(f32(-qe[qrow + r]));
  let kc2 = 2u * hf;
  let sRow = sw + r * ${SS}u + kc2;
  let pRow = warp * ${2 * ROWS * PS}u + r * ${PS}u + kc2;
  ${range(DC)
    .map((cc) => `let qH${cc} = ${load(LEFT, "row_major", "qh", `qrow * HEAD + ${16 * cc}u`, "HEAD")}; let qL${cc} = ${load(LEFT, "row_major", "ql", `qrow * HEAD + ${16 * cc}u`, "HEAD")};`)
    .join("\n  ")}
  ${range(DC)
    .map((j) => `var o${j} = ${RESULT}();`)
    .join(" ")}
  ${range(HK)
    .map((i) => `var oR${i} = 0.0;`)
    .join(" ")}
  var m = -1.0e30;
  var l = 0.0;
  var kvEnd = i32(u.S);
  if (u.causal != 0u) { kvEnd = clamp(u.qOffset + i32(q0) + ${ROWS * NW}, 0, i32(u.S)); }
  let nTiles = (u32(kvEnd) + ${BN - 1}u) / ${BN}u;
  if (lid == 0u) { grow.x = 0u; }
  ${range(COPIES)
    .map((e) => `var pre${e}: vec4<u32>;`)
    .join(" ")}
  if (nTiles > 0u) {
    ${prefetch("0u")}
  }
  for (var tile = 0u; tile < nTiles; tile++) {
    let kv0 = tile * ${BN}u;
    workgroupBarrier(); // the last step's reads of the staged tiles are done
    ${stage}
    if (tile + 1u < nTiles) {
      ${prefetch(`kv0 + ${BN}u`)}
    }
    if (lid < ${BN}u) { sKs[lid] = exp2(f32(-ke[kvb + kv0 + lid])); }
    workgroupBarrier();
    // S = Q K^T (log2 units, times 2^(e_q + e_k))
    ${scores}
    workgroupBarrier();
    let edge = kv0 + ${BN}u > u.S || (u.causal != 0u && i32(kv0) + ${BN - 1} > u.qOffset + i32(q0));
    var mx = -1.0e38;
    ${rowScores}
    mx = max(mx, subgroupShuffleXor(mx, 1u));
    var corr = 1.0;
    if (mx > m + ${RESCALE_MARGIN}.0) {
      corr = exp2(m - mx);
      m = mx;
      l *= corr;
      if (tile > 0u) { grow.x = 1u; }
    }
    if (workgroupUniformLoad(&grow).x != 0u) {
      // O folded into the registers, which take the row's correction
      ${foldO}
      ${range(HK)
        .map((i) => `oR${i} *= corr;`)
        .join(" ")}
    }
    // P = exp2(s - m) <= 2^8, as f16 halves
    ${probabilities}
    workgroupBarrier();
    if (lid == 0u) { grow.x = 0u; }
    ${pv}
    if (tile % ${fold}u == ${fold - 1}u) {
      ${foldO}
    }
  }
  if (nTiles % ${fold}u != 0u) {
    ${foldO}
  }
  let lsum = l + subgroupShuffleXor(l, 1u);
  if (t < u.T) {
    let inv = select(1.0 / lsum, 0.0, lsum == 0.0);
    let ob = ((b * u.T + t) * u.H + h) * HEAD;
    let vb = (b * u.G + g) * HEAD;
    ${range(HK)
      .map((i) => `{ let cc = ${col(i, HK)}; out[ob + cc] = ldexp(oR${i}, -expOf(bitcast<f32>(vmax[vb + cc]))) * inv; }`)
      .join("\n    ")}
    if (hf == 0u) {
      lse[(b * u.H + h) * u.T + t] = select((m + log2(lsum)) * ${Math.LN2}, infinity_(-1.0), lsum == 0.0);
    }
  }
}
`,
  };
}

/**
 * Record the forward on tensor cores: Q, K, V split into f16 halves (five small dispatches, about
 * a 20th of the bytes the attention kernel reads at 16k rows), then the attention kernel.
 */
export function dispatchAttentionMma(ctx: GpuContext, c: MmaTiles, out: S, lse: S, q: S, k: S, v: S, d: AttentionDims): void {
  const { B, T, H, G, K } = d;
  if (B * T * H === 0) return;
  const BM = ROWS * c.NW;
  const nQB = Math.ceil(T / BM);
  const Tp = nQB * BM;
  const Sp = Math.ceil(d.S / c.BN) * c.BN;
  const acquire = (elems: number, bytes: number) => ctx.pool.acquire(Math.max(16, elems * bytes));
  const qh = acquire(B * H * Tp * K, 2);
  const ql = acquire(B * H * Tp * K, 2);
  const qe = acquire(B * H * Tp, 4);
  const kh = acquire(B * G * Sp * K, 2);
  const kl = acquire(B * G * Sp * K, 2);
  const ke = acquire(B * G * Sp, 4);
  const vh = acquire(B * G * Sp * K, 2);
  const vl = acquire(B * G * Sp * K, 2);
  const vmax = acquire(B * G * K, 4);
  const split = (mode: "row" | "col") => ctx.pipeline(`attentionSplit:${mode}:${K}`, () => splitDef(K, mode));
  const splitRows = (hi: GPUBuffer, lo: GPUBuffer, third: GPUBuffer, x: S, heads: number, rows: number, n: number, srcRows: number, scale: number, mode: "row" | "col") =>
    ctx.dispatch(split(mode), [hi, lo, third, x], [B, heads, rows, n, srcRows, scale], grid1d(B * heads * rows, splitRowsPerGroup(K)));
  splitRows(qh, ql, qe, q, H, Tp, T, T, d.scale * Math.LOG2E, "row");
  zeroWords(ctx, vmax, B * G * K);
  if (d.S > 0) {
    splitRows(kh, kl, ke, k, G, Sp, d.S, d.kvRows, 1, "row");
    ctx.dispatch(ctx.pipeline(`attentionColmax:${K}`, () => colmaxDef(K)), [vmax, v], [G, d.S, d.kvRows], [Math.ceil(d.S / COLMAX_ROWS), B * G]);
    splitRows(vh, vl, vmax, v, G, Sp, d.S, d.kvRows, 1, "col");
  }
  const p = ctx.pipeline(`attentionForwardMma:${K}:${c.NW}:${c.BN}:${c.fold}:${c.QC}`, () => mmaForwardDef(K, c));
  const chunk = c.QC ? Math.min(c.QC, nQB) : nQB;
  ctx.dispatch(p, [out, lse, qh, ql, qe, kh, kl, ke, vh, vl, vmax], uniformValues(d, nQB), [chunk, H, Math.ceil(nQB / chunk) * B]);
  for (const buf of [qh, ql, qe, kh, kl, ke, vh, vl, vmax]) ctx.pool.release(buf);
}

/** Every kernel of the tensor-core forward (tests compile them where no GPU runs them). */
export const mmaDefs = (K: number, c: MmaTiles): KernelDef[] => [mmaForwardDef(K, c), splitDef(K, "row"), splitDef(K, "col"), colmaxDef(K)];
