/**
 * Split-K for the SIMT matmul (matmul.ts): how many slices of K a product's workgroups share out,
 * and the pass that adds the slices' partial products up in slice order. (The tensor-core
 * matmul does not split: chooseMatmulMma in matmul_mma.ts says why.)
 */
import type { MatmulDims } from "../kernels.js";
import { grid1d, type GpuContext, type KernelDef } from "./context.js";
import type { GpuTensorBuffer } from "./pool.js";

/** Split-K aims at this many workgroups (two a multiprocessor of a large GPU)... */
const SPLIT_TARGET = 256;
/** ...giving each slice at least this much of K, */
const SPLIT_MIN_K = 256;
/** ...in products whose K is at least this long (a Llama's 768 x 768 projections over 2k tokens lost 5% split in 3). */
const SPLIT_FROM_K = 1024;

/**
 * Split-K: how many slices of K a product's workgroups share out, 1 for none. A product with
 * few output tiles and a long K (a Linear layer with few outputs, x_proj's 80 over K = 1536; a
 * weight gradient, whose K is every token of the batch) leaves most of a GPU idle with one
 * workgroup a tile walking all of K; with S slices each tile's workgroups run in parallel into
 * S partial outputs, which one more pass adds up in slice order (so the result does not depend
 * on timing). As in CUTLASS's split-K GEMMs. Slices x tiles stay under 2 SPLIT_TARGET, so the
 * partials are at most 512 tiles' worth (64 MiB with the widest tile).
 */
export function chooseSplits(tile: { BM: number; BN: number }, M: number, N: number, K: number, batch: number): number {
  const tiles = Math.ceil(M / tile.BM) * Math.ceil(N / tile.BN) * batch;
  if (2 * tiles >= SPLIT_TARGET || K < SPLIT_FROM_K) return 1;
  return Math.min(Math.ceil(SPLIT_TARGET / tiles), Math.floor(K / SPLIT_MIN_K));
}

/** out[b, i] (+)= the sum over slices s of part[s, b, i], in slice order. */
const SPLIT_REDUCE: KernelDef = {
  label: "matmulSplitReduce",
  uniforms: [
    ["total", "u32"],
    ["MN", "u32"],
    ["sO", "u32"],
    ["splits", "u32"],
    ["accumulate", "u32"],
  ],
  bindings: [
    ["out", "write", "array<f32>"],
    ["part", "read", "array<f32>"],
  ],
  body: `
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  let i = gid.x + gid.y * nw.x * 256u;
  if (i >= u.total) { return; }
  var s = 0.0;
  for (var k = 0u; k < u.splits; k++) { s += part[k * u.total + i]; }
  let o = (i / u.MN) * u.sO + i % u.MN;
  if (u.accumulate != 0u) { out[o] = out[o] + s; } else { out[o] = s; }
}`,
};

/** out (+)= the sum of the `splits` partial products in part (splits, batch, M, N). */
export function reduceSplits(ctx: GpuContext, out: GpuTensorBuffer, part: GPUBuffer, d: MatmulDims, splits: number): void {
  const total = (d.batch ?? 1) * d.M * d.N;
  const reduce = ctx.pipeline("matmulSplitReduce", () => SPLIT_REDUCE);
  ctx.dispatch(reduce, [out, part], [total, d.M * d.N, d.strideOut ?? d.M * d.N, splits, d.accumulate ? 1 : 0], grid1d(total, 256));
}
