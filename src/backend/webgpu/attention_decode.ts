/**
 * Attention for one query row per sequence (decoding) as split-K "flash decoding" (Dao et al.
 * 2023), the WGSL twin of backend/cpu/assembly/attention_decode.ts. The tiled forward gives a
 * workgroup a block of 64 or 128 query rows, so a single row makes one workgroup per head walk
 * every key of the cache: 12 workgroups on an H200's 132 SMs for a 12-head model, 39 ms of GPU
 * time a token for a 24-layer Llama after 16k tokens. Here the visible keys are cut into chunks
 * of CHUNK and two dispatches do the work:
 *   partials   a workgroup per (chunk, head, sequence): scores s_j = scale q . k_j (log2 units),
 *              m = max_j s_j, p_j = 2^(s_j - m), l = sum_j p_j, o = sum_j p_j v_j, unnormalised;
 *   combine    a workgroup per (head, sequence): M = max_c m_c, w_c = 2^(m_c - M),
 *              out = sum_c w_c o_c / sum_c w_c l_c, lse = (M + log2 sum_c w_c l_c) ln 2.
 * Layouts as backend/ref/attention.ts: q, out (B, 1, H, K); k, v (B, kvRows, G, K); lse (B, H, 1).
 * A row with no visible key gets zeros and lse = -inf, as the other attention paths write.
 */
import type { AttentionDims } from "../kernels.js";
import type { GpuContext, KernelDef } from "./context.js";
import type { GpuTensorBuffer } from "./pool.js";
import { UNIFORMS, uniformValues } from "./attention_tiles.js";
import { INF } from "./wgsl.js";

type S = GpuTensorBuffer;

/** keys per chunk: 16k keys make 128 chunks a head, enough workgroups to fill a large GPU */
const CHUNK = 128;
/** threads of a workgroup: two keys each for the scores, one head column each for P V (K <= 64) */
const WG = 64;

/** WGSL: `name(x, lid)` combines x over the workgroup with `op` (of a and b) and returns the result to every thread. */
function reduction(name: string, op: string): string {
  return /* wgsl */ `
fn ${name}(x: f32, lid: u32) -> f32 {
  red[lid] = x;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s = s / 2u) {
    if (lid < s) {
      let a = red[lid];
      let b = red[lid + s];
      red[lid] = ${op};
    }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}`;
}

/** WGSL shared by both kernels: the visible keys and where a (sequence, head, chunk)'s partials live. */
const COMMON = /* wgsl */ `
const HEAD: u32 = HEAD_SIZE;
const CHUNK: u32 = ${CHUNK}u;
const WG: u32 = ${WG}u;
const PART: u32 = HEAD + 2u; // m, l, o[0..HEAD)
fn visibleKeys() -> u32 {
  if (u.causal == 0u) { return u.S; }
  return u32(clamp(u.qOffset + 1, 0, i32(u.S)));
}
fn partBase(b: u32, h: u32, c: u32) -> u32 { return ((b * u.H + h) * u.nBlocks + c) * PART; }
var<workgroup> red: array<f32, WG>;
${reduction("reduceMax", "max(a, b)")}
${reduction("reduceSum", "a + b")}
`;

/**
 * The partials of one chunk. Scores: thread lid takes keys lid, lid + WG, ... of the chunk, each
 * a dot product over its key row (vec4 loads when K % 4 == 0). P V: thread lid takes head
 * columns lid, lid + WG, ..., so the threads of a warp read consecutive floats of a value row.
 */
function partialsDef(K: number): KernelDef {
  const vec = K % 4 === 0;
  const dot = vec
    ? `var acc = vec4<f32>(0.0);
      let kb = kvRow(b, j, g) / 4u;
      for (var i = 0u; i < HEAD / 4u; i++) { acc += vec4<f32>(qs[4u * i], qs[4u * i + 1u], qs[4u * i + 2u], qs[4u * i + 3u]) * k[kb + i]; }
      s = acc.x + acc.y + acc.z + acc.w;`
    : `var acc = 0.0;
      let kb = kvRow(b, j, g);
      for (var i = 0u; i < HEAD; i++) { acc += qs[i] * k[kb + i]; }
      s = acc;`;
  return {
    label: `attentionDecodePartials K${K}`,
    uniforms: UNIFORMS,
    bindings: [
      ["part", "write", "array<f32>"],
      ["q", "read", "array<f32>"],
      ["k", "read", vec ? "array<vec4<f32>>" : "array<f32>"],
      ["v", "read", "array<f32>"],
    ],
    body: /* wgsl */ `
${COMMON.replace("HEAD_SIZE", `${K}u`)}
${INF}
fn kvRow(b: u32, j: u32, g: u32) -> u32 { return ((b * u.kvRows + j) * u.G + g) * HEAD; }
var<workgroup> qs: array<f32, HEAD>;
var<workgroup> ps: array<f32, CHUNK>;

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let c = wid.x;
  let h = wid.y;
  let b = wid.z;
  let g = h / (u.H / u.G);
  let j0 = c * CHUNK;
  let n = visibleKeys();
  let jn = select(0u, min(CHUNK, n - j0), n > j0);
  // the query row, scaled so that probabilities are powers of two
  for (var i = lid; i < HEAD; i += WG) { qs[i] = q[(b * u.H + h) * HEAD + i] * u.qscale; }
  workgroupBarrier();
  var mLocal = infinity_(-1.0);
  for (var jj = lid; jj < CHUNK; jj += WG) {
    var s = infinity_(-1.0);
    if (jj < jn) {
      let j = j0 + jj;
      ${dot}
    }
    ps[jj] = s;
    mLocal = max(mLocal, s);
  }
  let m = reduceMax(mLocal, lid);
  var lLocal = 0.0;
  for (var jj = lid; jj < CHUNK; jj += WG) {
    let p = select(0.0, exp2(ps[jj] - m), jj < jn);
    ps[jj] = p;
    lLocal += p;
  }
  let l = reduceSum(lLocal, lid); // its barriers also publish ps
  let base = partBase(b, h, c);
  for (var col = lid; col < HEAD; col += WG) {
    var acc = 0.0;
    for (var jj = 0u; jj < jn; jj++) { acc += ps[jj] * v[kvRow(b, j0 + jj, g) + col]; }
    part[base + 2u + col] = acc;
  }
  if (lid == 0u) {
    part[base] = m;
    part[base + 1u] = l;
  }
}
`,
  };
}

/** The merge of a (sequence, head)'s chunks, in chunk order; thread lid writes head columns lid, lid + WG, ... */
function combineDef(K: number): KernelDef {
  return {
    label: `attentionDecodeCombine K${K}`,
    uniforms: UNIFORMS,
    bindings: [
      ["out", "write", "array<f32>"],
      ["lse", "write", "array<f32>"],
      ["part", "read", "array<f32>"],
    ],
    body: /* wgsl */ `
${COMMON.replace("HEAD_SIZE", `${K}u`)}
${INF}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let h = wid.x;
  let b = wid.y;
  var mLocal = infinity_(-1.0);
  for (var c = lid; c < u.nBlocks; c += WG) { mLocal = max(mLocal, part[partBase(b, h, c)]); }
  let M = reduceMax(mLocal, lid);
  let row = (b * u.H + h) * HEAD;
  if (M == infinity_(-1.0)) {
    // no visible key
    for (var col = lid; col < HEAD; col += WG) { out[row + col] = 0.0; }
    if (lid == 0u) { lse[b * u.H + h] = M; }
    return;
  }
  var L = 0.0;
  for (var c = 0u; c < u.nBlocks; c++) {
    let mc = part[partBase(b, h, c)];
    if (mc != infinity_(-1.0)) { L += exp2(mc - M) * part[partBase(b, h, c) + 1u]; }
  }
  for (var col = lid; col < HEAD; col += WG) {
    var acc = 0.0;
    for (var c = 0u; c < u.nBlocks; c++) {
      let base = partBase(b, h, c);
      let mc = part[base];
      if (mc != infinity_(-1.0)) { acc += exp2(mc - M) * part[base + 2u + col]; }
    }
    out[row + col] = acc / L;
  }
  if (lid == 0u) { lse[b * u.H + h] = (M + log2(L)) * ${Math.LN2}; }
}
`,
  };
}

/** Record decoding attention (d.T == 1, f32 keys and values) as partials over key chunks and their merge. */
export function dispatchAttentionDecode(ctx: GpuContext, out: S, lse: S, q: S, k: S, v: S, d: AttentionDims): void {
  if (d.B * d.H === 0) return;
  const nChunks = Math.max(1, Math.ceil(d.S / CHUNK));
  const uniforms = uniformValues(d, nChunks); // nBlocks: the chunks of a head
  const part = ctx.pool.acquire(d.B * d.H * nChunks * (d.K + 2) * 4);
  ctx.dispatch(ctx.pipeline(`attentionDecodePartials:${d.K}`, () => partialsDef(d.K)), [part, q, k, v], uniforms, [nChunks, d.H, d.B]);
  ctx.dispatch(ctx.pipeline(`attentionDecodeCombine:${d.K}`, () => combineDef(d.K)), [out, lse, part], uniforms, [d.H, d.B]);
  ctx.pool.release(part);
}
