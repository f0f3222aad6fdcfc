/**
 * The tensor-core attention forward (attention_mma.ts) runs only where the adapter has f16
 * subgroup matrices, which SwiftShader does not: its results are checked against the CPU
 * reference on the GPU machine (`seqlab bench gpu --check`, long rows included). Here every one
 * of its kernels, for each head size it takes and each fold interval, must compile as WGSL on
 * Dawn's null backend (which accepts the features and runs nothing), and the chooser must route
 * only what the kernel takes.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { wgslSource } from "../src/backend/webgpu/context.js";
import { mmaBytes, mmaDefs, mmaHeadOk, mmaTilesFor } from "../src/backend/webgpu/attention_mma.js";
import { MMA_MIN_ROWS, chooseMmaTiles } from "../src/backend/webgpu/attention.js";
import { MATMUL_MMA_TILES, chooseMatmulMma, matmulMmaDefs } from "../src/backend/webgpu/matmul_mma.js";
import type { KernelDef } from "../src/backend/webgpu/context.js";
import { f16ToF32, f32ToF16 } from "../src/util/half.js";

const FEATURES = ["shader-f16", "subgroups", "chromium-experimental-subgroup-matrix"];

/** kept for the life of the process: Dawn tears its instance down when the object is collected */
let gpu: GPU | null = null;

async function nullDevice(): Promise<GPUDevice> {
  const name = "webgpu";
  const { create } = (await import(name)) as { create: (flags: string[]) => GPU };
  gpu ??= create(["backend=null", "enable-dawn-features=allow_unsafe_apis"]);
  const adapter = await gpu.requestAdapter();
  assert.ok(adapter, "Dawn's null backend offers an adapter");
  for (const f of FEATURES) assert.ok(adapter.features.has(f as GPUFeatureName), `null adapter has ${f}`);
  return adapter.requestDevice({ requiredFeatures: FEATURES as GPUFeatureName[] });
}

test("the tensor-core kernels compile: the attention forward for every head size it takes, the matmul", async () => {
  const device = await nullDevice();
  // the null backend does parse and type-check: a result matrix added to a left one is an error
  const bad = device.createShaderModule({
    code: "enable f16;\nenable subgroups;\nenable chromium_experimental_subgroup_matrix;\n@compute @workgroup_size(32) fn main() { let a = subgroup_matrix_left<f16, 16, 16>(); let c = subgroup_matrix_result<f32, 16, 16>(); let d = subgroupMatrixMultiplyAccumulate(a, a, c); }",
  });
  assert.ok((await bad.getCompilationInfo()).messages.some((m) => m.type === "error"), "a left matrix as the right operand is an error");
  const compile = async (def: KernelDef, what: string) => {
    const module = device.createShaderModule({ code: wgslSource(def) });
    const errors = (await module.getCompilationInfo()).messages.filter((m) => m.type === "error");
    assert.deepEqual(
      errors.map((e) => `${e.lineNum}: ${e.message}`),
      [],
      `${def.label} (${what})`,
    );
  };
  const matmulTiles = [
    { RG: 4, CG: 2, SI: 2, SJ: 2, fold: 1 },
    { RG: 2, CG: 2, SI: 2, SJ: 4, fold: 16 },
    { RG: 1, CG: 1, SI: 1, SJ: 1, fold: 16, CS: 16 },
  ];
  for (const c of matmulTiles) for (const def of matmulMmaDefs(c)) await compile(def, `matmul ${JSON.stringify(c)}`);
  for (const K of [16, 32, 48, 64]) {
    const tiles = mmaTilesFor(K, 48 * 1024, 16384);
    assert.ok(tiles, `tiles for head size ${K}`);
    for (const [fold, QC] of [[1, 0], [16, 0], [32, 64]]) {
      for (const def of mmaDefs(K, { ...tiles, fold, QC })) await compile(def, `K ${K}, fold ${fold}`);
    }
  }
  device.destroy();
});

test("the tensor-core forward takes only head sizes and rows it was built for", () => {
  for (const K of [8, 24, 72, 80, 128, 256]) assert.equal(mmaHeadOk(K), false, `head size ${K}`);
  assert.equal(mmaTilesFor(64, mmaBytes({ NW: 4, BN: 32, fold: 16, QC: 0 }, 64) - 1, 16384), null, "tiles larger than the workgroup memory");
  assert.equal(chooseMmaTiles(64, false, 65536, 48 * 1024), null, "no tensor cores");
  assert.equal(chooseMmaTiles(64, true, MMA_MIN_ROWS - 1, 48 * 1024), null, "short sequences stay on the SIMT kernel");
  assert.deepEqual(chooseMmaTiles(64, true, MMA_MIN_ROWS, 48 * 1024), { NW: 4, BN: 32, fold: 16, QC: 64 });
  assert.deepEqual(chooseMmaTiles(64, true, 65536, 48 * 1024), { NW: 4, BN: 32, fold: 16, QC: 128 });
  assert.equal(chooseMmaTiles(128, true, 65536, 48 * 1024), null, "head size 128");
});

test("the tensor-core matmul takes only large unbatched f32 products", () => {
  const big = { M: 2048, N: 3072, K: 768, transA: false, transB: true, accumulate: false };
  assert.deepEqual(chooseMatmulMma(true, big, 48 * 1024), MATMUL_MMA_TILES);
  assert.equal(chooseMatmulMma(false, big, 48 * 1024), null, "no tensor cores");
  assert.equal(chooseMatmulMma(true, big, 32 * 1024), null, "tiles larger than the workgroup memory");
  assert.deepEqual(chooseMatmulMma(true, { ...big, bDtype: "bf16" }, 48 * 1024), MATMUL_MMA_TILES, "half-precision weights too");
  assert.equal(chooseMatmulMma(true, { ...big, M: 1 }, 48 * 1024), null, "a matrix-vector product");
  assert.equal(chooseMatmulMma(true, { ...big, batch: 2 }, 48 * 1024), null, "batched");
  assert.equal(chooseMatmulMma(true, { ...big, K: 64 }, 48 * 1024), null, "short K");
  assert.equal(chooseMatmulMma(true, { ...big, N: 80 }, 48 * 1024), null, "an output narrower than two tiles");
  // a weight gradient over 2048 tokens: 72 output tiles (split-K on the SIMT kernel)
  assert.equal(chooseMatmulMma(true, { M: 768, N: 1536, K: 2048, transA: true, transB: false, accumulate: false }, 48 * 1024), null, "few output tiles");
});

/**
 * The numerics the tensor-core kernels rest on, emulated on the CPU with the kernels' own
 * rules (attention_split.ts): a row scaled by the power of two that takes its largest magnitude
 * into [2^14, 2^15), hi = x rounded to 11 bits (0 under f16's normal range), lo = f16(x - hi),
 * and a dot product as hi hi + hi lo + lo hi. Its error against the exact dot product must stay
 * near fp32's own (a few 2^-24 of the sum of |a b|), whatever the rows' magnitudes.
 */
test("three f16 products of split halves reproduce fp32 dot products", () => {
  const f32 = new Float32Array(1);
  const u32 = new Uint32Array(f32.buffer);
  const round32 = (x: number) => Math.fround(x);
  const expOf = (a: number) => (a > 0 && a <= 3e38 ? Math.max(-100, Math.min(100, 15 - (Math.floor(Math.log2(a)) + 1))) : 0);
  const hiPart = (x: number) => {
    if (Math.abs(x) < 6.103515625e-5) return 0;
    f32[0] = x;
    u32[0] = ((u32[0] + 0x1000) & 0xffffe000) >>> 0;
    return f32[0];
  };
  const split = (row: Float32Array) => {
    const e = expOf(row.reduce((m, v) => Math.max(m, Math.abs(v)), 0));
    const y = row.map((v) => round32(v * 2 ** e));
    const hi = y.map(hiPart);
    const lo = y.map((v, i) => f16ToF32(f32ToF16(v - hi[i])));
    for (const h of hi) assert.equal(f16ToF32(f32ToF16(h)), h, "hi is exactly an f16");
    return { hi, lo, e };
  };
  let seed = 7;
  const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) * 2 - 1;
  for (const [scaleA, scaleB] of [[1, 1], [1e-8, 3e5], [4e20, 2e-20], [1e-30, 1e-3]]) {
    for (const K of [16, 64, 1000]) {
      const a = Float32Array.from({ length: K }, () => rand() * scaleA * (rand() > 0.9 ? 1e-4 : 1));
      const b = Float32Array.from({ length: K }, () => rand() * scaleB);
      const A = split(a);
      const B = split(b);
      let exact = 0;
      let mass = 0;
      let three = 0;
      for (let k = 0; k < K; k++) {
        exact += a[k] * b[k];
        mass += Math.abs(a[k] * b[k]);
        three += A.hi[k] * B.hi[k] + A.hi[k] * B.lo[k] + A.lo[k] * B.hi[k];
      }
      const err = Math.abs(three * 2 ** -(A.e + B.e) - exact) / mass;
      assert.ok(err < 4 * 2 ** -24, `K ${K}, scales ${scaleA} ${scaleB}: error ${err.toExponential(2)} of sum |a b|`);
    }
  }
});
