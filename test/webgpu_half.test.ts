/** Half-precision weights and matrix-vector products on webgpu against ref (SwiftShader): every transpose, batching, accumulation, ragged sizes. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { f32ToBf16, f32ToF16 } from "../src/util/half.js";
import { Rng } from "../src/util/rng.js";
import { gpuBackend, compareKernel, input, output, randArray } from "./webgpu_helpers.js";

const rng = new Rng(61);

function weights(n: number, dtype: "f32" | "f16" | "bf16") {
  const x = randArray(n, rng);
  if (dtype === "f32") return input(x);
  return input(Uint16Array.from(x, (v) => (dtype === "f16" ? f32ToF16(v) : f32ToBf16(v))), dtype);
}

test("matmul with f16/bf16 weights and the M = 1 matrix-vector path (f32 and half): transposes, batches, accumulate", async () => {
  const be = await gpuBackend();
  for (const dtype of ["f32", "f16", "bf16"] as const) {
    for (const [M, N, K] of [[1, 1, 1], [1, 37, 129], [1, 300, 5], [1, 70, 96], [3, 17, 33], [40, 9, 70]]) {
      if (dtype === "f32" && M !== 1) continue; // the tiled f32 kernel is matmul.ts's
      for (const [transA, transB] of [[false, true], [false, false], [true, true], [true, false]]) {
        for (const [batch, accumulate] of [[1, false], [2, true]] as [number, boolean][]) {
          const d = { M, N, K, transA, transB, accumulate, batch, strideA: M * K, strideB: batch > 1 ? 0 : K * N, strideOut: M * N, bDtype: dtype };
          const [e] = await compareKernel(be, "matmul", [output(randArray(batch * M * N, rng)), input(randArray(batch * M * K, rng)), weights(K * N + (K * N) % 2, dtype), d]);
          assert.ok(e < 1e-6, `${dtype} ${JSON.stringify(d)}: ${e}`);
        }
      }
    }
  }
});

test("embedding forward from f16/bf16 tables is bit-exact", async () => {
  const be = await gpuBackend();
  for (const dtype of ["f16", "bf16"] as const) {
    for (const [n, C, V] of [[1, 1, 1], [7, 33, 5], [70, 64, 300]]) {
      const ids = Int32Array.from({ length: n }, () => rng.int(0, V));
      const [e] = await compareKernel(be, "embeddingForward", [output(randArray(n * C, rng)), input(ids, "i32"), weights(V * C + ((V * C) % 2), dtype), n, C, dtype]);
      assert.equal(e, 0, `${dtype} embedding ${[n, C, V]}`);
    }
  }
});

test("vec4 matrix-vector kernel (f32 rows, K a multiple of 4): lane groups with subgroup shuffles and with workgroup-memory sums", async () => {
  const be = await gpuBackend();
  const { matvecRowsVec4 } = await import("../src/backend/webgpu/matmul_half.js");
  const { refKernels } = await import("../src/backend/ref/index.js");
  const { relErr } = await import("./helpers.js");
  const plans = [{ lanes: 32, shuffle: false }, { lanes: 8, shuffle: false }, ...(be.ctx.acquired.subgroupMinSize >= 4 ? [{ lanes: be.ctx.acquired.subgroupMinSize, shuffle: true }] : [])];
  for (const plan of plans) {
    for (const [N, K, batch, accumulate] of [[1, 4, 1, false], [37, 128, 1, false], [300, 68, 2, true], [1000, 772, 1, true]] as [number, number, number, boolean][]) {
      const d = { M: 1, N, K, transA: false, transB: true, accumulate, batch, strideA: K, strideB: K * N, strideOut: N };
      const a = randArray(batch * K, rng);
      const b = randArray(batch * K * N, rng);
      const out0 = randArray(batch * N, rng);
      const want = out0.slice();
      refKernels.matmul(want, a, b, d);
      const [ha, hb, ho] = [be.upload("f32", a), be.upload("f32", b), be.upload("f32", out0)];
      matvecRowsVec4(be.ctx, plan, ho, ha, hb, [1, N, K, K, K * N, N, accumulate ? 1 : 0], N, batch);
      const got = (await be.read(ho, "f32", batch * N)) as Float32Array;
      for (const h of [ha, hb, ho]) be.release(h);
      const e = relErr(Float64Array.from(got), Float64Array.from(want));
      assert.ok(e < 1e-6, `${JSON.stringify(plan)} ${JSON.stringify(d)}: ${e}`);
    }
  }
});
