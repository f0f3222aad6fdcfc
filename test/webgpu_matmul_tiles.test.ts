/**
 * The WGSL matmul with the tiles SwiftShader's 32 KiB of workgroup memory does not select: the
 * 128 x 256 tile of 8 x 16 per thread (at half its depth, BK 8, to fit), and the 128 x 128 tile
 * with row-major threads; each with the swizzled transposing stores (swz) at both depths; and
 * split-K (K in slices summed by a second pass), ragged slices and empty ones included.
 * Aligned, ragged, transposed, accumulating and batched, against ref.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import type { MatmulDims } from "../src/backend/kernels.js";
import { refKernels } from "../src/backend/ref/index.js";
import { chooseMatmulPlan, dispatchMatmul, TILE_LARGE, TILE_SMALL, TILE_WIDE, type MatmulTile } from "../src/backend/webgpu/matmul.js";
import { chooseSplits } from "../src/backend/webgpu/matmul_splitk.js";
import { Rng } from "../src/util/rng.js";
import { relErr } from "./helpers.js";
import { gpuBackend, randArray } from "./webgpu_helpers.js";

const rng = new Rng(13);

async function check(tile: MatmulTile, d: MatmulDims, splits = 1): Promise<void> {
  const be = await gpuBackend();
  const batch = d.batch ?? 1;
  const sA = d.strideA ?? d.M * d.K;
  const sB = d.strideB ?? d.K * d.N;
  const sO = d.strideOut ?? d.M * d.N;
  const size = (s: number, per: number) => s * (batch - 1) + per;
  const [a, b, out] = [randArray(size(sA, d.M * d.K), rng), randArray(size(sB, d.K * d.N), rng), randArray(size(sO, d.M * d.N), rng)];
  const want = out.slice();
  refKernels.matmul(want, a, b, d);
  const [ha, hb, ho] = [be.upload("f32", a), be.upload("f32", b), be.upload("f32", out)];
  dispatchMatmul(be.ctx, tile, ho, ha, hb, d, splits);
  const got = await be.read(ho, "f32", out.length);
  for (const h of [ha, hb, ho]) be.release(h);
  const e = relErr(Float64Array.from(got), Float64Array.from(want));
  assert.ok(e < 2e-6, `matmul ${JSON.stringify(tile)} ${JSON.stringify(d)} in ${splits} slices: rel err ${e}`);
}

const shapes: MatmulDims[] = [
  { M: 256, N: 512, K: 32, transA: false, transB: false, accumulate: false },
  { M: 300, N: 600, K: 40, transA: true, transB: false, accumulate: true },
  { M: 130, N: 257, K: 19, transA: false, transB: true, accumulate: false },
  { M: 128, N: 256, K: 16, transA: true, transB: true, accumulate: false, batch: 2 },
];

test("matmul: the 128 x 256 tile (8 x 16 per thread, row-major threads)", async () => {
  for (const d of shapes) await check({ ...TILE_WIDE, BK: 8 }, d);
});

test("matmul: the 128 x 128 tile with row-major threads", async () => {
  for (const d of shapes) await check({ ...TILE_LARGE, warpPatch: false }, d);
});

test("matmul: swizzled transposing stores, every tile and both depths, every transpose", async () => {
  const tiles: MatmulTile[] = [
    { ...TILE_WIDE, BK: 8, swz: true },
    { ...TILE_LARGE, swz: true },
    { ...TILE_LARGE, warpPatch: false, BK: 16, swz: true },
    { ...TILE_SMALL, swz: true },
  ];
  for (const tile of tiles) for (const d of shapes) await check(tile, d);
});

test("matmul: split-K, ragged and empty slices, accumulating, batched with strides, every transpose", async () => {
  const cases: [MatmulDims, number][] = [
    [{ M: 70, N: 80, K: 1000, transA: false, transB: true, accumulate: false }, 4],
    [{ M: 33, N: 20, K: 300, transA: true, transB: false, accumulate: true }, 3],
    [{ M: 64, N: 64, K: 100, transA: false, transB: false, accumulate: false }, 8], // slice 7 starts past K
    [{ M: 40, N: 36, K: 512, transA: true, transB: true, accumulate: true, batch: 3, strideA: 512 * 40 + 8, strideB: 512 * 36 + 4, strideOut: 40 * 36 + 12 }, 2],
  ];
  for (const [d, splits] of cases) {
    await check(TILE_SMALL, d, splits);
    await check({ ...TILE_LARGE, warpPatch: false }, d, splits);
  }
});

test("chooseSplits: slices only where the tiles are too few to fill a GPU and K is long", () => {
  assert.equal(chooseSplits(TILE_SMALL, 2048, 80, 1536, 1), 4); // x_proj of a 130M Mamba: 64 tiles
  assert.equal(chooseSplits(TILE_SMALL, 80, 1536, 2048, 1), 6); // its weight gradient over 2048 tokens
  assert.equal(chooseSplits(TILE_SMALL, 2048, 768, 1536, 1), 1); // 384 tiles
  assert.equal(chooseSplits(TILE_WIDE, 4096, 4096, 4096, 1), 1);
  assert.equal(chooseSplits(TILE_SMALL, 64, 64, 300, 1), 1); // K too short to share
  assert.equal(chooseSplits(TILE_WIDE, 2048, 768, 768, 1), 1); // a Llama's projection: K under 1024
  assert.equal(chooseSplits(TILE_SMALL, 64, 64, 4096, 1), 16);
  assert.equal(chooseSplits(TILE_SMALL, 64, 64, 1 << 20, 1), 256); // at most SPLIT_TARGET workgroups
  assert.equal(chooseSplits(TILE_SMALL, 64, 64, 1 << 20, 100), 3);
});

test("chooseMatmulPlan: a wide tile in K slices where its tiles alone are too few, else the small tile", () => {
  const h200 = { bytes: 49152, invocations: 1024 };
  const plan = (M: number, N: number, K: number) => {
    const p = chooseMatmulPlan(M, N, K, 1, h200);
    return `${p.tile.BM}x${p.tile.BN} ${p.splits}`;
  };
  assert.equal(plan(4096, 4096, 4096), "128x256 1");
  assert.equal(plan(768, 1536, 2048), "128x256 8"); // a weight gradient over 2048 tokens
  assert.equal(plan(2048, 768, 1536), "128x256 6");
  assert.equal(plan(2048, 80, 1536), "64x64 4"); // x_proj: too narrow for the wide tile
  assert.equal(plan(2048, 768, 200), "64x64 1"); // K too short to share: the small tile's 384 tiles
  assert.equal(chooseMatmulPlan(4096, 4096, 4096, 1, { bytes: 32768, invocations: 256 }).tile.BM, 128, "128 x 128 within 32 KiB");
});
