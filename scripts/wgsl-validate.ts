/**
 * Compiles (to a shader module: no pipeline, so no workgroup-memory limit) the WGSL of every
 * tile variant in src/bench/gpu/variants.ts on SwiftShader, so that a GPU run never meets a variant
 * that does not parse:  npx tsx scripts/wgsl-validate.ts
 */
import { WebGpuBackend } from "../src/backend/webgpu/index.js";
import { wgslSource } from "../src/backend/webgpu/context.js";
import { matmulDef } from "../src/backend/webgpu/matmul.js";
import { forwardDef } from "../src/backend/webgpu/attention_forward.js";
import { backwardDef } from "../src/backend/webgpu/attention_backward.js";
import { useSwiftShader } from "../test/webgpu_helpers.js";
import { VARIANTS } from "../src/bench/gpu/variants.js";
useSwiftShader();
const be = await WebGpuBackend.create();
const defs = [
  ...Object.values(VARIANTS.matmul).flatMap((t) => [false, true].map((tr) => matmulDef({ ...t, transA: tr, transB: !tr, vecA: true, vecB: true, vecOut: true, check: tr }))),
  ...Object.values(VARIANTS.forward).map((c) => forwardDef(64, c, true)),
  ...Object.values(VARIANTS.backward).flatMap((t) => [backwardDef("dkv", 64, t.dkv, true), backwardDef("dq", 64, t.dq, true)]),
];
let bad = 0;
for (const d of defs) {
  const m = be.ctx.device.createShaderModule({ code: wgslSource(d) });
  const info = await m.getCompilationInfo();
  const errs = info.messages.filter((x) => x.type === "error");
  if (errs.length) { bad++; console.log(d.label, errs[0].message.slice(0, 300)); }
}
console.log(`${defs.length} modules, ${bad} with errors`);
be.destroy();
process.exit(0);
