/**
 * Tiled attention in WGSL: the FlashAttention-2 forward (Dao 2023, Alg. 1) and backward
 * (Alg. 2, split into a dK/dV pass over key blocks and a dQ pass over query blocks, so that no
 * two workgroups write the same output and no atomics are needed).
 * Layouts as backend/ref/attention.ts: q, out (B, T, H, K); k, v (B, kvRows, G, K); lse (B, H, T).
 *
 * Forward, per workgroup (query block of BQ rows, head h, sequence b): Q is loaded once into
 * workgroup memory, pre-multiplied by scale * log2(e) so that probabilities are exp2(s - m).
 * For each block of BKV keys: K and V tiles are loaded; thread (ty, tx) computes scores for rows
 * ty*RQ .. ty*RQ+RQ-1 against keys tx, tx+TX, ...; the row maximum is combined through
 * workgroup memory; the rescaled probabilities P go to workgroup memory (over the K tile, which
 * is no longer needed); then the same thread accumulates O for the same rows over head columns
 * tx, tx+TX, ... (vec4s). Row statistics (m, and the thread's partial l) therefore live in the
 * registers of the threads that own the row; l is summed across the row's threads once, at the
 * end. Causal blocks stop at the last key the block's last query sees.
 *
 * Tile shapes are chosen per head size from the device's workgroup memory (48 KiB on an H100,
 * 32 KiB on SwiftShader); any head size up to 256 works (vec4 global loads when K % 4 == 0).
 */
import type { AttentionDims, CoreKernels } from "../kernels.js";
import { SeqlabError } from "../../util/errors.js";
import type { GpuContext, KernelDef } from "./context.js";
import { grid1d } from "./context.js";
import type { GpuTensorBuffer } from "./pool.js";
import { INF, LINEAR_INDEX } from "./wgsl.js";

type S = GpuTensorBuffer;

const LOG2E = Math.LOG2E;
/** head sizes the tiled kernels support */
export const MAX_HEAD_SIZE = 256;

/** A tile configuration: BM rows of the "own" operand (queries, or keys in dK/dV), BN of the other. */
export interface TileConfig {
  /** rows owned by the workgroup (queries in forward and dQ, keys in dK/dV) */
  BM: number;
  /** rows streamed through workgroup memory per step */
  BN: number;
  /** own rows per thread */
  RM: number;
  /** threads sharing a row */
  TX: number;
}

/** vec4s per head row */
const kv4 = (K: number) => Math.ceil(K / 4);

function threads(c: TileConfig): number {
  return (c.BM / c.RM) * c.TX;
}

/** Workgroup bytes of each kernel for a config and head size. */
export function forwardBytes(c: TileConfig, K: number): number {
  const KV = kv4(K);
  const q = c.BM * (KV + 1);
  const kp = Math.max(c.BN * (KV + 1), c.BM * (c.BN / 4 + 1));
  const v = c.BN * KV;
  return 16 * (q + kp + v) + 4 * c.BM * c.TX;
}

function backwardBytes(c: TileConfig, K: number): number {
  const KV = kv4(K);
  // own rows: two tiles (Q, dO or K, V); streamed rows: two tiles; one or two probability tiles; row scalars
  return 16 * (2 * c.BM * (KV + 1) + 2 * c.BN * (KV + 1) + 2 * c.BM * (c.BN / 4 + 1)) + 8 * c.BN + 8 * c.BM;
}

/** Candidate configs, best first. */
const CANDIDATES: TileConfig[] = [
  { BM: 64, BN: 32, RM: 4, TX: 8 },
  { BM: 64, BN: 32, RM: 4, TX: 4 },
  { BM: 32, BN: 32, RM: 4, TX: 8 },
  { BM: 32, BN: 32, RM: 4, TX: 4 },
  { BM: 32, BN: 16, RM: 4, TX: 8 },
  { BM: 32, BN: 16, RM: 2, TX: 8 },
  { BM: 16, BN: 16, RM: 2, TX: 8 },
  { BM: 16, BN: 8, RM: 2, TX: 8 },
  { BM: 8, BN: 8, RM: 1, TX: 8 },
  { BM: 8, BN: 4, RM: 1, TX: 4 },
  { BM: 4, BN: 4, RM: 1, TX: 4 },
  // head sizes below 16
  { BM: 32, BN: 32, RM: 4, TX: 2 },
  { BM: 32, BN: 32, RM: 4, TX: 1 },
];

/**
 * The first candidate that fits the workgroup memory and invocation limits, keeps the
 * per-thread output block within 64 floats, and does not leave most threads without columns.
 */
export function chooseTiles(K: number, limits: { bytes: number; invocations: number }, bytesOf: (c: TileConfig, K: number) => number): TileConfig {
  const KV = kv4(K);
  for (const c of CANDIDATES) {
    if (bytesOf(c, K) > limits.bytes || threads(c) > limits.invocations) continue;
    if (c.RM * Math.ceil(KV / c.TX) * 4 > 64) continue;
    if (c.TX > KV) continue;
    return c;
  }
  throw new SeqlabError(`webgpu: no attention tile fits head size ${K} in ${limits.bytes} bytes of workgroup memory`);
}

/** WGSL loads/stores of four consecutive head elements at vec4 column c of a row at `base`. */
function rowAccess(name: string, K: number, vec: boolean, store = false): string {
  if (vec) {
    return store
      ? `fn st_${name}(base: u32, c: u32, x_: vec4<f32>) { ${name}[base / 4u + c] = x_; }\n`
      : `fn ld_${name}(base: u32, c: u32) -> vec4<f32> { return ${name}[base / 4u + c]; }\n`;
  }
  const comps = ["x", "y", "z", "w"];
  if (store) {
    return `fn st_${name}(base: u32, c: u32, x_: vec4<f32>) {\n${comps.map((x, e) => `  if (c * 4u + ${e}u < ${K}u) { ${name}[base + c * 4u + ${e}u] = x_.${x}; }`).join("\n")}\n}\n`;
  }
  return `fn ld_${name}(base: u32, c: u32) -> vec4<f32> {\n  var r_ = vec4<f32>(0.0);\n${comps.map((x, e) => `  if (c * 4u + ${e}u < ${K}u) { r_.${x} = ${name}[base + c * 4u + ${e}u]; }`).join("\n")}\n  return r_;\n}\n`;
}

const arr = (vec: boolean) => (vec ? "array<vec4<f32>>" : "array<f32>");

/** Shared uniforms of the attention kernels. */
const UNIFORMS: KernelDef["uniforms"] = [
  ["T", "u32"],
  ["S", "u32"],
  ["H", "u32"],
  ["G", "u32"],
  ["kvRows", "u32"],
  ["qOffset", "i32"],
  ["causal", "u32"],
  ["qscale", "f32"],
  ["nBlocks", "u32"],
];

function uniformValues(d: AttentionDims, nBlocks: number): number[] {
  return [d.T, d.S, d.H, d.G, d.kvRows, d.qOffset, d.causal ? 1 : 0, d.scale * LOG2E, nBlocks];
}

/** WGSL: element offset of query row t of head h, and of key row j of KV head g. */
const INDEX = /* wgsl */ `
fn qRow(b: u32, t: u32, h: u32) -> u32 { return ((b * u.T + t) * u.H + h) * HEAD; }
fn kvRow(b: u32, j: u32, g: u32) -> u32 { return ((b * u.kvRows + j) * u.G + g) * HEAD; }
fn visible(t: u32, j: u32) -> bool {
  return j < u.S && (u.causal == 0u || i32(j) <= u.qOffset + i32(t));
}
`;

/** Code that loads `rows` rows of a (rows x KV) tile into workgroup memory, zero past `limit`. */
function loadTile(opts: { base: (row: string) => string; stride: number; rows: number; KV: number; nt: number; rowIndex: string; limit: string; loads: [string, string, string?][] }): string {
  const { stride, rows, KV, nt } = opts;
  const body = opts.loads
    .map(([d, fn, scale]) => `${d}[r * ${stride}u + c] = select(vec4<f32>(0.0), ${fn}(base, c)${scale ? ` * ${scale}` : ""}, ok);`)
    .join("\n    ");
  return `for (var idx = lid; idx < ${rows * KV}u; idx += ${nt}u) {
    let r = idx / ${KV}u;
    let c = idx - r * ${KV}u;
    let row = ${opts.rowIndex};
    let ok = row < ${opts.limit};
    let base = ${opts.base("select(0u, row, ok)")};
    ${body}
  }`;
}

// ---------------------------------------------------------------- forward

function forwardDef(K: number, c: TileConfig, vec: boolean): KernelDef {
  const KV = kv4(K);
  const { BM: BQ, BN: BKV, RM: RQ, TX } = c;
  const TY = BQ / RQ;
  const NT = TY * TX;
  const NK = BKV / TX;
  const NV = Math.ceil(KV / TX);
  const QS = KV + 1; // padded row strides (vec4s): rows land on different banks
  const KS = KV + 1;
  const PS = BKV / 4 + 1;
  const KP = Math.max(BKV * KS, BQ * PS);
  const R = [...Array(RQ).keys()];
  const J = [...Array(NK).keys()];
  const V = [...Array(NV).keys()];
  const colOk = (jj: number) => (KV % TX === 0 ? "true" : `tx + ${jj * TX}u < ${KV}u`);

  const scores = `for (var c = 0u; c < ${KV}u; c++) {
      ${R.map((i) => `let q${i} = Qs[(ty * ${RQ}u + ${i}u) * ${QS}u + c];`).join("\n      ")}
      ${J.map((j) => `let k${j} = KP[(tx + ${j * TX}u) * ${KS}u + c];`).join("\n      ")}
      ${R.flatMap((i) => J.map((j) => `s${i}_${j} += dot(q${i}, k${j});`)).join("\n      ")}
    }`;

  return {
    label: `attentionForward${K}`,
    uniforms: UNIFORMS,
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
var<workgroup> Qs: array<vec4<f32>, ${BQ * QS}>;
var<workgroup> KP: array<vec4<f32>, ${KP}>;
var<workgroup> Vs: array<vec4<f32>, ${BKV * KV}>;
var<workgroup> red: array<f32, ${BQ * TX}>;

@compute @workgroup_size(${NT})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let tx = lid % ${TX}u;
  let ty = lid / ${TX}u;
  let qb = u.nBlocks - 1u - wid.x; // the longest causal blocks start first
  let h = wid.y;
  let b = wid.z;
  let g = h / (u.H / u.G);
  let q0 = qb * ${BQ}u;
  ${loadTile({ base: (r) => `qRow(b, ${r}, h)`, stride: QS, rows: BQ, KV, nt: NT, rowIndex: "q0 + r", limit: "u.T", loads: [["Qs", "ld_q", "u.qscale"]] })}
  ${R.map((i) => `var m${i} = -1.0e30;\n  var l${i} = 0.0;\n  ${V.map((jj) => `var o${i}_${jj} = vec4<f32>(0.0);`).join(" ")}`).join("\n  ")}
  var kvEnd = i32(u.S);
  if (u.causal != 0u) { kvEnd = clamp(u.qOffset + i32(q0) + ${BQ}, 0, i32(u.S)); }
  let nTiles = (u32(kvEnd) + ${BKV - 1}u) / ${BKV}u;
  for (var tile = 0u; tile < nTiles; tile++) {
    let kv0 = tile * ${BKV}u;
    workgroupBarrier();
    ${loadTile({ base: (r) => `kvRow(b, ${r}, g)`, stride: KS, rows: BKV, KV, nt: NT, rowIndex: "kv0 + r", limit: "u.S", loads: [["KP", "ld_k"]] })}
    ${loadTile({ base: (r) => `kvRow(b, ${r}, g)`, stride: KV, rows: BKV, KV, nt: NT, rowIndex: "kv0 + r", limit: "u.S", loads: [["Vs", "ld_v"]] })}
    workgroupBarrier();
    ${R.flatMap((i) => J.map((j) => `var s${i}_${j} = 0.0;`)).join(" ")}
    ${scores}
    ${R.map(
      (i) => `{
      let t = q0 + ty * ${RQ}u + ${i}u;
      var mx = -1.0e30;
      ${J.map((j) => `if (!visible(t, kv0 + tx + ${j * TX}u)) { s${i}_${j} = -3.0e38; }\n      mx = max(mx, s${i}_${j});`).join("\n      ")}
      red[(ty * ${RQ}u + ${i}u) * ${TX}u + tx] = mx;
    }`,
    ).join("\n    ")}
    workgroupBarrier();
    ${R.map(
      (i) => `{
      let row = ty * ${RQ}u + ${i}u;
      var mt = m${i};
      for (var x = 0u; x < ${TX}u; x++) { mt = max(mt, red[row * ${TX}u + x]); }
      let corr = exp2(m${i} - mt);
      m${i} = mt;
      l${i} *= corr;
      ${V.map((jj) => `o${i}_${jj} *= corr;`).join(" ")}
      ${J.map(
        (j) => `let p${j} = select(exp2(s${i}_${j} - mt), 0.0, s${i}_${j} < -1.0e38);
      l${i} += p${j};
      KP[row * ${PS}u + (tx + ${j * TX}u) / 4u][(tx + ${j * TX}u) & 3u] = p${j};`,
      ).join("\n      ")}
    }`,
    ).join("\n    ")}
    workgroupBarrier();
    for (var k4 = 0u; k4 < ${BKV / 4}u; k4++) {
      ${R.map((i) => `let p${i} = KP[(ty * ${RQ}u + ${i}u) * ${PS}u + k4];`).join("\n      ")}
      for (var e = 0u; e < 4u; e++) {
        let key = k4 * 4u + e;
        ${V.map(
          (jj) => `${colOk(jj) === "true" ? "" : `if (${colOk(jj)}) `}{
          let vv = Vs[key * ${KV}u + tx + ${jj * TX}u];
          ${R.map((i) => `o${i}_${jj} += p${i}[e] * vv;`).join(" ")}
        }`,
        ).join("\n        ")}
      }
    }
  }
  workgroupBarrier();
  ${R.map((i) => `red[(ty * ${RQ}u + ${i}u) * ${TX}u + tx] = l${i};`).join("\n  ")}
  workgroupBarrier();
  ${R.map(
    (i) => `{
    let row = ty * ${RQ}u + ${i}u;
    let t = q0 + row;
    var L = 0.0;
    for (var x = 0u; x < ${TX}u; x++) { L += red[row * ${TX}u + x]; }
    let inv = select(1.0 / L, 0.0, L == 0.0);
    if (t < u.T) {
      let base = qRow(b, t, h);
      ${V.map((jj) => `${colOk(jj) === "true" ? "" : `if (${colOk(jj)}) `}{ st_out(base, tx + ${jj * TX}u, o${i}_${jj} * inv); }`).join("\n      ")}
      if (tx == 0u) {
        lse[(b * u.H + h) * u.T + t] = select((m${i} + log2(L)) * ${Math.LN2}, infinity_(-1.0 - L), L == 0.0);
      }
    }
  }`,
  ).join("\n  ")}
}
`,
  };
}

// ---------------------------------------------------------------- backward

/** D = rowsum(dO * O) per (b, h, t), laid out as lse. */
function rowDotDef(): KernelDef {
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

/**
 * The shared body of both backward kernels. The workgroup owns BM rows of one side ("own":
 * queries for dQ, keys for dK/dV) and streams BN rows of the other. For each streamed block it
 * recomputes scores and dP = dO V^T, forms P = exp2(s - lse) and dS = P (dP - D), writes them to
 * workgroup memory transposed as needed, and accumulates the owned gradient rows.
 */
function backwardDef(kind: "dq" | "dkv", K: number, c: TileConfig, vec: boolean): KernelDef {
  const KV = kv4(K);
  const { BM, BN, RM, TX } = c;
  const TY = BM / RM;
  const NT = TY * TX;
  const NN = BN / TX;
  const NV = Math.ceil(KV / TX);
  const OS = KV + 1;
  const PS = BN / 4 + 1;
  const R = [...Array(RM).keys()];
  const J = [...Array(NN).keys()];
  const V = [...Array(NV).keys()];
  const colOk = (jj: number) => (KV % TX === 0 ? "true" : `tx + ${jj * TX}u < ${KV}u`);
  const dq = kind === "dq";
  // own tiles A1, A2 and streamed tiles B1, B2: scores = A1 . B1, dP = A2 . B2 (dq: Q.K, dO.V; dkv: K.Q, V.dO)
  const accs = dq ? ["dq"] : ["dk", "dv"];
  const stats = (n: string) => (dq ? `lse2_${n}` : `lseS[${n}]`);

  const loadOwn = dq
    ? `${loadTile({ base: (r) => `qRow(b, ${r}, h)`, stride: OS, rows: BM, KV, nt: NT, rowIndex: "m0 + r", limit: "u.T", loads: [["A1", "ld_q"], ["A2", "ld_dout"]] })}`
    : `${loadTile({ base: (r) => `kvRow(b, ${r}, g)`, stride: OS, rows: BM, KV, nt: NT, rowIndex: "m0 + r", limit: "u.S", loads: [["A1", "ld_k"], ["A2", "ld_v"]] })}`;
  const loadStreamed = dq
    ? `${loadTile({ base: (r) => `kvRow(b, ${r}, g)`, stride: OS, rows: BN, KV, nt: NT, rowIndex: "n0 + r", limit: "u.S", loads: [["B1", "ld_k"], ["B2", "ld_v"]] })}`
    : `${loadTile({ base: (r) => `qRow(b, ${r}, h)`, stride: OS, rows: BN, KV, nt: NT, rowIndex: "n0 + r", limit: "u.T", loads: [["B1", "ld_q"], ["B2", "ld_dout"]] })}
    for (var r = lid; r < ${BN}u; r += ${NT}u) {
      let t = n0 + r;
      let ok = t < u.T;
      let at = (b * u.H + h) * u.T + select(0u, t, ok);
      lseS[r] = select(0.0, lse[at] * ${LOG2E}, ok);
      DS[r] = select(0.0, Dv[at], ok);
    }`;

  // probabilities P (streamed x own for dkv: P^T) and dS in workgroup memory
  const pIndex = (i: number, j: number) => `(ty * ${RM}u + ${i}u) * ${PS}u + (tx + ${j * TX}u) / 4u][(tx + ${j * TX}u) & 3u]`;
  const rowT = (i: number, j: number) => {
    const own = `m0 + ty * ${RM}u + ${i}u`;
    const str = `n0 + tx + ${j * TX}u`;
    return dq ? [own, str] : [str, own];
  };

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
var<workgroup> A1: array<vec4<f32>, ${BM * OS}>;
var<workgroup> A2: array<vec4<f32>, ${BM * OS}>;
var<workgroup> B1: array<vec4<f32>, ${BN * OS}>;
var<workgroup> B2: array<vec4<f32>, ${BN * OS}>;
var<workgroup> Ps: array<vec4<f32>, ${BM * PS}>;
var<workgroup> dSs: array<vec4<f32>, ${BM * PS}>;
var<workgroup> lseS: array<f32, ${BN}>;
var<workgroup> DS: array<f32, ${BN}>;

@compute @workgroup_size(${NT})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let tx = lid % ${TX}u;
  let ty = lid / ${TX}u;
  let b = wid.z;
  let m0 = (u.nBlocks - 1u - wid.x) * ${BM}u;
  ${
    dq
      ? `let h = wid.y;
  let g = h / (u.H / u.G);
  ${R.map((i) => `let tt${i} = min(m0 + ty * ${RM}u + ${i}u, u.T - 1u);\n  let lse2_${i} = lse[(b * u.H + h) * u.T + tt${i}] * ${LOG2E};\n  let D_${i} = Dv[(b * u.H + h) * u.T + tt${i}];`).join("\n  ")}`
      : `let g = wid.y;
  let hPerG = u.H / u.G;`
  }
  ${loadOwn}
  ${R.map((i) => accs.map((a) => V.map((jj) => `var ${a}${i}_${jj} = vec4<f32>(0.0);`).join(" ")).join(" ")).join("\n  ")}
  ${
    dq
      ? `var nEnd = i32(u.S);
  if (u.causal != 0u) { nEnd = clamp(u.qOffset + i32(m0) + ${BM}, 0, i32(u.S)); }
  let nStart = 0u;
  let nBlocksStreamed = (u32(nEnd) + ${BN - 1}u) / ${BN}u;
  {
    {`
      : `var nStart = 0u;
  if (u.causal != 0u) { nStart = u32(max(i32(m0) - u.qOffset, 0)) / ${BN}u; }
  var nBlocksStreamed = (u.T + ${BN - 1}u) / ${BN}u;
  if (m0 >= u.S) { nBlocksStreamed = 0u; }
  for (var hh = 0u; hh < hPerG; hh++) {
    let h = g * hPerG + hh;
    {`
  }
    for (var blk = nStart; blk < nBlocksStreamed; blk++) {
      let n0 = blk * ${BN}u;
      workgroupBarrier();
      ${loadStreamed}
      workgroupBarrier();
      ${R.flatMap((i) => J.map((j) => `var s${i}_${j} = 0.0; var dp${i}_${j} = 0.0;`)).join(" ")}
      for (var c = 0u; c < ${KV}u; c++) {
        ${R.map((i) => `let a1_${i} = A1[(ty * ${RM}u + ${i}u) * ${OS}u + c]; let a2_${i} = A2[(ty * ${RM}u + ${i}u) * ${OS}u + c];`).join("\n        ")}
        ${J.map((j) => `let b1_${j} = B1[(tx + ${j * TX}u) * ${OS}u + c]; let b2_${j} = B2[(tx + ${j * TX}u) * ${OS}u + c];`).join("\n        ")}
        ${R.flatMap((i) => J.map((j) => `s${i}_${j} += dot(a1_${i}, b1_${j}); dp${i}_${j} += dot(a2_${i}, b2_${j});`)).join("\n        ")}
      }
      ${R.flatMap((i) =>
        J.map((j) => {
          const [t, jj] = rowT(i, j);
          const lse2 = dq ? `lse2_${i}` : stats(`tx + ${j * TX}u`);
          const D = dq ? `D_${i}` : `DS[tx + ${j * TX}u]`;
          return `{
        let ok = ${t} < u.T && visible(${t}, ${jj});
        let p = select(0.0, exp2(s${i}_${j} * u.qscale - ${lse2}), ok);
        Ps[${pIndex(i, j)} = p;
        dSs[${pIndex(i, j)} = p * (dp${i}_${j} - ${D});
      }`;
        }),
      ).join("\n      ")}
      workgroupBarrier();
      for (var n4 = 0u; n4 < ${BN / 4}u; n4++) {
        ${R.map((i) => `let ds${i} = dSs[(ty * ${RM}u + ${i}u) * ${PS}u + n4];${dq ? "" : ` let p${i} = Ps[(ty * ${RM}u + ${i}u) * ${PS}u + n4];`}`).join("\n        ")}
        for (var e = 0u; e < 4u; e++) {
          let n = n4 * 4u + e;
          ${V.map(
            (jj) => `${colOk(jj) === "true" ? "" : `if (${colOk(jj)}) `}{
            let b1 = B1[n * ${OS}u + tx + ${jj * TX}u];
            ${dq ? "" : `let b2 = B2[n * ${OS}u + tx + ${jj * TX}u];`}
            ${R.map((i) => (dq ? `dq${i}_${jj} += ds${i}[e] * b1;` : `dk${i}_${jj} += ds${i}[e] * b1; dv${i}_${jj} += p${i}[e] * b2;`)).join(" ")}
          }`,
          ).join("\n          ")}
        }
      }
    }
    }
  }
  ${R.map((i) => {
    const row = `m0 + ty * ${RM}u + ${i}u`;
    const lim = dq ? "u.T" : "u.kvRows";
    const base = dq ? `qRow(b, r${i}, wid.y)` : `kvRow(b, r${i}, g)`;
    const st = V.map(
      (jj) =>
        `${colOk(jj) === "true" ? "" : `if (${colOk(jj)}) `}{ ${
          dq ? `st_dq(base, tx + ${jj * TX}u, dq${i}_${jj} * u.qscale * ${Math.LN2});` : `st_dk(base, tx + ${jj * TX}u, dk${i}_${jj} * u.qscale * ${Math.LN2}); st_dv(base, tx + ${jj * TX}u, dv${i}_${jj});`
        } }`,
    ).join(" ");
    return `{\n    let r${i} = ${row};\n    if (r${i} < ${lim}) {\n      let base = ${base};\n      ${st}\n    }\n  }`;
  }).join("\n  ")}
}
`,
  };
}

export function attentionKernels(ctx: GpuContext): Pick<CoreKernels<S>, "attentionForward" | "attentionBackward"> {
  const limits = () => ({ bytes: ctx.limits.maxComputeWorkgroupStorageSize, invocations: ctx.limits.maxComputeInvocationsPerWorkgroup });
  const checkDims = (d: AttentionDims) => {
    if (d.K > MAX_HEAD_SIZE) throw new SeqlabError(`webgpu: attention head size ${d.K} is above the supported ${MAX_HEAD_SIZE}`);
    if (d.H % d.G !== 0) throw new Error(`internal: attention H=${d.H} is not a multiple of G=${d.G}`);
  };
  return {
    attentionForward(out, lse, q, k, v, d) {
      checkDims(d);
      if (d.B * d.T * d.H === 0) return;
      const c = chooseTiles(d.K, limits(), forwardBytes);
      const vec = d.K % 4 === 0;
      const p = ctx.pipeline(`attentionForward:${d.K}:${c.BM}:${c.BN}:${c.RM}:${c.TX}:${vec}`, () => forwardDef(d.K, c, vec));
      const nQB = Math.ceil(d.T / c.BM);
      ctx.dispatch(p, [out, lse, q, k, v], uniformValues(d, nQB), [nQB, d.H, d.B]);
    },

    attentionBackward(dq, dk, dv, dout, q, k, v, out, lse, d) {
      checkDims(d);
      if (d.B * d.kvRows * d.G === 0 && d.B * d.T * d.H === 0) return;
      const D = ctx.pool.acquire(Math.max(1, d.B * d.H * d.T) * 4);
      const n = d.B * d.H * d.T;
      if (n > 0) ctx.dispatch(ctx.pipeline("attentionRowDot", rowDotDef), [D, dout, out], [n, d.T, d.H, d.K], grid1d(n, 64));
      const vec = d.K % 4 === 0;
      const c = chooseTiles(d.K, limits(), backwardBytes);
      const pkv = ctx.pipeline(`attentionBackwardKV:${d.K}:${c.BM}:${c.BN}:${c.RM}:${c.TX}:${vec}`, () => backwardDef("dkv", d.K, c, vec));
      const nKB = Math.ceil(d.kvRows / c.BM);
      if (nKB > 0) ctx.dispatch(pkv, [dk, dv, dout, q, k, v, lse, D], uniformValues(d, nKB), [nKB, d.G, d.B]);
      const pq = ctx.pipeline(`attentionBackwardQ:${d.K}:${c.BM}:${c.BN}:${c.RM}:${c.TX}:${vec}`, () => backwardDef("dq", d.K, c, vec));
      const nQB = Math.ceil(d.T / c.BM);
      if (nQB > 0) ctx.dispatch(pq, [dq, dout, q, k, v, lse, D], uniformValues(d, nQB), [nQB, d.H, d.B]);
      ctx.pool.release(D);
    },
  };
}
