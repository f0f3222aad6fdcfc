/**
 * The FlashAttention-2 backward (Dao 2023, Alg. 2) as two register-blocked SIMT kernels in WGSL,
 * split so that no two workgroups write the same output and no atomics are needed:
 *   dkv  a workgroup owns BM key rows of KV head g and streams the queries of every head of the
 *        group in steps of BN: S^T = K Q^T, dP^T = V dO^T, P^T = exp2(S^T - lse), dS^T =
 *        P^T (dP^T - D); then dV += P^T dO and dK += dS^T Q;
 *   dq   a workgroup owns BM query rows of head h and streams the keys: S = Q K^T, dP = dO V^T,
 *        dS = P (dP - D); then dQ += dS K.
 * D = rowsum(dO * O) comes from a small kernel first. Thread (ty, tx) computes an RM x RN block
 * of scores for its own rows ty + TY i and streamed rows tx + TX j (fma over vec4 columns of the
 * tiles), and accumulates the gradients of its own rows over head columns tx + TX jj. P and dS
 * reach the threads that need them (the TX lanes of an own row) through workgroup memory, [streamed
 * row][own rows / 4] (four own rows a vec4), or (shfl) by subgroup shuffles from the lane that
 * computed them. Causal blocks skip the steps they cannot see, only steps that cross the
 * diagonal (or the end of the rows) apply the mask, and the longest blocks are dispatched first.
 * Layouts as backend/ref/attention.ts: q, dq, dout (B, T, H, K); k, v, dk, dv (B, kvRows, G, K).
 */
import type { KernelDef } from "./context.js";
import type { TileShape } from "./attention_tiles.js";
import { INDEX, LOG2E, UNIFORMS, arr, kv4, range, rowAccess, swizzleMask, threadsOf, tileCopy } from "./attention_tiles.js";
import { LINEAR_INDEX } from "./wgsl.js";

export type BackwardKind = "dq" | "dkv";

/** One backward kernel's tiles and options. */
export interface BackwardTile extends TileShape {
  /**
   * P and dS by subgroup shuffles instead of workgroup tiles: needs subgroups of at least TX lanes
   * whose lanes are consecutive local invocation indices (as the forward's shuffles)
   */
  shfl?: boolean;
  /** unpadded operand tiles, the vec4 column c of row r stored at c ^ (r & 7) (no bank conflicts, less memory) */
  swz?: boolean;
  /**
   * dq only: one streamed tile instead of two, V for dP and then K over it for S and dQ += dS K
   * (half the streamed memory: room for 64-key steps; four barriers a step instead of two)
   */
  st1?: boolean;
  /** workgroups over (head, sequence, block): the longest causal blocks of all heads start first */
  hx?: boolean;
}

/** The name the benchmark prints for a backward tile. */
export function backwardName(c: BackwardTile): string {
  return [`${c.BM}x${c.BN} ty${c.TY} tx${c.TX}`, c.shfl ? "shfl" : "", c.swz ? "swz" : "", c.st1 ? "st1" : "", c.hx ? "hx" : ""].filter(Boolean).join(" ");
}

/** Whether a tile works for a kernel: whole thread blocks, vec4s of own rows for the exchange tiles, st1 for dq. */
export function backwardValid(kind: BackwardKind, c: BackwardTile): boolean {
  const RM = c.BM / c.TY;
  return Number.isInteger(RM) && (c.shfl || RM % 4 === 0) && c.BN % c.TX === 0 && (!c.st1 || kind === "dq");
}

/** vec4 widths of the workgroup tiles: own rows A, streamed rows B (every thread's update columns too), exchange X */
function backwardLayout(kind: BackwardKind, c: BackwardTile, K: number) {
  const D4 = kv4(K);
  const pad = c.swz ? 0 : 1;
  const AW = D4 + pad;
  const BW = Math.max(D4 + pad, Math.ceil(D4 / c.TX) * c.TX);
  const XW = c.BM / 4 + 1;
  const nB = c.st1 ? 1 : 2;
  const nX = c.shfl ? 0 : kind === "dkv" ? 2 : 1;
  return { D4, AW, BW, XW, vecs: 2 * c.BM * AW + nB * c.BN * BW + nX * c.BN * XW };
}

/** Workgroup bytes of a backward kernel for a tile shape and head size. */
export function backwardBytes(kind: BackwardKind, c: BackwardTile, K: number): number {
  return 16 * backwardLayout(kind, c, K).vecs;
}

/** D = rowsum(dO * O) per (b, h, t), laid out as lse. */
export function rowDotDef(): KernelDef {
  return {
    label: "attentionRowDot",
    uniforms: [["n", "u32"], ["T", "u32"], ["H", "u32"], ["K", "u32"]],
    bindings: [["D", "write", "array<f32>"], ["dout", "read", "array<f32>"], ["out", "read", "array<f32>"]],
    body: `${LINEAR_INDEX(64)}
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = linearIndex(gid, nwg);
  if (i >= u.n) { return; }
  // i enumerates (b, h, t); the row lives at (b, t, h)
  let t = i % u.T;
  let bh = i / u.T;
  let h = bh % u.H;
  let b = bh / u.H;
  let base = ((b * u.T + t) * u.H + h) * u.K;
  var s = 0.0;
  for (var c = 0u; c < u.K; c++) { s += dout[base + c] * out[base + c]; }
  D[i] = s;
}`,
  };
}

export function backwardDef(kind: BackwardKind, K: number, c: BackwardTile, vec: boolean): KernelDef {
  if (!backwardValid(kind, c)) throw new Error(`internal: attention backward tile ${JSON.stringify(c)}`);
  const { D4, AW, BW, XW } = backwardLayout(kind, c, K);
  const { BM, BN, TY, TX } = c;
  const NT = threadsOf(c);
  const RM = BM / TY; // own rows per thread
  const RN = BN / TX; // streamed rows per thread
  const RD = Math.ceil(D4 / TX); // gradient vec4 columns per thread
  const dq = kind === "dq";
  const mz = c.swz ? swizzleMask(D4) : 0;
  const I = range(RM);
  const J = range(RN);
  const JJ = range(RD);
  const G4 = range(RM / 4);
  const E = [0, 1, 2, 3];
  const own = (i: number) => `ty + ${TY * i}u`;
  const str = (j: number) => `tx + ${TX * j}u`;
  const col = (jj: number) => `tx + ${TX * jj}u`;
  const colOk = (jj: number) => (D4 % TX === 0 || (jj + 1) * TX <= D4 ? "" : `if (${col(jj)} < ${D4}u) `);
  // swizzled column c of own row i, streamed row j, and of streamed row n (an expression)
  const aCol = (i: number) => (mz ? `c ^ za${i}` : "c");
  const bCol = (j: number) => (mz ? `c ^ zb${j}` : "c");
  const nCol = (cc: string, n: string) => (mz ? `(${cc}) ^ (${n} & ${mz}u)` : cc);

  // own tiles A1, A2 and streamed tiles B1, B2: scores = A1 . B1, dP = A2 . B2 (dq: Q.K, dO.V; dkv: K.Q, V.dO)
  const qRows = (tag: string, rows: number, ld: string) => tileCopy({ tag, rows, D4, NT, ld, base: (r) => `qRow(b, ${r}, h)`, limit: "u.T" });
  const kvRows = (tag: string, rows: number, ld: string) => tileCopy({ tag, rows, D4, NT, ld, base: (r) => `kvRow(b, ${r}, g)`, limit: "u.S" });
  const [a1, a2] = dq ? [qRows("ra", BM, "ld_q"), qRows("rb", BM, "ld_dout")] : [kvRows("ra", BM, "ld_k"), kvRows("rb", BM, "ld_v")];
  const [b1, b2] = dq ? [kvRows("rc", BN, "ld_k"), kvRows("rd", BN, "ld_v")] : [qRows("rc", BN, "ld_q"), qRows("rd", BN, "ld_dout")];
  const accs = dq ? ["dq"] : ["dk", "dv"];

  // (query, key) of score (i, j), and the row statistics (log2 lse, D) of its query
  const pair = (i: number, j: number) => (dq ? [`m0 + ${own(i)}`, `n0 + ${str(j)}`] : [`n0 + ${str(j)}`, `m0 + ${own(i)}`]);
  const lse2 = (i: number, j: number) => (dq ? `lse2_${i}` : `lse2_${j}`);
  const Dof = (i: number, j: number) => (dq ? `D_${i}` : `D_${j}`);
  // a step needs the mask where it crosses the causal diagonal or the end of the keys (dkv: of the queries)
  const needMask = dq
    ? `n0 + ${BN}u > u.S || (u.causal != 0u && i32(n0) + ${BN - 1} > u.qOffset + i32(m0))`
    : `n0 + ${BN}u > u.T || m0 + ${BM}u > u.S || (u.causal != 0u && i32(m0) + ${BM - 1} > u.qOffset + i32(n0))`;

  // dkv: the statistics of the streamed queries, read through the cache (no workgroup memory)
  const stream = dq
    ? `let n0 = step * ${BN}u;`
    : `let hh = step / nPer;
    let h = g * hPerG + hh;
    let n0 = (nStart + step - hh * nPer) * ${BN}u;
    ${J.map((j) => `let tq${j} = n0 + ${str(j)}; let at${j} = (b * u.H + h) * u.T + min(tq${j}, u.T - 1u); let lse2_${j} = select(0.0, lse[at${j}] * ${LOG2E}, tq${j} < u.T); let D_${j} = select(0.0, Dv[at${j}], tq${j} < u.T);`).join("\n    ")}`;

  // sums over the head columns: acc{i}_{j} += A[own i] . B[streamed j] for each (acc, A, B)
  const dot = (terms: [string, string, string][]) => `for (var c = 0u; c < ${D4}u; c++) {
      ${terms.map(([acc, A]) => I.map((i) => `let ${acc}a${i} = ${A}[${own(i)}][${aCol(i)}];`).join(" ")).join("\n      ")}
      ${terms.map(([acc, , B]) => J.map((j) => `let ${acc}b${j} = ${B}[${str(j)}][${bCol(j)}];`).join(" ")).join("\n      ")}
      ${I.flatMap((i) => J.map((j) => E.map((e) => terms.map(([acc]) => `${acc}${i}_${j} = fma(${acc}a${i}[${e}], ${acc}b${j}[${e}], ${acc}${i}_${j});`).join(" ")).join(" "))).join("\n      ")}
    }`;
  const zero = (acc: string) => I.map((i) => J.map((j) => `var ${acc}${i}_${j} = 0.0;`).join(" ")).join("\n    ");
  const bar = "workgroupBarrier();";
  // the step's streamed tiles and scores: S and dP over two tiles, or (st1, dq) dP over V, then S over K in its place
  const store = (copy: typeof b1, what: string) => `${bar} // ${what}\n    ${copy.store("B1", mz)}\n    ${bar}`;
  const scores = c.st1
    ? `${b1.load("n0")}
    ${b2.load("n0")}
    ${zero("s")}
    ${zero("dp")}
    ${store(b2, "the last step's reads of K are done")}
    ${dot([["dp", "A2", "B1"]])}
    ${store(b1, "dP's reads of V are done")}
    ${dot([["s", "A1", "B1"]])}`
    : `${b1.load("n0")}
    ${b2.load("n0")}
    ${bar} // the last step's reads of the tiles are done
    ${b1.store("B1", mz)}
    ${b2.store("B2", mz)}
    ${bar}
    ${zero("s")}
    ${zero("dp")}
    ${dot([["s", "A1", "B1"], ["dp", "A2", "B2"]])}`;

  const probs = `${I.flatMap((i) => J.map((j) => `var p${i}_${j} = exp2(s${i}_${j} * u.qscale - ${lse2(i, j)});`)).join("\n    ")}
    if (${needMask}) {
      ${I.flatMap((i) =>
        J.map((j) => {
          const [t, key] = pair(i, j);
          return `if (!(${t} < u.T && visible(${t}, ${key}))) { p${i}_${j} = 0.0; }`;
        }),
      ).join("\n      ")}
    }
    ${I.flatMap((i) => J.map((j) => `let ds${i}_${j} = p${i}_${j} * (dp${i}_${j} - ${Dof(i, j)});`)).join("\n    ")}`;

  // the gradients' updates: acc{i}_{jj} += tile[n][column jj] * x(i), x = P or dS of own row i
  // and streamed row n; acc + b * x, which the driver contracts to FFMA (see attention_forward.ts)
  type Term = [acc: string, tile: string, x: "p" | "ds"];
  const terms: Term[] = dq ? [["dq", "B1", "ds"]] : [["dv", "B2", "p"], ["dk", "B1", "ds"]];
  const fmas = (n: string, x: (i: number, what: "p" | "ds") => string) =>
    `${terms.map(([acc, tile]) => JJ.map((jj) => `let ${acc}b${jj} = ${tile}[${n}][${nCol(col(jj), n)}];`).join(" ")).join(" ")}
        ${I.flatMap((i) => JJ.map((jj) => terms.map(([acc, , what]) => `${acc}${i}_${jj} = ${acc}${i}_${jj} + ${acc}b${jj} * ${x(i, what)};`).join(" "))).join("\n        ")}`;
  // P and dS of streamed row t + TX j from lane t of the own row's lanes
  const shflPass = `for (var t = 0u; t < ${TX}u; t++) {
      let src = sgBase + t;
      ${J.map(
        (j) => `{
        let n = t + ${TX * j}u;
        ${terms.map(([, , what]) => I.map((i) => `let ${what}t${i} = subgroupShuffle(${what}${i}_${j}, src);`).join(" ")).join(" ")}
        ${fmas("n", (i, what) => `${what}t${i}`)}
      }`,
      ).join("\n      ")}
    }`;
  // P and dS stored [streamed row][own rows / 4] by the threads that computed them
  const wgPass = `${J.flatMap((j) =>
        G4.map((g4) => {
          const v4 = (x: string) => `vec4<f32>(${E.map((e) => `${x}${g4 * 4 + e}_${j}`).join(", ")})`;
          return `dSt[${str(j)}][${own(g4)}] = ${v4("ds")};${dq ? "" : ` Pt[${str(j)}][${own(g4)}] = ${v4("p")};`}`;
        }),
      ).join("\n    ")}
    ${bar}
    for (var n = 0u; n < ${BN}u; n++) {
      ${terms.map(([, , what]) => G4.map((g4) => `let ${what}t${g4} = ${what === "p" ? "Pt" : "dSt"}[n][${own(g4)}];`).join(" ")).join(" ")}
      ${fmas("n", (i, what) => `${what}t${i >> 2}[${i & 3}]`)}
    }`;
  const update = c.shfl ? shflPass : wgPass;

  const storeRows = I.map((i) => {
    const row = `m0 + ${own(i)}`;
    const lim = dq ? "u.T" : "u.kvRows";
    const base = dq ? `qRow(b, r, h)` : `kvRow(b, r, g)`;
    const st = JJ.map(
      (jj) =>
        `${colOk(jj)}{ ${
          dq
            ? `st_dq(base, ${col(jj)}, dq${i}_${jj} * u.qscale * ${Math.LN2});`
            : `st_dk(base, ${col(jj)}, dk${i}_${jj} * u.qscale * ${Math.LN2}); st_dv(base, ${col(jj)}, dv${i}_${jj});`
        } }`,
    ).join(" ");
    return `{\n    let r = ${row};\n    if (r < ${lim}) {\n      let base = ${base};\n      ${st}\n    }\n  }`;
  }).join("\n  ");

  // the swizzle offsets of the thread's own and streamed rows, the first lane of its own row
  const prologue = [
    mz ? I.map((i) => `let za${i} = ${TY % (mz + 1) === 0 ? "ty" : `(${own(i)})`} & ${mz}u;`).join(" ") : "",
    mz ? J.map((j) => `let zb${j} = ${TX % (mz + 1) === 0 ? "tx" : `(${str(j)})`} & ${mz}u;`).join(" ") : "",
    c.shfl ? `let sgBase = sgid & ~${TX - 1}u;` : "",
  ]
    .filter(Boolean)
    .join("\n  ");

  const streamedTiles = c.st1 ? ["B1"] : ["B1", "B2"];
  const exchangeTiles = c.shfl ? [] : dq ? ["dSt"] : ["dSt", "Pt"];
  return {
    label: `attentionBackward_${kind}${K}`,
    uniforms: UNIFORMS,
    enables: c.shfl ? ["subgroups"] : [],
    bindings: dq
      ? [
          ["dq", "write", arr(vec)],
          ["dout", "read", arr(vec)],
          ["q", "read", arr(vec)],
          ["k", "read", arr(vec)],
          ["v", "read", arr(vec)],
          ["lse", "read", "array<f32>"],
          ["Dv", "read", "array<f32>"],
        ]
      : [
          ["dk", "write", arr(vec)],
          ["dv", "write", arr(vec)],
          ["dout", "read", arr(vec)],
          ["q", "read", arr(vec)],
          ["k", "read", arr(vec)],
          ["v", "read", arr(vec)],
          ["lse", "read", "array<f32>"],
          ["Dv", "read", "array<f32>"],
        ],
    body: `
const HEAD = ${K}u;
${INDEX}
${rowAccess("q", K, vec)}${rowAccess("k", K, vec)}${rowAccess("v", K, vec)}${rowAccess("dout", K, vec)}${accs.map((a) => rowAccess(a, K, vec, true)).join("")}
var<workgroup> A1: array<array<vec4<f32>, ${AW}>, ${BM}>;
var<workgroup> A2: array<array<vec4<f32>, ${AW}>, ${BM}>;
${streamedTiles.map((t) => `var<workgroup> ${t}: array<array<vec4<f32>, ${BW}>, ${BN}>;`).join("\n")}
${exchangeTiles.map((t) => `var<workgroup> ${t}: array<array<vec4<f32>, ${XW}>, ${BN}>;`).join("\n")}

@compute @workgroup_size(${NT})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32${c.shfl ? ", @builtin(subgroup_invocation_id) sgid: u32" : ""}) {
  let tx = lid % ${TX}u;
  let ty = lid / ${TX}u;
  let w = ${c.hx ? "wid.z" : "wid.x"};
  let b = ${c.hx ? "wid.y" : "wid.z"};
  ${
    dq
      ? `let h = ${c.hx ? "wid.x" : "wid.y"};
  let g = h / (u.H / u.G);
  let m0 = (u.nBlocks - 1u - w) * ${BM}u; // the last queries see the most keys: they start first
  ${I.map((i) => `let tt${i} = min(m0 + ${own(i)}, u.T - 1u);\n  let lse2_${i} = lse[(b * u.H + h) * u.T + tt${i}] * ${LOG2E};\n  let D_${i} = Dv[(b * u.H + h) * u.T + tt${i}];`).join("\n  ")}
  var nEnd = i32(u.S);
  if (u.causal != 0u) { nEnd = clamp(u.qOffset + i32(m0) + ${BM}, 0, i32(u.S)); }
  let nSteps = (u32(nEnd) + ${BN - 1}u) / ${BN}u;`
      : `let g = ${c.hx ? "wid.x" : "wid.y"};
  let m0 = w * ${BM}u; // the first keys are seen by the most queries: they start first
  let hPerG = u.H / u.G;
  var nStart = 0u;
  if (u.causal != 0u) { nStart = u32(max(i32(m0) - u.qOffset, 0)) / ${BN}u; }
  let nQ = (u.T + ${BN - 1}u) / ${BN}u;
  let nPer = select(0u, nQ - nStart, nQ > nStart && m0 < u.S);
  let nSteps = hPerG * nPer;`
  }
  ${prologue}
  {
    ${a1.regs} ${a2.regs}
    ${a1.load("m0")}
    ${a2.load("m0")}
    ${a1.store("A1", mz)}
    ${a2.store("A2", mz)}
  }
  ${I.map((i) => accs.map((a) => JJ.map((jj) => `var ${a}${i}_${jj} = vec4<f32>(0.0);`).join(" ")).join(" ")).join("\n  ")}
  ${b1.regs} ${b2.regs}
  for (var step = 0u; step < nSteps; step++) {
    ${stream}
    ${scores}
    ${probs}
    ${update}
  }
  ${storeRows}
}
`,
  };
}
