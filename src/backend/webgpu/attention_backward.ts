/**
 * The FlashAttention-2 backward (Dao 2023, Alg. 2) as two register-blocked SIMT kernels in WGSL,
 * split so that no two workgroups write the same output and no atomics are needed:
 *   dkv  a workgroup owns BM key rows of KV head g and streams the queries of every head of the
 *        group in steps of BN: S^T = K Q^T, dP^T = V dO^T, P^T = exp2(S^T - lse), dS^T =
 *        P^T (dP^T - D); then dV += P^T dO and dK += dS^T Q;
 *   dq   a workgroup owns BM query rows of head h and streams the keys: S = Q K^T, dP = dO V^T,
 *        dS = P (dP - D); then dQ += dS K.
 * D = rowsum(dO * O) comes from a small kernel first. Thread (ty, tx) computes an RM x RN block
 * of scores for its own rows ty + TY i and streamed rows tx + TX j (fma over vec4 columns of
 * padded tiles), writes P and dS to workgroup memory indexed [streamed row][own rows / 4] (four
 * own rows per vec4), and accumulates the gradients of its own rows over head columns tx + TX jj.
 * Layouts as backend/ref/attention.ts: q, dq, dout (B, T, H, K); k, v, dk, dv (B, kvRows, G, K).
 */
import type { KernelDef } from "./context.js";
import type { TileShape } from "./attention_tiles.js";
import { INDEX, LOG2E, UNIFORMS, arr, kv4, range, rowAccess, threadsOf, tileCopy } from "./attention_tiles.js";
import { LINEAR_INDEX } from "./wgsl.js";

export type BackwardKind = "dq" | "dkv";

/** Vec4 columns of a streamed tile: padded rows for the score loop, every thread's columns for the update loop. */
const streamedCols = (c: TileShape, D4: number) => Math.max(D4 + 1, Math.ceil(D4 / c.TX) * c.TX);

/** Workgroup bytes of a backward kernel for a tile shape and head size. */
export function backwardBytes(kind: BackwardKind, c: TileShape, K: number): number {
  const D4 = kv4(K);
  const exchange = (kind === "dkv" ? 2 : 1) * c.BN * (c.BM / 4 + 1);
  const vec4s = 2 * c.BM * (D4 + 1) + 2 * c.BN * streamedCols(c, D4) + exchange;
  return 16 * vec4s + (kind === "dkv" ? 8 * c.BN : 0);
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

export function backwardDef(kind: BackwardKind, K: number, c: TileShape, vec: boolean): KernelDef {
  const D4 = kv4(K);
  const { BM, BN, TY, TX } = c;
  const NT = threadsOf(c);
  const RM = BM / TY;
  const RN = BN / TX;
  const RD = Math.ceil(D4 / TX);
  const SC = streamedCols(c, D4);
  if (RM % 4 !== 0 || BN % TX !== 0) throw new Error(`internal: attention backward tile ${JSON.stringify(c)}`);
  const dq = kind === "dq";
  const I = range(RM);
  const J = range(RN);
  const JJ = range(RD);
  const G4 = range(RM / 4);
  const E = [0, 1, 2, 3];
  const own = (i: number) => `ty + ${TY * i}u`;
  const str = (j: number) => `tx + ${TX * j}u`;
  const col = (jj: number) => `tx + ${TX * jj}u`;
  const colOk = (jj: number) => (D4 % TX === 0 || (jj + 1) * TX <= D4 ? "" : `if (${col(jj)} < ${D4}u) `);

  // own tiles A1, A2 and streamed tiles B1, B2: scores = A1 . B1, dP = A2 . B2 (dq: Q.K, dO.V; dkv: K.Q, V.dO)
  const qRows = (tag: string, rows: number, ld: string) => tileCopy({ tag, rows, D4, NT, ld, base: (r) => `qRow(b, ${r}, h)`, limit: "u.T" });
  const kvRows = (tag: string, rows: number, ld: string) => tileCopy({ tag, rows, D4, NT, ld, base: (r) => `kvRow(b, ${r}, g)`, limit: "u.S" });
  const [a1, a2] = dq ? [qRows("ra", BM, "ld_q"), qRows("rb", BM, "ld_dout")] : [kvRows("ra", BM, "ld_k"), kvRows("rb", BM, "ld_v")];
  const [b1, b2] = dq ? [kvRows("rc", BN, "ld_k"), kvRows("rd", BN, "ld_v")] : [qRows("rc", BN, "ld_q"), qRows("rd", BN, "ld_dout")];
  const accs = dq ? ["dq"] : ["dk", "dv"];

  // (query, key) of score (i, j), and the row statistics (log2 lse, D) of its query
  const pair = (i: number, j: number) => (dq ? [`m0 + ${own(i)}`, `n0 + ${str(j)}`] : [`n0 + ${str(j)}`, `m0 + ${own(i)}`]);
  const lse2 = (i: number, j: number) => (dq ? `lse2_${i}` : `lseS[${str(j)}]`);
  const Dof = (i: number, j: number) => (dq ? `D_${i}` : `DS[${str(j)}]`);
  // a step needs the mask where it crosses the causal diagonal or the end of the keys (dkv: of the queries)
  const needMask = dq
    ? `n0 + ${BN}u > u.S || (u.causal != 0u && i32(n0) + ${BN - 1} > u.qOffset + i32(m0))`
    : `n0 + ${BN}u > u.T || m0 + ${BM}u > u.S || (u.causal != 0u && i32(m0) + ${BM - 1} > u.qOffset + i32(n0))`;

  const stream = dq
    ? `let n0 = step * ${BN}u;`
    : `let hh = step / nPer;
    let h = g * hPerG + hh;
    let n0 = (nStart + step - hh * nPer) * ${BN}u;`;
  const loadStreamed = `${b1.load("n0")}
    ${b2.load("n0")}
    ${b1.store("B1")}
    ${b2.store("B2")}
    ${
      dq
        ? ""
        : `for (var r = lid; r < ${BN}u; r += ${NT}u) {
      let t = n0 + r;
      let ok = t < u.T;
      let at = (b * u.H + h) * u.T + select(0u, t, ok);
      lseS[r] = select(0.0, lse[at] * ${LOG2E}, ok);
      DS[r] = select(0.0, Dv[at], ok);
    }`
    }`;

  // acc + b * x, which the driver contracts to FFMA (see attention_forward.ts)
  const update = dq
    ? `for (var nn = 0u; nn < ${BN}u; nn++) {
      ${G4.map((g4) => `let ds${g4} = dSt[nn][${own(g4)}];`).join(" ")}
      ${JJ.map((jj) => `let kb${jj} = B1[nn][${col(jj)}];`).join(" ")}
      ${G4.flatMap((g4) => E.flatMap((e) => JJ.map((jj) => `dq${g4 * 4 + e}_${jj} = dq${g4 * 4 + e}_${jj} + kb${jj} * ds${g4}[${e}];`))).join("\n      ")}
    }`
    : `for (var nn = 0u; nn < ${BN}u; nn++) {
      ${G4.map((g4) => `let p${g4} = Pt[nn][${own(g4)}]; let ds${g4} = dSt[nn][${own(g4)}];`).join(" ")}
      ${JJ.map((jj) => `let qb${jj} = B1[nn][${col(jj)}]; let ob${jj} = B2[nn][${col(jj)}];`).join(" ")}
      ${G4.flatMap((g4) =>
        E.flatMap((e) =>
          JJ.map((jj) => {
            const i = g4 * 4 + e;
            return `dv${i}_${jj} = dv${i}_${jj} + ob${jj} * p${g4}[${e}]; dk${i}_${jj} = dk${i}_${jj} + qb${jj} * ds${g4}[${e}];`;
          }),
        ),
      ).join("\n      ")}
    }`;

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

  return {
    label: `attentionBackward_${kind}${K}`,
    uniforms: UNIFORMS,
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
var<workgroup> A1: array<array<vec4<f32>, ${D4 + 1}>, ${BM}>;
var<workgroup> A2: array<array<vec4<f32>, ${D4 + 1}>, ${BM}>;
var<workgroup> B1: array<array<vec4<f32>, ${SC}>, ${BN}>;
var<workgroup> B2: array<array<vec4<f32>, ${SC}>, ${BN}>;
var<workgroup> dSt: array<array<vec4<f32>, ${BM / 4 + 1}>, ${BN}>;
${dq ? "" : `var<workgroup> Pt: array<array<vec4<f32>, ${BM / 4 + 1}>, ${BN}>;\nvar<workgroup> lseS: array<f32, ${BN}>;\nvar<workgroup> DS: array<f32, ${BN}>;`}

@compute @workgroup_size(${NT})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let tx = lid % ${TX}u;
  let ty = lid / ${TX}u;
  let b = wid.z;
  let m0 = (u.nBlocks - 1u - wid.x) * ${BM}u; // the longest causal blocks start first
  ${
    dq
      ? `let h = wid.y;
  let g = h / (u.H / u.G);
  ${I.map((i) => `let tt${i} = min(m0 + ${own(i)}, u.T - 1u);\n  let lse2_${i} = lse[(b * u.H + h) * u.T + tt${i}] * ${LOG2E};\n  let D_${i} = Dv[(b * u.H + h) * u.T + tt${i}];`).join("\n  ")}
  var nEnd = i32(u.S);
  if (u.causal != 0u) { nEnd = clamp(u.qOffset + i32(m0) + ${BM}, 0, i32(u.S)); }
  let nSteps = (u32(nEnd) + ${BN - 1}u) / ${BN}u;`
      : `let g = wid.y;
  let hPerG = u.H / u.G;
  var nStart = 0u;
  if (u.causal != 0u) { nStart = u32(max(i32(m0) - u.qOffset, 0)) / ${BN}u; }
  let nQ = (u.T + ${BN - 1}u) / ${BN}u;
  let nPer = select(0u, nQ - nStart, nQ > nStart && m0 < u.S);
  let nSteps = hPerG * nPer;`
  }
  {
    ${a1.regs} ${a2.regs}
    ${a1.load("m0")}
    ${a2.load("m0")}
    ${a1.store("A1")}
    ${a2.store("A2")}
  }
  ${I.map((i) => accs.map((a) => JJ.map((jj) => `var ${a}${i}_${jj} = vec4<f32>(0.0);`).join(" ")).join(" ")).join("\n  ")}
  ${b1.regs} ${b2.regs}
  for (var step = 0u; step < nSteps; step++) {
    ${stream}
    workgroupBarrier();
    ${loadStreamed}
    workgroupBarrier();
    ${I.map((i) => J.map((j) => `var s${i}_${j} = 0.0; var dp${i}_${j} = 0.0;`).join(" ")).join("\n    ")}
    for (var c = 0u; c < ${D4}u; c++) {
      ${I.map((i) => `let a1_${i} = A1[${own(i)}][c]; let a2_${i} = A2[${own(i)}][c];`).join(" ")}
      ${J.map((j) => `let b1_${j} = B1[${str(j)}][c]; let b2_${j} = B2[${str(j)}][c];`).join(" ")}
      ${I.flatMap((i) => J.map((j) => E.map((e) => `s${i}_${j} = fma(a1_${i}[${e}], b1_${j}[${e}], s${i}_${j}); dp${i}_${j} = fma(a2_${i}[${e}], b2_${j}[${e}], dp${i}_${j});`).join(" "))).join("\n      ")}
    }
    ${I.flatMap((i) => J.map((j) => `var p${i}_${j} = exp2(s${i}_${j} * u.qscale - ${lse2(i, j)});`)).join("\n    ")}
    if (${needMask}) {
      ${I.flatMap((i) =>
        J.map((j) => {
          const [t, key] = pair(i, j);
          return `if (!(${t} < u.T && visible(${t}, ${key}))) { p${i}_${j} = 0.0; }`;
        }),
      ).join("\n      ")}
    }
    ${J.flatMap((j) =>
      G4.map((g4) => {
        const ds = E.map((e) => `p${g4 * 4 + e}_${j} * (dp${g4 * 4 + e}_${j} - ${Dof(g4 * 4 + e, j)})`).join(", ");
        const p = E.map((e) => `p${g4 * 4 + e}_${j}`).join(", ");
        return `dSt[${str(j)}][${own(g4)}] = vec4<f32>(${ds});${dq ? "" : ` Pt[${str(j)}][${own(g4)}] = vec4<f32>(${p});`}`;
      }),
    ).join("\n    ")}
    workgroupBarrier();
    ${update}
  }
  ${storeRows}
}
`,
  };
}
