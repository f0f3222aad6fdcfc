/**
 * Compiles one generated kernel with Dawn's dump_shaders toggle, so the SPIR-V that the driver
 * receives can be read (robustness clamps, fma, loads): a development aid for the WGSL kernels.
 *   SEQLAB_DAWN_FLAGS="enable-dawn-features=disable_workgroup_init,dump_shaders" \
 *     npx tsx scripts/wgsl-dump.ts matmul > dump.txt
 */
import { WebGpuBackend } from "../src/backend/webgpu/index.js";
import { matmulDef, TILE_LARGE } from "../src/backend/webgpu/matmul.js";
import { wgslSource, type KernelDef } from "../src/backend/webgpu/context.js";
import { forwardDef } from "../src/backend/webgpu/attention_forward.js";
import { backwardDef } from "../src/backend/webgpu/attention_backward.js";
import { useSwiftShader } from "../test/webgpu_helpers.js";

const defs: Record<string, () => KernelDef> = {
  matmul: () => matmulDef({ ...TILE_LARGE, transA: false, transB: false, vecA: true, vecB: true, vecOut: true, check: false }),
  forward: () => forwardDef(64, { BM: 32, BN: 32, TY: 8, TX: 4, shuffle: true }, true),
  dq: () => backwardDef("dq", 64, { BM: 32, BN: 16, TY: 8, TX: 16 }, true),
  dkv: () => backwardDef("dkv", 64, { BM: 32, BN: 16, TY: 8, TX: 16 }, true),
};

async function main(): Promise<void> {
  useSwiftShader();
  const be = await WebGpuBackend.create();
  const def = defs[process.argv[2] ?? "matmul"]();
  const module = be.ctx.device.createShaderModule({ code: wgslSource(def) });
  be.ctx.device.createComputePipeline({ layout: "auto", compute: { module, entryPoint: "main" } });
  await be.sync();
  be.destroy();
}
main();
