/**
 * The matmuls the tiled f32 kernel (matmul.ts) hands over: half-precision weights (MatmulDims
 * bDtype "f16" / "bf16": b is u16 bits packed two to a u32 word, element 0 in the low half, as
 * cast writes them) and matrix-vector products (M = 1, decoding).
 *
 * Matrix-vector: every weight is read exactly once. With f32 b (N, K) (transB, a Linear's
 * weight, the decoding case) and K a multiple of 4, a group of R lanes (a subgroup's width, at
 * most 32) reads row j as vec4s, UNROLL loads in flight per lane, and sums across its lanes with
 * subgroup shuffles; a workgroup holds 256 / R rows. This is the kernel a decoding step spends its
 * weight reads in: the LM head alone is V x C floats. Otherwise, with b (N, K), a workgroup of 64
 * threads reads row j contiguously and sums it in workgroup memory; with b (K, N) a thread per
 * column j walks down the column, neighbouring threads reading neighbouring words. Half weights
 * are widened in registers as they are read; accumulation is f32.
 *
 * Half-weight matmul (M > 1): 16 x 16 output tiles, a and the decoded b staged in workgroup
 * memory 16 deep along K, so each weight is decoded once per tile row of the output.
 */
import type { MatmulDims, WeightDtype } from "../kernels.js";
import type { GpuContext } from "./context.js";
import { grid1d } from "./context.js";
import { HALF } from "./wgsl.js";
import { launch, segmentSum, type S } from "./kit.js";

const TILE = 16;
const ROW_WG = 64;

const UNIFORMS: [string, "u32"][] = [["M", "u32"], ["N", "u32"], ["K", "u32"], ["sA", "u32"], ["sB", "u32"], ["sO", "u32"], ["acc", "u32"]];

/** WGSL `bAt(e)`: element e of b as f32, for b's storage dtype. */
function loader(dtype: WeightDtype): string {
  if (dtype === "f32") return `fn bAt(e: u32) -> f32 { return bitcast<f32>(b[e]); }\n`;
  const dec = dtype === "f16" ? "f16_bits_to_f32_bits" : "bf16_bits_to_f32_bits";
  return `${HALF}
fn bAt(e: u32) -> f32 {
  let w = b[e >> 1u];
  return bitcast<f32>(${dec}(select(w & 0xffffu, w >> 16u, (e & 1u) == 1u)));
}
`;
}

/**
 * Run `matmul` here when this file owns it (half weights, or M = 1); false leaves it to the
 * tiled f32 kernel.
 */
export function routeMatmul(ctx: GpuContext, out: S, a: S, b: S, d: MatmulDims): boolean {
  const dtype = d.bDtype ?? "f32";
  if (dtype === "f32" && d.M !== 1) return false;
  const batch = d.batch ?? 1;
  if (d.M === 0 || d.N === 0 || batch === 0) return true;
  const uni = [d.M, d.N, d.K, d.strideA ?? d.M * d.K, d.strideB ?? d.K * d.N, d.strideOut ?? d.M * d.N, d.accumulate ? 1 : 0];
  if (d.M === 1) matvec(ctx, out, a, b, d, dtype, uni, batch);
  else halfTiled(ctx, out, a, b, d, dtype, uni, batch);
  return true;
}

/** Lanes per row of the vec4 matrix-vector kernel; `shuffle` false sums them in workgroup memory. */
export interface MatvecPlan {
  lanes: number;
  shuffle: boolean;
}

/** The widest lane group a subgroup holds, up to 32 (workgroup-memory sums without subgroups). */
export function matvecPlan(subgroupMinSize: number): MatvecPlan {
  return subgroupMinSize >= 4 ? { lanes: Math.min(32, subgroupMinSize), shuffle: true } : { lanes: 32, shuffle: false };
}

const VEC_WG = 256;
const UNROLL = 4;

/** f32 b (N, K) with K and the strides multiples of 4: rows as vec4s, see the file comment. */
export function matvecRowsVec4(ctx: GpuContext, plan: MatvecPlan, out: S, a: S, b: S, uni: number[], N: number, batch: number): void {
  const R = plan.lanes;
  const rows = VEC_WG / R;
  const masks = [];
  for (let m = R >> 1; m >= 1; m >>= 1) masks.push(m);
  const reduce = plan.shuffle
    ? masks.map((m) => `s += subgroupShuffleXor(s, ${m}u);`).join(" ")
    : `s = lanesum(s, lid, ${R}u);`;
  const [gx, gy] = grid1d(N, rows);
  launch(
    ctx,
    `matvec:vec4:${R}:${+plan.shuffle}`,
    () => ({
      label: "matvec:vec4",
      uniforms: UNIFORMS,
      bindings: [["out", "write", "array<f32>"], ["a", "read", "array<vec4<f32>>"], ["b", "read", "array<vec4<f32>>"]],
      enables: plan.shuffle ? ["subgroups"] : [],
      body: `${plan.shuffle ? "" : segmentSum("lanesum", VEC_WG, "f32")}
@compute @workgroup_size(${VEC_WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  // lanes of one row are consecutive invocations, inside one subgroup when shuffling
  let lane = lid % ${R}u;
  let j = (wid.y * nwg.x + wid.x) * ${rows}u + lid / ${R}u;
  let p = wid.z;
  var s = 0.0;
  if (j < u.N) {
    let ao = (p * u.sA) >> 2u;
    let row = (p * u.sB + j * u.K) >> 2u;
    let K4 = u.K >> 2u;
    var acc = vec4<f32>(0.0);
    var k = lane;
    // UNROLL independent loads in flight before their multiply-adds
    for (; k + ${(UNROLL - 1) * R}u < K4; k += ${UNROLL * R}u) {
      ${[...Array(UNROLL).keys()].map((i) => `let b${i} = b[row + k + ${i * R}u];`).join(" ")}
      ${[...Array(UNROLL).keys()].map((i) => `let a${i} = a[ao + k + ${i * R}u];`).join(" ")}
      acc = ${[...Array(UNROLL).keys()].map((i) => `a${i} * b${i}`).join(" + ")} + acc;
    }
    for (; k < K4; k += ${R}u) { acc = a[ao + k] * b[row + k] + acc; }
    s = (acc.x + acc.y) + (acc.z + acc.w);
  }
  ${reduce}
  if (lane == 0u && j < u.N) {
    let o = p * u.sO + j;
    out[o] = select(0.0, out[o], u.acc != 0u) + s;
  }
}`,
    }),
    [out, a, b],
    uni,
    [gx, gy, batch],
  );
}

function matvec(ctx: GpuContext, out: S, a: S, b: S, d: MatmulDims, dtype: WeightDtype, uni: number[], batch: number): void {
  const [, , K, sA, sB] = uni;
  if (dtype === "f32" && d.transB && K % 4 === 0 && sA % 4 === 0 && sB % 4 === 0) {
    matvecRowsVec4(ctx, matvecPlan(ctx.acquired.subgroupMinSize), out, a, b, uni, d.N, batch);
    return;
  }
  const bindings: [string, "read" | "write", string][] = [["out", "write", "array<f32>"], ["a", "read", "array<f32>"], ["b", "read", "array<u32>"]];
  if (d.transB) {
    launch(
      ctx,
      `matvec:rows:${dtype}`,
      () => ({
        label: "matvec:rows",
        uniforms: UNIFORMS,
        bindings,
        body: `${loader(dtype)}${segmentSum("wsum", ROW_WG, "f32")}
@compute @workgroup_size(${ROW_WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let j = wid.y * nwg.x + wid.x;
  if (j >= u.N) { return; }
  let p = wid.z;
  let ao = p * u.sA;
  let row = p * u.sB + j * u.K;
  var s = 0.0;
  for (var k = lid; k < u.K; k += ${ROW_WG}u) { s += a[ao + k] * bAt(row + k); }
  let t = wsum(s, lid, ${ROW_WG}u);
  if (lid == 0u) {
    let o = p * u.sO + j;
    out[o] = select(0.0, out[o], u.acc != 0u) + t;
  }
}`,
      }),
      [out, a, b],
      uni,
      [Math.min(d.N, 65535), Math.ceil(d.N / 65535), batch],
    );
    return;
  }
  launch(
    ctx,
    `matvec:cols:${dtype}`,
    () => ({
      label: "matvec:cols",
      uniforms: UNIFORMS,
      bindings,
      body: `${loader(dtype)}
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let j = gid.x;
  if (j >= u.N) { return; }
  let p = gid.z;
  let ao = p * u.sA;
  let bo = p * u.sB + j;
  var s = 0.0;
  for (var k = 0u; k < u.K; k++) { s += a[ao + k] * bAt(bo + k * u.N); }
  let o = p * u.sO + j;
  out[o] = select(0.0, out[o], u.acc != 0u) + s;
}`,
    }),
    [out, a, b],
    uni,
    [Math.ceil(d.N / 64), 1, batch],
  );
}

function halfTiled(ctx: GpuContext, out: S, a: S, b: S, d: MatmulDims, dtype: WeightDtype, uni: number[], batch: number): void {
  const aAt = d.transA ? "a[ao + k * u.M + i]" : "a[ao + i * u.K + k]";
  const bIdx = d.transB ? "bo + j * u.K + k" : "bo + k * u.N + j";
  launch(
    ctx,
    `matmul:half:${dtype}:${+d.transA}${+d.transB}`,
    () => ({
      label: "matmul:half",
      uniforms: UNIFORMS,
      bindings: [["out", "write", "array<f32>"], ["a", "read", "array<f32>"], ["b", "read", "array<u32>"]],
      body: `${loader(dtype)}
var<workgroup> ta: array<array<f32, ${TILE}>, ${TILE}>;
var<workgroup> tb: array<array<f32, ${TILE}>, ${TILE}>;
@compute @workgroup_size(${TILE}, ${TILE})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let p = wid.z;
  let ao = p * u.sA;
  let bo = p * u.sB;
  let row = wid.y * ${TILE}u + lid.y;
  let col = wid.x * ${TILE}u + lid.x;
  var s = 0.0;
  for (var k0 = 0u; k0 < u.K; k0 += ${TILE}u) {
    // a[row, k0 + lid.x] and b[k0 + lid.y, col], zero outside
    let i = row;
    var k = k0 + lid.x;
    ta[lid.y][lid.x] = select(0.0, ${aAt}, i < u.M && k < u.K);
    let j = col;
    k = k0 + lid.y;
    var bv = 0.0;
    if (j < u.N && k < u.K) { bv = bAt(${bIdx}); }
    tb[lid.y][lid.x] = bv;
    workgroupBarrier();
    for (var q = 0u; q < ${TILE}u; q++) { s += ta[lid.y][q] * tb[q][lid.x]; }
    workgroupBarrier();
  }
  if (row < u.M && col < u.N) {
    let o = p * u.sO + row * u.N + col;
    out[o] = select(0.0, out[o], u.acc != 0u) + s;
  }
}`,
    }),
    [out, a, b],
    uni,
    [Math.ceil(d.N / TILE), Math.ceil(d.M / TILE), batch],
  );
}

/** out (n, C) = table[ids] widened from half bits: the half-table path of embeddingForward. */
export function embeddingHalf(ctx: GpuContext, out: S, ids: S, table: S, n: number, C: number, dtype: "f16" | "bf16"): void {
  if (n * C === 0) return;
  const dec = dtype === "f16" ? "f16_bits_to_f32_bits" : "bf16_bits_to_f32_bits";
  launch(
    ctx,
    `embedding:${dtype}`,
    () => ({
      label: `embedding:${dtype}`,
      uniforms: [["n", "u32"], ["C", "u32"]],
      bindings: [["out", "write", "array<u32>"], ["ids", "read", "array<i32>"], ["table", "read", "array<u32>"]],
      body: `${HALF}
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let c = gid.x;
  let i = gid.y + gid.z * 65535u;
  if (c >= u.C || i >= u.n) { return; }
  let e = u32(ids[i]) * u.C + c;
  let w = table[e >> 1u];
  out[i * u.C + c] = ${dec}(select(w & 0xffffu, w >> 16u, (e & 1u) == 1u));
}`,
    }),
    [out, ids, table],
    [n, C],
    [Math.ceil(C / 64), Math.min(n, 65535), Math.ceil(n / 65535)],
  );
}
