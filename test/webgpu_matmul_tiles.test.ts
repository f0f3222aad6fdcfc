/**
 * The WGSL matmul with the tiles SwiftShader's 32 KiB of workgroup memory does not select: the
 * 128 x 256 tile of 8 x 16 per thread (at half its depth, BK 8, to fit), and the 128 x 128 tile
 * with row-major threads. Aligned, ragged, transposed, accumulating and batched, against ref.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import type { MatmulDims } from "../src/backend/kernels.js";
import { refKernels } from "../src/backend/ref/index.js";
import { dispatchMatmul, TILE_LARGE, TILE_WIDE, type MatmulTile } from "../src/backend/webgpu/matmul.js";
import { Rng } from "../src/util/rng.js";
import { relErr } from "./helpers.js";
import { gpuBackend, randArray } from "./webgpu_helpers.js";

const rng = new Rng(13);

async function check(tile: MatmulTile, d: MatmulDims): Promise<void> {
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
  dispatchMatmul(be.ctx, tile, ho, ha, hb, d);
  const got = await be.read(ho, "f32", out.length);
  for (const h of [ha, hb, ho]) be.release(h);
  const e = relErr(Float64Array.from(got), Float64Array.from(want));
  assert.ok(e < 2e-6, `matmul ${JSON.stringify(tile)} ${JSON.stringify(d)}: rel err ${e}`);
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
