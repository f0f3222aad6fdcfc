/**
 * The FlashAttention-2 forward (Dao 2023, Alg. 1) as a register-blocked SIMT kernel in WGSL.
 * Layouts as backend/ref/attention.ts: q, out (B, T, H, K); k, v (B, kvRows, G, K); lse (B, H, T).
 *
 * A workgroup owns BM query rows of head h of sequence b and streams the keys in steps of BN:
 *   S = Q K^T      thread (ty, tx) computes the RM x RN scores of its rows ty + TY i and keys
 *                  tx + TX j as fma chains over vec4 head columns of row-major Q and K tiles
 *                  (Q loaded once, pre-multiplied by scale * log2(e), so that probabilities
 *                  are exp2(s - m));
 *   m, l, P        the row maximum is combined across the TX threads of a row (subgroup
 *                  shuffles, or workgroup memory where subgroups are narrower than TX); the
 *                  running m and partial row sums l stay in those threads' registers;
 *   O += P V       P goes to workgroup memory key-major (Pt[key][four rows]), and the same thread
 *                  accumulates O for its rows over head columns tx, tx + TX, ... (vec4s).
 * The next step's K and V tiles are fetched into registers while the current one computes, so a
 * step has two barriers (three with the workgroup-memory maximum). Causal blocks stop at the
 * last key the block's last query sees, and only steps that cross the diagonal (or the end of
 * the keys) apply the mask. The longest causal blocks are dispatched first (with hx: those of
all heads, before any shorter block).
 *
 * Options (ForwardTiles): P need not go through workgroup memory ("shfl": each thread fetches
 * the probabilities of its rows from the lanes that computed them, one subgroup shuffle per row
 * and key), or can take K's memory once S is done ("alias"); V can overwrite K in one tile
 * (kvShared: two barriers more a step, and the room for 128-query blocks); tiles can be unpadded
 * with the vec4 columns XOR-swizzled by row (swz), and the next tile's loads held in registers
 * or not (pf). Workgroups can run over heads first (hx). Six more options measured slower on
 * an H200 (db, tr, rs, fl, xor, pr: bench/notes/gpu-tuning.md) are in commit 7bd9712, not here.
 *
 * On an H200 (Dawn, Vulkan; bench-gpu --variants, 2026-11-27) the fastest for K = 64 is the
 * 128 x 64 block with 8 x 8 scores and 8 rows x 8 columns of O per thread (128 threads), P
 * shuffled, K and V in one swizzled tile, no register prefetch: 48 KiB exactly, about a quarter
 * float of workgroup memory (or shuffle) per multiply-add, against a half for the 64 x 32 block
 * with 4 x 4 scores and 4 x 8 outputs (the default before; still the one for larger heads and
 * short T). The driver gives it 248 registers a thread (the header of its entry in the shader
 * disk cache; no spills), 2 workgroups an SM: every option that keeps more values live (a prefetch
 * held in registers and the six options above: 254-255 registers) ran 1-28% slower, and 64-thread
 * workgroups ran at half speed (bench/notes/gpu-tuning.md). Up to 16k rows the longest blocks of
 * all heads go first (hx): 1.29x at T = 4k, where 32 blocks a head left a tail.
 */
import type { KernelDef } from "./context.js";
import type { TileShape } from "./attention_tiles.js";
import { INDEX, UNIFORMS, arr, kv4, range, rowAccess, threadsOf, tileCopy } from "./attention_tiles.js";
import { INF } from "./wgsl.js";

export interface ForwardTiles extends TileShape {
  /**
   * combine row maxima and sums with subgroup shuffles: needs subgroups of at least TX lanes,
   * and assumes lanes are consecutive local invocation indices (so on NVIDIA, AMD, Intel and
   * SwiftShader; on the H200 the bench's checks against ref confirm it)
   */
  shuffle: boolean;
  /**
   * where the probabilities go for O += P V: "wg" (default) a workgroup tile of their own;
   * "alias" the K tile's workgroup memory once S is done (a barrier more per step); "shfl" no
   * workgroup memory: each thread fetches its rows' probabilities of each key from the lane that
   * computed them with a subgroup shuffle (needs `shuffle`)
   */
  pv?: "wg" | "alias" | "shfl";
  /** V overwrites K in workgroup memory once S is done: one tile for both (two barriers more) */
  kvShared?: boolean;
  /** unpadded tiles, the vec4 column c of row r stored at c ^ (r & 7) (no bank conflicts, less memory) */
  swz?: boolean;
  /**
   * loads in flight while the step computes (default true): the next tile's K and V, or with
   * kvShared this tile's V during S and the next K during P V; "k" or "v" only those of K or V;
   * "b" (kvShared) none held across compute, but V's loads issued before the barrier after S
   */
  pf?: boolean | "k" | "v" | "b";
  /**
   * Q read from global memory (through the cache) in the S loop instead of a workgroup tile:
   * frees BM x K floats of workgroup memory (the 128-row block then keeps K and V apart, two
   * barriers a step), the scale applied to S instead of Q
   */
  qg?: boolean;
  /**
   * workgroups over (head, sequence, query block) rather than (query block, head, sequence): the
   * longest causal blocks of all heads start first, so that the short ones fill the tail (H200,
   * 128 x 64 blocks: 1.29x at T = 4k, 1.02x at 16k, 0.98x at 64k, where the blocks of one head
   * already outnumber the workgroups that run at once)
   */
  hx?: boolean;
}

/** The name the benchmark prints for a forward tile (the default's options are left out). */
export function forwardName(c: ForwardTiles): string {
  const pv = c.pv ?? "wg";
  return [
    `${c.BM}x${c.BN} ty${c.TY} tx${c.TX}`,
    c.shuffle ? "" : "wgmem",
    pv === "wg" ? "" : pv,
    c.kvShared ? "kv1" : "",
    c.swz ? "swz" : "",
    c.pf === false ? "nopf" : typeof c.pf === "string" ? `pf${c.pf}` : "",
    c.qg ? "qg" : "",
    c.hx ? "hx" : "",
  ]
    .filter(Boolean)
    .join(" ");
}

/** the lowest set bit of n, minus one, at most 7: the XOR mask of a swizzled tile n vec4s wide */
const swizzleMask = (n: number) => Math.min(8, n & -n) - 1;

/** vec4 widths of the forward's workgroup tiles */
function forwardLayout(c: ForwardTiles, K: number) {
  const D4 = kv4(K);
  const DV = Math.ceil(D4 / c.TX) * c.TX;
  const pad = c.swz ? 0 : 1;
  const pv = c.pv ?? "wg";
  const QW = c.qg ? 0 : D4 + pad;
  const PW = c.BM / 4 + pad;
  // the K tile's array, which also holds P ("alias") or V (kvShared)
  const KW = Math.max(D4 + pad, pv === "alias" ? PW : 0, c.kvShared ? DV : 0);
  return { D4, DV, QW, KW, PW, pv, vecs: c.BM * QW + c.BN * KW + (c.kvShared ? 0 : c.BN * DV) + (pv === "wg" ? c.BN * PW : 0) };
}

/** Workgroup bytes of the forward kernel for a tile shape and head size. */
export function forwardBytes(c: ForwardTiles, K: number): number {
  return 16 * forwardLayout(c, K).vecs + (c.shuffle ? 0 : 4 * c.BM * c.TX);
}

/** Whether the tile's options go together (a shuffled P needs shuffles; P and V cannot both take K's memory). */
export function forwardValid(c: ForwardTiles, K = 64): boolean {
  const pv = c.pv ?? "wg";
  return c.BM % c.TY === 0 && (c.BM / c.TY) % 4 === 0 && c.BN % c.TX === 0 && (pv !== "shfl" || c.shuffle) && !(pv === "alias" && c.kvShared);
}

export function forwardDef(K: number, c: ForwardTiles, vec: boolean): KernelDef {
  const { BM, BN, TY, TX } = c;
  const { D4, DV, QW, KW, PW, pv } = forwardLayout(c, K);
  const NT = threadsOf(c);
  const RM = BM / TY; // rows per thread
  const RN = BN / TX; // keys per thread
  const RD = Math.ceil(D4 / TX); // output vec4 columns per thread
  if (!forwardValid(c, K)) throw new Error(`internal: attention forward tile ${JSON.stringify(c)}`);
  // the kernel before the options (text unchanged: its timings stay comparable)
  const legacy = pv === "wg" && !c.kvShared && !c.swz && c.pf !== false && !c.qg;
  const pfK = c.pf === undefined || c.pf === true || c.pf === "k";
  const pfV = c.pf === undefined || c.pf === true || c.pf === "v";
  const mQK = c.swz ? swizzleMask(D4) : 0; // Q and K tiles
  const mP = c.swz ? swizzleMask(BM / 4) : 0; // P tile
  const KA = legacy ? "Ks" : "KS"; // the K tile's array (also P with "alias", V with kvShared)
  const VA = c.kvShared ? "KS" : "Vs";
  const PA = pv === "alias" ? "KS" : "Pt";
  const I = range(RM);
  const J = range(RN);
  const JJ = range(RD);
  const G4 = range(RM / 4);
  const E = [0, 1, 2, 3];
  const row = (i: number) => `ty + ${TY * i}u`;
  const key = (j: number) => `tx + ${TX * j}u`;
  const col = (jj: number) => `tx + ${TX * jj}u`;
  const colOk = (jj: number) => (D4 % TX === 0 || (jj + 1) * TX <= D4 ? "" : `if (${col(jj)} < ${D4}u) `);
  const masks = range(Math.log2(TX)).map((s) => 1 << s);

  const qCopy = tileCopy({ tag: "rq", rows: BM, D4, NT, ld: "ld_q", base: (r) => `qRow(b, ${r}, h)`, limit: "u.T", scale: "u.qscale" });
  const kCopy = tileCopy({ tag: "rk", rows: BN, D4, NT, ld: "ld_k", base: (r) => `kvRow(b, ${r}, g)`, limit: "u.S" });
  const vCopy = tileCopy({ tag: "rv", rows: BN, D4, NT, ld: "ld_v", base: (r) => `kvRow(b, ${r}, g)`, limit: "u.S" });

  // the maximum (and at the end the sum) of a per-thread row value across the row's TX threads
  const combine = (v: (i: number) => string, op: "max" | "+", barrierFirst: boolean) =>
    c.shuffle
      ? I.map((i) => masks.map((m) => (op === "max" ? `${v(i)} = max(${v(i)}, subgroupShuffleXor(${v(i)}, ${m}u));` : `${v(i)} += subgroupShuffleXor(${v(i)}, ${m}u);`)).join(" ")).join("\n    ")
      : `${barrierFirst ? "workgroupBarrier();\n    " : ""}${I.map((i) => `red[${row(i)}][tx] = ${v(i)};`).join(" ")}
    workgroupBarrier();
    ${I.map((i) => `for (var x = 0u; x < ${TX}u; x++) { ${op === "max" ? `${v(i)} = max(${v(i)}, red[${row(i)}][x]);` : `if (x != tx) { ${v(i)} += red[${row(i)}][x]; }`} }`).join("\n    ")}`;

  // S = Q K^T (log2 units), the mask, and the online softmax: p{i}_{j}, m{i}, l{i}, o rescaled
  const qIdx = (i: number, c0: number) => {
    const cc = c0 ? `c + ${c0}u` : "c";
    return mQK ? `(${cc}) ^ zq${i}` : cc;
  };
  const qLoad = (i: number, c0: number) => (c.qg ? `let q${i} = ld_q(qb${i}, c);` : `let q${i} = Qs[${row(i)}][${qIdx(i, c0)}];`);
  // S += Q[:, c0 .. c0 + n) K[:, c0 .. c0 + n)^T, K's columns read from `src` at kIdx
  const sLoop = (src: string, n: number, c0: number, kIdx: (j: number) => string) => `for (var c = 0u; c < ${n}u; c++) {
      ${I.map((i) => qLoad(i, c0)).join(" ")}
      ${J.map((j) => `let k${j} = ${src}[${key(j)}][${kIdx(j)}];`).join(" ")}
      ${I.flatMap((i) => J.map((j) => E.map((e) => `s${i}_${j} = fma(q${i}[${e}], k${j}[${e}], s${i}_${j});`).join(" "))).join("\n      ")}
    }`;
  const sInit = `// S = Q K^T (log2 units)
    ${I.map((i) => J.map((j) => `var s${i}_${j} = 0.0;`).join(" ")).join("\n    ")}`;
  // the row maxima across the row's lanes, and O and l rescaled to them
  const rescale = `${combine((i) => `mx${i}`, "max", false)}
    ${I.map(
      (i) => `{
      let corr = exp2(m${i} - mx${i});
      m${i} = mx${i};
      l${i} *= corr;
      ${JJ.map((jj) => `o${i}_${jj} *= corr;`).join(" ")}
    }`,
    ).join("\n    ")}`;
  const softmax = `${c.qg ? I.map((i) => J.map((j) => `s${i}_${j} *= u.qscale;`).join(" ")).join("\n    ") : ""}
    // the causal diagonal and the end of the keys
    if (kv0 + ${BN}u > u.S || (u.causal != 0u && i32(kv0) + ${BN - 1} > u.qOffset + i32(q0))) {
      ${I.flatMap((i) => J.map((j) => `if (!visible(q0 + ${row(i)}, kv0 + ${key(j)})) { s${i}_${j} = -1.0e38; }`)).join("\n      ")}
    }
    // online softmax: new row maxima, rescale, probabilities
    ${I.map((i) => `var mx${i} = max(m${i}, ${J.map((j) => `s${i}_${j}`).reduce((a, s) => `max(${a}, ${s})`)});`).join("\n    ")}
    ${rescale}
    ${I.flatMap((i) => J.map((j) => `let p${i}_${j} = exp2(s${i}_${j} - m${i}); l${i} += p${i}_${j};`)).join("\n    ")}`;
  const scores = `${sInit}
    ${sLoop(KA, D4, 0, (j) => (mQK ? `c ^ zk${j}` : "c"))}
    ${softmax}`;
  const pCol = (g4: number, k: string) => (mP ? `(${row(g4)}) ^ (${k} & ${mP}u)` : row(g4));
  const storeP = J.flatMap((j) => G4.map((g4) => `${PA}[${key(j)}][${pCol(g4, `(${key(j)})`)}] = vec4<f32>(${E.map((e) => `p${g4 * 4 + e}_${j}`).join(", ")});`)).join("\n    ");
  // O += P V; written as acc + v * p, which the driver contracts to FFMA (an explicit
  // fma(vec4(p), v, acc) made the matmul 1.5x slower on an H200)
  const fmaPV = (p: (i: number) => string) => I.flatMap((i) => JJ.map((jj) => `o${i}_${jj} = o${i}_${jj} + v${jj} * ${p(i)};`)).join("\n        ");
  // O += P V (P shuffled) over the keys of columns js of the thread's scores; vAt(kk, jj) reads
  // vec4 column jj of the thread's outputs from V's row kk, given as the key's offset t + TX j
  const pvShfl = (js: number[], vAt: (t: string, j: number, jj: number) => string) => {
    const body = (t: string, p: (i: number, j: number) => string) =>
      js
        .map(
          (j) => `{
        ${I.map((i) => `let p${i} = ${p(i, j)};`).join(" ")}
        ${JJ.map((jj) => `let v${jj} = ${vAt(t, j, jj)};`).join(" ")}
        ${fmaPV((i) => `p${i}`)}
      }`,
        )
        .join("\n      ");
    return `// O += P V, each probability shuffled from the lane of its key
    for (var t = 0u; t < ${TX}u; t++) {
      let src = sgBase + t;
      ${body("t", (i, j) => `subgroupShuffle(p${i}_${j}, src)`)}
    }`;
  };
  const pvLoop =
    pv === "shfl"
      ? pvShfl(J, (t, j, jj) => `${VA}[${t} + ${TX * j}u][${col(jj)}]`)
      : `// O += P V
    for (var kk = 0u; kk < ${BN}u; kk++) {
      ${G4.map((g4) => `let p${g4} = ${PA}[kk][${pCol(g4, "kk")}];`).join(" ")}
      ${JJ.map((jj) => `let v${jj} = ${VA}[kk][${col(jj)}];`).join(" ")}
      ${G4.flatMap((g4) => E.flatMap((e) => JJ.map((jj) => `o${g4 * 4 + e}_${jj} = o${g4 * 4 + e}_${jj} + v${jj} * p${g4}[${e}];`))).join("\n      ")}
    }`;

  const legacyLoop = `${kCopy.regs}
  ${vCopy.regs}
  if (nTiles > 0u) {
    ${kCopy.load("0u")}
    ${vCopy.load("0u")}
    ${kCopy.store("Ks")}
    ${vCopy.store("Vs")}
  }
  if (nTiles > 1u) {
    ${kCopy.load(`${BN}u`)}
    ${vCopy.load(`${BN}u`)}
  }
  workgroupBarrier();
  ${I.map((i) => `var m${i} = -1.0e30; var l${i} = 0.0; ${JJ.map((jj) => `var o${i}_${jj} = vec4<f32>(0.0);`).join(" ")}`).join("\n  ")}
  for (var tile = 0u; tile < nTiles; tile++) {
    let kv0 = tile * ${BN}u;
    ${scores}
    ${J.flatMap((j) => G4.map((g4) => `Pt[${key(j)}][${row(g4)}] = vec4<f32>(${E.map((e) => `p${g4 * 4 + e}_${j}`).join(", ")});`)).join("\n    ")}
    workgroupBarrier();
    if (tile + 1u < nTiles) {
      ${kCopy.store("Ks")}
    }
    // O += P V; written as acc + v * p, which the driver contracts to FFMA (an explicit
    // fma(vec4(p), v, acc) made the matmul 1.5x slower on an H200)
    for (var kk = 0u; kk < ${BN}u; kk++) {
      ${G4.map((g4) => `let p${g4} = Pt[kk][${row(g4)}];`).join(" ")}
      ${JJ.map((jj) => `let v${jj} = Vs[kk][${col(jj)}];`).join(" ")}
      ${G4.flatMap((g4) => E.flatMap((e) => JJ.map((jj) => `o${g4 * 4 + e}_${jj} = o${g4 * 4 + e}_${jj} + v${jj} * p${g4}[${e}];`))).join("\n      ")}
    }
    workgroupBarrier();
    if (tile + 1u < nTiles) {
      ${vCopy.store("Vs")}
    }
    if (tile + 2u < nTiles) {
      ${kCopy.load(`kv0 + ${2 * BN}u`)}
      ${vCopy.load(`kv0 + ${2 * BN}u`)}
    }
  }`;

  const bar = "workgroupBarrier();";
  // the swizzle offsets of the thread's Q rows and K rows, the first lane of its row
  const prologue = `${mQK && !c.qg ? I.map((i) => `let zq${i} = ${TY % (mQK + 1) === 0 ? "ty" : `(${row(i)})`} & ${mQK}u;`).join(" ") : ""}
  ${mQK ? J.map((j) => `let zk${j} = ${TX % (mQK + 1) === 0 ? "tx" : `(${key(j)})`} & ${mQK}u;`).join(" ") : ""}
  ${pv === "shfl" ? `let sgBase = sgid & ~${TX - 1}u;` : ""}`;
  const stats = I.map((i) => `var m${i} = -1.0e30; var l${i} = 0.0; ${JJ.map((jj) => `var o${i}_${jj} = vec4<f32>(0.0);`).join(" ")}`).join("\n  ");

  // one K (and V) tile in workgroup memory, stored at the top of each step
  const kvs = !c.kvShared;
  const nextTile = (what: string) => (what.trim() ? `if (tile + 1u < nTiles) {\n      ${what}\n    }` : "");
  const loop = `${kCopy.regs}
  ${vCopy.regs}
  ${c.qg ? I.map((i) => `let qb${i} = qRow(b, min(q0 + ${row(i)}, u.T - 1u), h);`).join(" ") : ""}
  ${prologue}
  if (nTiles > 0u) {
    ${pfK ? kCopy.load("0u") : ""}
    ${kvs && pfV ? vCopy.load("0u") : ""}
  }
  ${stats}
  for (var tile = 0u; tile < nTiles; tile++) {
    let kv0 = tile * ${BN}u;
    ${pfK ? "" : kCopy.load("kv0")}
    ${kvs && !pfV ? vCopy.load("kv0") : ""}
    ${bar} // the last step's reads of the tiles are done
    ${kCopy.store("KS", mQK)}
    ${kvs ? vCopy.store("Vs") : ""}
    ${kvs ? nextTile(`${pfK ? kCopy.load(`kv0 + ${BN}u`) : ""}\n      ${pfV ? vCopy.load(`kv0 + ${BN}u`) : ""}`) : ""}
    ${!kvs && pfV ? vCopy.load("kv0") : ""}
    ${bar}
    ${scores}
    ${pv === "alias" ? `${bar} // S's reads of K are done\n    ${storeP}` : pv === "wg" ? storeP : ""}
    ${
      c.kvShared
        ? `${c.pf === "b" ? vCopy.load("kv0") : ""}
    ${bar} // S's reads of K are done
    ${pfV || c.pf === "b" ? "" : vCopy.load("kv0")}
    ${vCopy.store("KS")}
    ${pfK ? nextTile(kCopy.load(`kv0 + ${BN}u`)) : ""}`
        : ""
    }
    ${pv !== "shfl" || c.kvShared ? bar : ""}
    ${pvLoop}
  }`;


  const tiles = legacy
    ? `var<workgroup> Qs: array<array<vec4<f32>, ${QW}>, ${BM}>;
var<workgroup> Ks: array<array<vec4<f32>, ${KW}>, ${BN}>;
var<workgroup> Vs: array<array<vec4<f32>, ${DV}>, ${BN}>;
var<workgroup> Pt: array<array<vec4<f32>, ${PW}>, ${BN}>;`
    : [
        c.qg ? "" : `var<workgroup> Qs: array<array<vec4<f32>, ${QW}>, ${BM}>;`,
        `var<workgroup> KS: array<array<vec4<f32>, ${KW}>, ${BN}>;`,
        c.kvShared ? "" : `var<workgroup> Vs: array<array<vec4<f32>, ${DV}>, ${BN}>;`,
        pv === "wg" ? `var<workgroup> Pt: array<array<vec4<f32>, ${PW}>, ${BN}>;` : "",
      ]
        .filter(Boolean)
        .join("\n");

  return {
    label: `attentionForward${K}`,
    uniforms: UNIFORMS,
    enables: c.shuffle ? ["subgroups"] : [],
    bindings: [
      ["out", "write", arr(vec)],
      ["lse", "write", "array<f32>"],
      ["q", "read", arr(vec)],
      ["k", "read", arr(vec)],
      ["v", "read", arr(vec)],
    ],
    body: `
const HEAD = ${K}u;
${INDEX}${INF}
${rowAccess("q", K, vec)}${rowAccess("k", K, vec)}${rowAccess("v", K, vec)}${rowAccess("out", K, vec, true)}
${tiles}
${c.shuffle ? "" : `var<workgroup> red: array<array<f32, ${TX}>, ${BM}>;`}

@compute @workgroup_size(${NT})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32${pv === "shfl" ? ", @builtin(subgroup_invocation_id) sgid: u32" : ""}) {
  let tx = lid % ${TX}u;
  let ty = lid / ${TX}u;
  let w = ${c.hx ? "wid.z" : "wid.x"};
  let h = ${c.hx ? "wid.x" : "wid.y"};
  let b = ${c.hx ? "wid.y" : "wid.z"};
  let g = h / (u.H / u.G);
  let q0 = (u.nBlocks - 1u - w) * ${BM}u; // the longest causal blocks start first
  ${c.qg ? "" : `${qCopy.regs}\n  ${qCopy.load("q0")}\n  ${qCopy.store("Qs", mQK)}`}
  var kvEnd = i32(u.S);
  if (u.causal != 0u) { kvEnd = clamp(u.qOffset + i32(q0) + ${BM}, 0, i32(u.S)); }
  let nTiles = (u32(kvEnd) + ${BN - 1}u) / ${BN}u;
  ${legacy ? legacyLoop : loop}
  ${combine((i) => `l${i}`, "+", true)}
  ${I.map(
    (i) => `{
    let t = q0 + ${row(i)};
    let inv = select(1.0 / l${i}, 0.0, l${i} == 0.0);
    if (t < u.T) {
      let base = qRow(b, t, h);
      ${JJ.map((jj) => `${colOk(jj)}{ st_out(base, ${col(jj)}, o${i}_${jj} * inv); }`).join("\n      ")}
      if (tx == 0u) {
        lse[(b * u.H + h) * u.T + t] = select((m${i} + log2(l${i})) * ${Math.LN2}, infinity_(-1.0 - l${i}), l${i} == 0.0);
      }
    }
  }`,
  ).join("\n  ")}
}
`,
  };
}
