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
 * the keys) apply the mask. The longest causal blocks are dispatched first.
 *
 * On an H200 (Dawn, Vulkan; bench-gpu --variants) the 64 x 32 block with 4 x 4 scores and 4 x 8
 * outputs per thread (128 threads) was the fastest shape tried; larger thread blocks (8 rows,
 * or 4 threads per row) ran at half its speed, and S as outer products over transposed tiles,
 * fully unrolled loops, or 16 threads per row were no faster. The likely bound is workgroup
 * memory bandwidth: a multiply-add here reads about half a float from it (the FFMA rate needs a
 * quarter), and 48 KiB per workgroup leave no room for larger tiles that would read less
 * (bench/notes/gpu-tuning.md).
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
}

/** Workgroup bytes of the forward kernel for a tile shape and head size. */
export function forwardBytes(c: ForwardTiles, K: number): number {
  const D4 = kv4(K);
  const DV = Math.ceil(D4 / c.TX) * c.TX;
  const vec4s = (c.BM + c.BN) * (D4 + 1) + c.BN * DV + c.BN * (c.BM / 4 + 1);
  return 16 * vec4s + (c.shuffle ? 0 : 4 * c.BM * c.TX);
}

export function forwardDef(K: number, c: ForwardTiles, vec: boolean): KernelDef {
  const D4 = kv4(K);
  const { BM, BN, TY, TX } = c;
  const NT = threadsOf(c);
  const RM = BM / TY; // rows per thread
  const RN = BN / TX; // keys per thread
  const RD = Math.ceil(D4 / TX); // output vec4 columns per thread
  const DV = RD * TX;
  if (RM % 4 !== 0 || BN % TX !== 0) throw new Error(`internal: attention forward tile ${JSON.stringify(c)}`);
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
var<workgroup> Qs: array<array<vec4<f32>, ${D4 + 1}>, ${BM}>;
var<workgroup> Ks: array<array<vec4<f32>, ${D4 + 1}>, ${BN}>;
var<workgroup> Vs: array<array<vec4<f32>, ${DV}>, ${BN}>;
var<workgroup> Pt: array<array<vec4<f32>, ${BM / 4 + 1}>, ${BN}>;
${c.shuffle ? "" : `var<workgroup> red: array<array<f32, ${TX}>, ${BM}>;`}

@compute @workgroup_size(${NT})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let tx = lid % ${TX}u;
  let ty = lid / ${TX}u;
  let q0 = (u.nBlocks - 1u - wid.x) * ${BM}u; // the longest causal blocks start first
  let h = wid.y;
  let b = wid.z;
  let g = h / (u.H / u.G);
  ${qCopy.regs}
  ${qCopy.load("q0")}
  ${qCopy.store("Qs")}
  var kvEnd = i32(u.S);
  if (u.causal != 0u) { kvEnd = clamp(u.qOffset + i32(q0) + ${BM}, 0, i32(u.S)); }
  let nTiles = (u32(kvEnd) + ${BN - 1}u) / ${BN}u;
  ${kCopy.regs}
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
    // S = Q K^T (log2 units)
    ${I.map((i) => J.map((j) => `var s${i}_${j} = 0.0;`).join(" ")).join("\n    ")}
    for (var c = 0u; c < ${D4}u; c++) {
      ${I.map((i) => `let q${i} = Qs[${row(i)}][c];`).join(" ")}
      ${J.map((j) => `let k${j} = Ks[${key(j)}][c];`).join(" ")}
      ${I.flatMap((i) => J.map((j) => E.map((e) => `s${i}_${j} = fma(q${i}[${e}], k${j}[${e}], s${i}_${j});`).join(" "))).join("\n      ")}
    }
    // the causal diagonal and the end of the keys
    if (kv0 + ${BN}u > u.S || (u.causal != 0u && i32(kv0) + ${BN - 1} > u.qOffset + i32(q0))) {
      ${I.flatMap((i) => J.map((j) => `if (!visible(q0 + ${row(i)}, kv0 + ${key(j)})) { s${i}_${j} = -1.0e38; }`)).join("\n      ")}
    }
    // online softmax: new row maxima, rescale, probabilities
    ${I.map((i) => `var mx${i} = max(m${i}, ${J.map((j) => `s${i}_${j}`).reduce((a, s) => `max(${a}, ${s})`)});`).join("\n    ")}
    ${combine((i) => `mx${i}`, "max", false)}
    ${I.map(
      (i) => `{
      let corr = exp2(m${i} - mx${i});
      m${i} = mx${i};
      l${i} *= corr;
      ${JJ.map((jj) => `o${i}_${jj} *= corr;`).join(" ")}
    }`,
    ).join("\n    ")}
    ${I.flatMap((i) => J.map((j) => `let p${i}_${j} = exp2(s${i}_${j} - m${i}); l${i} += p${i}_${j};`)).join("\n    ")}
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
  }
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
