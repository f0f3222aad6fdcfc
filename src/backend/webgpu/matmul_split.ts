/**
 * A matmul operand as rows of f16 halves for the tensor-core matmul (matmul_mma.ts): row r of
 * the "row operand" is what one output row or column takes its dot products with, A's row r
 * (M rows over K) or B's column r (N rows over K). Each row is scaled by the power of two that
 * takes its largest magnitude into [2^14, 2^15) and split into hi and lo halves
 * (attention_split.ts says why 22 of fp32's 24 bits survive), written (batch, Rp, Kp) row-major:
 * rows past R and columns past K zero, so the kernel reads whole tiles without bounds tests.
 *
 * The source element (b, r, k) is at b sB + r sR + k sK: A is (sR, sK) = (K, 1), transposed
 * (1, M); B is (1, N), transposed (K, 1). B may hold half-precision weights (f16 or bf16 bits),
 * widened exactly as they are read: a half weight then splits into itself (hi) and 0 (lo) up to
 * the power-of-two scale. Two passes: each row's largest magnitude (atomicMax
 * on the bits of non-negative floats, which order as their bits), then the split.
 *
 * Each pass reads along whichever stride is 1, so that a warp's loads are coalesced: for rows
 * contiguous in memory (sK = 1) the maximum is a workgroup per row and the split a thread per 4 k;
 * for columns contiguous (sR = 1: B of an NN product, A of a TN one) the maximum is a thread per
 * row and the split goes through a 64 x 32 tile in workgroup memory, read along r and written
 * along k. (Reading across the stride made the two passes cost half as much as the products in a
 * 219M Llama's training step on an H100.)
 */
import type { WeightDtype } from "../kernels.js";
import type { GpuContext, KernelDef } from "./context.js";
import { grid1d } from "./context.js";
import { EXP_OF } from "./attention_split.js";
import { HALF, LINEAR_INDEX } from "./wgsl.js";
import type { GpuTensorBuffer } from "./pool.js";
import { zeroWords } from "./kit.js";

/** k a thread of the row-maximum pass reads */
const MAX_CHUNK = 64;

const UNIFORMS: KernelDef["uniforms"] = [
  ["batch", "u32"],
  ["R", "u32"],
  ["K", "u32"],
  ["Rp", "u32"],
  ["Kp", "u32"],
  ["sB", "u32"],
  ["sR", "u32"],
  ["sK", "u32"],
  ["n", "u32"],
];

/**
 * The source as f32: `xAt(e)`, element e of x, stored as f32 or as half bits packed two to a u32
 * word (element 0 in the low half: a half-precision weight, MatmulDims.bDtype), widened exactly.
 */
function source(dtype: WeightDtype): { binding: [string, "read", string]; wgsl: string } {
  if (dtype === "f32") return { binding: ["x", "read", "array<f32>"], wgsl: "fn xAt(e: u32) -> f32 { return x[e]; }\n" };
  const dec = dtype === "f16" ? "f16_bits_to_f32_bits" : "bf16_bits_to_f32_bits";
  return {
    binding: ["x", "read", "array<u32>"],
    wgsl: `${HALF}
fn xAt(e: u32) -> f32 {
  let w = x[e >> 1u];
  return bitcast<f32>(${dec}(select(w & 0xffffu, w >> 16u, (e & 1u) == 1u)));
}
`,
  };
}

/** Thread per (b, chunk of MAX_CHUNK k, r), r fastest: rows next to each other in memory are read together. */
const rowmaxDef = (dtype: WeightDtype): KernelDef => ({
  label: "matmulSplitRowmax",
  uniforms: UNIFORMS,
  bindings: [["rowmax", "write", "array<atomic<u32>>"], source(dtype).binding],
  body: `${LINEAR_INDEX(256)}${source(dtype).wgsl}
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = linearIndex(gid, nwg);
  if (i >= u.n) { return; }
  let r = i % u.R;
  let kq = (i / u.R) % ((u.K + ${MAX_CHUNK - 1}u) / ${MAX_CHUNK}u);
  let b = i / u.R / ((u.K + ${MAX_CHUNK - 1}u) / ${MAX_CHUNK}u);
  let k0 = kq * ${MAX_CHUNK}u;
  let k1 = min(u.K, k0 + ${MAX_CHUNK}u);
  let base = b * u.sB + r * u.sR;
  var a = 0.0;
  for (var k = k0; k < k1; k++) { a = max(a, abs(xAt(base + k * u.sK))); }
  atomicMax(&rowmax[b * u.Rp + r], bitcast<u32>(a));
}`,
});

/** sK = 1: a workgroup per (b, r) row, its threads along k. */
const rowmaxRowsDef = (dtype: WeightDtype): KernelDef => ({
  label: "matmulSplitRowmax",
  uniforms: UNIFORMS,
  bindings: [["rowmax", "write", "array<atomic<u32>>"], source(dtype).binding],
  body: `${source(dtype).wgsl}
var<workgroup> red: array<f32, 256>;
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row = wid.y * nwg.x + wid.x;
  if (row >= u.n) { return; }
  let r = row % u.R;
  let b = row / u.R;
  let base = b * u.sB + r * u.sR;
  var a = 0.0;
  for (var k = lid; k < u.K; k += 256u) { a = max(a, abs(xAt(base + k))); }
  red[lid] = a;
  workgroupBarrier();
  for (var h = 128u; h > 0u; h >>= 1u) {
    if (lid < h) { red[lid] = max(red[lid], red[lid + h]); }
    workgroupBarrier();
  }
  if (lid == 0u) { atomicMax(&rowmax[b * u.Rp + r], bitcast<u32>(red[0])); }
}`,
});

/** Rows and k of the transposing split's tile. */
const TR = 64;
const TK = 32;

/**
 * WGSL of both split kernels: the exponent of row (b, r)'s power of two (0 past R), that power as
 * a float, and a scaled element's halves stored at dst.
 */
const SPLIT_ROW = /* wgsl */ `
fn rowExp(b: u32, r: u32) -> i32 { return select(0, expOf(bitcast<f32>(rowmax[b * u.Rp + r])), r < u.R); }
// 2^e as a float built from its bits (e within [-100, 100]): exact, unlike a general ldexp
fn pow2f(e: i32) -> f32 { return bitcast<f32>(u32(127 + e) << 23u); }
fn putHalves(dst: u32, y: f32) {
  let h = hiPart(y);
  hi[dst] = f16(h);
  lo[dst] = f16(y - h);
}
`;

/** sR = 1: a workgroup per (b, TR rows, TK k) tile, read along r into workgroup memory and written along k. */
const splitColsDef = (dtype: WeightDtype): KernelDef => ({
  label: "matmulSplit",
  uniforms: UNIFORMS,
  enables: ["f16"],
  bindings: [["hi", "write", "array<f16>"], ["lo", "write", "array<f16>"], ["ex", "write", "array<i32>"], ["rowmax", "read", "array<u32>"], source(dtype).binding],
  body: `${EXP_OF}${SPLIT_ROW}${source(dtype).wgsl}
var<workgroup> tile: array<f32, ${TK * (TR + 1)}>;
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let t = wid.y * nwg.x + wid.x;
  let kTiles = u.Kp / ${TK}u;
  let rTiles = (u.Rp + ${TR - 1}u) / ${TR}u;
  if (t >= u.n) { return; }
  let k0 = (t % kTiles) * ${TK}u;
  let r0 = ((t / kTiles) % rTiles) * ${TR}u;
  let b = t / kTiles / rTiles;
  for (var j = 0u; j < ${(TR * TK) / 256}u; j++) {
    let e = lid + j * 256u;
    let rr = e % ${TR}u;
    let kk = e / ${TR}u;
    let r = r0 + rr;
    let k = k0 + kk;
    var y = 0.0;
    if (r < u.R && k < u.K) { y = xAt(b * u.sB + r * u.sR + k * u.sK); }
    tile[kk * ${TR + 1}u + rr] = y;
  }
  workgroupBarrier();
  for (var j = 0u; j < ${(TR * TK) / 256}u; j++) {
    let e = lid + j * 256u;
    let kk = e % ${TK}u;
    let rr = e / ${TK}u;
    let r = r0 + rr;
    if (r >= u.Rp) { continue; }
    let ex2 = rowExp(b, r);
    if (k0 + kk == 0u) { ex[b * u.Rp + r] = ex2; }
    putHalves((b * u.Rp + r) * u.Kp + k0 + kk, tile[kk * ${TR + 1}u + rr] * pow2f(ex2));
  }
}`,
});

/** Thread per (b, r, 4 k), k fastest: the halves are written in rows. */
const splitDef = (dtype: WeightDtype): KernelDef => ({
  label: "matmulSplit",
  uniforms: UNIFORMS,
  enables: ["f16"],
  bindings: [["hi", "write", "array<f16>"], ["lo", "write", "array<f16>"], ["ex", "write", "array<i32>"], ["rowmax", "read", "array<u32>"], source(dtype).binding],
  body: `${LINEAR_INDEX(256)}${EXP_OF}${SPLIT_ROW}${source(dtype).wgsl}
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = linearIndex(gid, nwg);
  if (i >= u.n) { return; }
  let k4 = u.Kp / 4u;
  let kq = i % k4;
  let r = (i / k4) % u.Rp;
  let b = i / k4 / u.Rp;
  let e = rowExp(b, r);
  if (kq == 0u) { ex[b * u.Rp + r] = e; }
  let scale = pow2f(e);
  let dst = (b * u.Rp + r) * u.Kp + kq * 4u;
  for (var q = 0u; q < 4u; q++) {
    let k = kq * 4u + q;
    var y = 0.0;
    if (r < u.R && k < u.K) { y = xAt(b * u.sB + r * u.sR + k * u.sK) * scale; }
    putHalves(dst + q, y);
  }
}`,
});

/** A split operand: halves (batch, Rp, Kp) and row exponents (batch, Rp); release() returns them to the pool. */
export interface SplitOperand {
  hi: GPUBuffer;
  lo: GPUBuffer;
  ex: GPUBuffer;
  release(): void;
}

/**
 * Record the split of `batch` row operands of R rows over K (padded to Rp, Kp) whose element
 * (b, r, k) sits at b sB + r sR + k sK of x (stored as `dtype`).
 */
export function splitOperand(ctx: GpuContext, x: GpuTensorBuffer, batch: number, R: number, K: number, Rp: number, Kp: number, sB: number, sR: number, sK: number, dtype: WeightDtype = "f32"): SplitOperand {
  const hi = ctx.pool.acquire(Math.max(16, batch * Rp * Kp * 2));
  const lo = ctx.pool.acquire(Math.max(16, batch * Rp * Kp * 2));
  const ex = ctx.pool.acquire(Math.max(16, batch * Rp * 4));
  const rowmax = ctx.pool.acquire(Math.max(16, batch * Rp * 4));
  zeroWords(ctx, rowmax, batch * Rp);
  const dims = [batch, R, K, Rp, Kp, sB, sR, sK];
  if (sK === 1 && K > 0) {
    // a workgroup a row
    ctx.dispatch(ctx.pipeline(`matmulSplitRowmaxRows:${dtype}`, () => rowmaxRowsDef(dtype)), [rowmax, x], [...dims, batch * R], grid1d(batch * R * 256, 256));
  } else {
    const nMax = batch * R * Math.ceil(K / MAX_CHUNK);
    if (nMax > 0) ctx.dispatch(ctx.pipeline(`matmulSplitRowmax:${dtype}`, () => rowmaxDef(dtype)), [rowmax, x], [...dims, nMax], grid1d(nMax, 256));
  }
  if (sR === 1 && sK !== 1) {
    // a workgroup a tile (Kp is a whole number of TK)
    const tiles = batch * Math.ceil(Rp / TR) * (Kp / TK);
    ctx.dispatch(ctx.pipeline(`matmulSplitCols:${dtype}`, () => splitColsDef(dtype)), [hi, lo, ex, rowmax, x], [...dims, tiles], grid1d(tiles * 256, 256));
  } else {
    const nSplit = (batch * Rp * Kp) / 4;
    ctx.dispatch(ctx.pipeline(`matmulSplit:${dtype}`, () => splitDef(dtype)), [hi, lo, ex, rowmax, x], [...dims, nSplit], grid1d(nSplit, 256));
  }
  ctx.pool.release(rowmax);
  return { hi, lo, ex, release: () => [hi, lo, ex].forEach((b) => ctx.pool.release(b)) };
}

/** The split's kernels (tests compile them where no GPU runs them). */
export const matmulSplitDefs = (): KernelDef[] => (["f32", "f16", "bf16"] as const).flatMap((t) => [rowmaxDef(t), rowmaxRowsDef(t), splitDef(t), splitColsDef(t)]);
