/**
 * fp32 operands as pairs of f16 halves, for the tensor-core attention forward (attention_mma.ts).
 * WebGPU's tensor cores (Dawn's chromium-experimental-subgroup-matrix; on NVIDIA through
 * VK_KHR_cooperative_matrix) take f16 or 8-bit operands, never f32, so every operand x is split
 * into hi = x 2^e rounded to 11 bits and lo = f16(x 2^e - hi), with e a power of two per row of Q
 * and K and per column of V that takes the largest magnitude into [2^14, 2^15): hi and lo then
 * hold 22 bits of x's 24 wherever x is within 2^-24 of that largest value, and the product
 * dropped by the three-product form (lo x lo) is 2^-22 of the rest. On an H200 the three products
 * of a 64-long dot product came out at 1.5e-7 of sum |a b| (sequential fp32 sums: 1.0e-7;
 * scripts/probe-tensor-f16.mjs).
 *
 * The copies are head-major and padded to whole tiles: hi, lo (B, heads, rows, K), rows >= n
 * zero, so that the attention kernel reads whole 16-row matrices without bounds tests.
 */
import type { KernelDef } from "./context.js";

/** WGSL types of the 16 x 16 x 16 subgroup matrices both tensor-core kernels use, and their enables. */
export const LEFT = "subgroup_matrix_left<f16, 16, 16>";
export const RIGHT = "subgroup_matrix_right<f16, 16, 16>";
export const RESULT = "subgroup_matrix_result<f32, 16, 16>";
export const MMA_ENABLES = ["f16", "subgroups", "chromium_experimental_subgroup_matrix"];

/** WGSL: acc += a b as three f16 products of the split halves, the small ones first (lo x hi, hi x lo, hi x hi). */
export const mma3 = (acc: string, aH: string, aL: string, bH: string, bL: string) =>
  `${acc} = subgroupMatrixMultiplyAccumulate(${aL}, ${bH}, ${acc}); ${acc} = subgroupMatrixMultiplyAccumulate(${aH}, ${bL}, ${acc}); ${acc} = subgroupMatrixMultiplyAccumulate(${aH}, ${bH}, ${acc});`;

/**
 * WGSL: expOf, the power of two that takes a largest magnitude a into [2^14, 2^15) (zero, inf,
 * NaN: none); hiPart, x rounded to 11 bits (exactly an f16, 0 under f16's normal range; the
 * rounding carries into the exponent as it should), so that x - hiPart(x) is exact and at most
 * 2^-12 of x. The obvious hi = f16(x), lo = f16(x - f32(hi)) gave lo = 0 on an H200: the driver
 * folds f32(f16(x)) into x, and the results were only f16-accurate.
 */
export const EXP_OF = /* wgsl */ `
fn expOf(a: f32) -> i32 {
  if (!(a > 0.0) || a > 3.0e38) { return 0; }
  return clamp(15 - frexp(a).exp, -100, 100);
}
fn hiPart(x: f32) -> f32 {
  if (abs(x) < 6.103515625e-5) { return 0.0; }
  return bitcast<f32>((bitcast<u32>(x) + 0x1000u) & 0xffffe000u);
}
`;

/** Rows a workgroup of the split kernel takes: K / 4 threads a row (a warp reads whole rows), at most 256 threads. */
export const splitRowsPerGroup = (K: number) => Math.floor(256 / (K / 4));

/**
 * Rows of a (B, srcRows, heads, K) tensor into f16 halves. "row": each row scaled by its own
 * power of two (times `scale`: Q's softmax scale in log2 units), the exponent to ex (B, heads,
 * rows); "col": each column by the one from colmax (B, heads, K), the column's largest magnitude.
 */
export function splitDef(K: number, mode: "row" | "col"): KernelDef {
  const row = mode === "row";
  const RPW = splitRowsPerGroup(K);
  return {
    label: `attentionSplit${mode}${K}`,
    uniforms: [
      ["B", "u32"],
      ["heads", "u32"],
      ["rows", "u32"],
      ["n", "u32"],
      ["srcRows", "u32"],
      ["scale", "f32"],
    ],
    enables: ["f16"],
    bindings: [
      ["hi", "write", "array<f16>"],
      ["lo", "write", "array<f16>"],
      row ? ["ex", "write", "array<i32>"] : ["colmax", "read", "array<u32>"],
      ["x", "read", "array<f32>"],
    ],
    body: `
const HEAD = ${K}u;
const Q4 = ${K / 4}u;
const RPW = ${RPW}u;
${EXP_OF}
var<workgroup> part: array<f32, ${RPW * (K / 4)}>;
var<workgroup> rowE: array<i32, RPW>;
@compute @workgroup_size(${RPW * (K / 4)})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let rr = lid / Q4;
  let c4 = lid % Q4;
  let i = (wid.x + wid.y * nwg.x) * RPW + rr; // row of (B, heads, rows)
  let total = u.B * u.heads * u.rows;
  let t = i % u.rows;
  let bh = i / u.rows;
  var v = vec4<f32>(0.0);
  if (i < total && t < u.n) {
    let src = ((bh / u.heads * u.srcRows + t) * u.heads + bh % u.heads) * HEAD + c4 * 4u;
    v = vec4<f32>(x[src], x[src + 1u], x[src + 2u], x[src + 3u]) * u.scale;
  }
  ${
    row
      ? `// the row's largest magnitude: each thread's four, then the row's Q4 threads through workgroup memory
  part[lid] = max(max(abs(v.x), abs(v.y)), max(abs(v.z), abs(v.w)));
  workgroupBarrier();
  if (c4 == 0u) {
    var a = 0.0;
    for (var j = 0u; j < Q4; j++) { a = max(a, part[lid + j]); }
    rowE[rr] = expOf(a);
  }
  workgroupBarrier();
  let e = rowE[rr];`
      : ""
  }
  if (i >= total) { return; }
  ${row ? "if (c4 == 0u) { ex[i] = e; }" : ""}
  let dst = i * HEAD + c4 * 4u;
  for (var q = 0u; q < 4u; q++) {
    let y = ldexp(v[q], ${row ? "e" : "expOf(bitcast<f32>(colmax[bh * HEAD + c4 * 4u + q]))"});
    let h = hiPart(y);
    hi[dst + q] = f16(h);
    lo[dst + q] = f16(y - h);
  }
}
`,
  };
}

/** rows of one workgroup of colmaxDef */
export const COLMAX_ROWS = 256;

/** The largest magnitude of each column of a (B, srcRows, heads, K) tensor's first n rows, by atomicMax on the bits (non-negative floats order as their bits). */
export function colmaxDef(K: number): KernelDef {
  return {
    label: `attentionColmax${K}`,
    uniforms: [
      ["heads", "u32"],
      ["n", "u32"],
      ["srcRows", "u32"],
    ],
    bindings: [
      ["colmax", "write", "array<atomic<u32>>"],
      ["x", "read", "array<f32>"],
    ],
    body: `
const HEAD = ${K}u;
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let bh = wid.y;
  let r0 = wid.x * ${COLMAX_ROWS}u;
  let r1 = min(r0 + ${COLMAX_ROWS}u, u.n);
  for (var c = lid; c < HEAD; c += 64u) {
    var a = 0.0;
    for (var r = r0; r < r1; r++) { a = max(a, abs(x[((bh / u.heads * u.srcRows + r) * u.heads + bh % u.heads) * HEAD + c])); }
    atomicMax(&colmax[bh * HEAD + c], bitcast<u32>(a));
  }
}
`,
  };
}
