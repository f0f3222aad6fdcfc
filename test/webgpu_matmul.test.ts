/** The WGSL matmul against ref on SwiftShader: every transpose/accumulate combination, ragged and batched. */
import { test } from "node:test";
import assert from "node:assert/strict";
import type { MatmulDims } from "../src/backend/kernels.js";
import { Rng } from "../src/util/rng.js";
import { gpuBackend, compareKernel, input, output, randArray } from "./webgpu_helpers.js";

const rng = new Rng(11);

async function check(d: MatmulDims, tol = 2e-6): Promise<void> {
  const be = await gpuBackend();
  const batch = d.batch ?? 1;
  const sA = d.strideA ?? d.M * d.K;
  const sB = d.strideB ?? d.K * d.N;
  const sO = d.strideOut ?? d.M * d.N;
  const size = (s: number, per: number) => Math.max(1, s * (batch - 1) + per);
  const a = input(randArray(size(sA, d.M * d.K), rng));
  const b = input(randArray(size(sB, d.K * d.N), rng));
  const out = output(randArray(size(sO, d.M * d.N), rng));
  const [e] = await compareKernel(be, "matmul", [out, a, b, d]);
  assert.ok(e < tol, `matmul ${JSON.stringify(d)}: rel err ${e}`);
}

test("matmul: ragged M, N, K with every transpose and accumulate combination", async () => {
  const shapes = [
    [1, 1, 1],
    [3, 5, 7],
    [33, 31, 32],
    [65, 130, 17],
    [1, 257, 64],
    [257, 3, 9],
    [64, 64, 0],
  ];
  for (const [M, N, K] of shapes) {
    for (const transA of [false, true]) {
      for (const transB of [false, true]) {
        for (const accumulate of [false, true]) await check({ M, N, K, transA, transB, accumulate });
      }
    }
  }
});

test("matmul: aligned 128-tile path (no bounds checks) and the 64-tile path", async () => {
  // 128x128 tiles are used when there are at least 128 of them
  await check({ M: 1024, N: 2048, K: 16, transA: false, transB: true, accumulate: false });
  await check({ M: 1024, N: 2048, K: 24, transA: true, transB: false, accumulate: true });
  await check({ M: 128, N: 192, K: 48, transA: false, transB: false, accumulate: false });
  await check({ M: 64, N: 64, K: 32, transA: true, transB: true, accumulate: false });
  await check({ M: 1000, N: 2052, K: 12, transA: false, transB: false, accumulate: false });
});

test("matmul: batched with strides, broadcast operands (stride 0) and misaligned strides", async () => {
  await check({ M: 5, N: 6, K: 7, transA: false, transB: false, accumulate: false, batch: 3 });
  await check({ M: 8, N: 12, K: 16, transA: false, transB: true, accumulate: true, batch: 4, strideA: 0 });
  await check({ M: 8, N: 12, K: 16, transA: true, transB: false, accumulate: false, batch: 2, strideB: 0 });
  await check({ M: 4, N: 4, K: 4, transA: false, transB: false, accumulate: false, batch: 3, strideA: 17, strideB: 18, strideOut: 19 });
  await check({ M: 33, N: 20, K: 8, transA: true, transB: true, accumulate: false, batch: 2, strideOut: 33 * 20 + 4 });
});
