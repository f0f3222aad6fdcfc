// What subgroup-matrix loads and stores cost next to the multiply-accumulates (one H200 run):
// each subgroup runs ITER steps of 4 MMAs into 4 accumulators, with per step either nothing
// else ("reg"), a right matrix loaded from workgroup memory or from a storage buffer (row- or
// column-major), or the first accumulator stored to workgroup memory. Prints MMA TFLOP/s.
//   source .device/prologue.sh && node scripts/probe-tensor-f16-loads.mjs   (PROBE_NULL=1: compile only)
// PROBE_ONLY=name,... runs only those steps: one a process, with the driver's shader cache in a
// folder of its own, gives each step's machine code to scripts/gpu-sass.mjs (how the driver
// lowers each load form: LDSM or one LDS.U16 an element). PROBE_TOGGLES=a,b adds Dawn toggles.
const { create, globals } = await import("webgpu");
Object.assign(globalThis, globals);
const gpu = create([...(process.env.PROBE_NULL ? ["backend=null"] : []), `enable-dawn-features=allow_unsafe_apis,vulkan_enable_f16_on_nvidia,disable_workgroup_init${process.env.PROBE_TOGGLES ? `,${process.env.PROBE_TOGGLES}` : ""}`]);
const adapter = await gpu.requestAdapter({ powerPreference: "high-performance" });
const device = await adapter.requestDevice({ requiredFeatures: ["shader-f16", "subgroups", "chromium-experimental-subgroup-matrix"], requiredLimits: { maxComputeWorkgroupStorageSize: adapter.limits.maxComputeWorkgroupStorageSize } });
device.addEventListener?.("uncapturederror", (e) => console.log("uncaptured:", e.error.message.split("\n")[0]));
const ITER = 2048, groups = 132 * 4, WG = 128;
const L = "subgroup_matrix_left<f16, 16, 16>", R = "subgroup_matrix_right<f16, 16, 16>", C = "subgroup_matrix_result<f32, 16, 16>";
const step = {
  reg: "",
  wgRow: `r0 = subgroupMatrixLoad<${R}, row_major>(&t, sg * 2048u + (it & 7u) * 16u, 72u);`,
  wgCol: `r0 = subgroupMatrixLoad<${R}, col_major>(&t, sg * 2048u + (it & 7u) * 16u, 72u);`,
  wgConst: `r0 = subgroupMatrixLoad<${R}, row_major>(&t, 1024u, 72u);`,
  wgColConst: `r0 = subgroupMatrixLoad<${R}, col_major>(&t, 1024u, 72u);`,
  wgSg: `r0 = subgroupMatrixLoad<${R}, row_major>(&t, sg * 2048u, 72u);`,
  wgShift: `r0 = subgroupMatrixLoad<${R}, row_major>(&t, (sg * 256u + (it & 7u) * 2u) << 3u, 72u);`,
  wgLeft: `r0 = subgroupMatrixLoad<${R}, row_major>(&t, 1024u, 72u); l0b = subgroupMatrixLoad<${L}, row_major>(&t, sg * 2048u + (it & 7u) * 16u, 72u);`,
  stRow: `r0 = subgroupMatrixLoad<${R}, row_major>(&src, ((wg.x * 4u + sg) * 64u + (it & 63u)) * 256u, 16u);`,
  stCol: `r0 = subgroupMatrixLoad<${R}, col_major>(&src, ((wg.x * 4u + sg) * 64u + (it & 63u)) * 256u, 16u);`,
  stRow64: `r0 = subgroupMatrixLoad<${R}, row_major>(&src, (wg.x * 4u + sg) * 16384u + (it & 63u) * 16u, 64u);`,
  stCol64: `r0 = subgroupMatrixLoad<${R}, col_major>(&src, (wg.x * 4u + sg) * 16384u + (it & 63u) * 1024u, 64u);`,
  store: `subgroupMatrixStore<row_major>(&o, sg * 1088u + (it & 3u) * 16u, c0, 68u);`,
  storeLoad: `subgroupMatrixStore<row_major>(&o, sg * 1088u + (it & 3u) * 16u, c0, 68u); c0 = subgroupMatrixLoad<${C}, row_major>(&o, sg * 1088u + ((it + 1u) & 3u) * 16u, 68u);`,
};
const src = device.createBuffer({ size: groups * 4 * 16384 * 2, usage: 0x80 });
const out = device.createBuffer({ size: groups * 4 * 1024 * 4, usage: 0x80 });
const only = process.env.PROBE_ONLY?.split(",");
for (const [name, body] of Object.entries(step).filter(([n]) => !only || only.includes(n))) {
  const code = `enable f16; enable subgroups; enable chromium_experimental_subgroup_matrix;
@group(0) @binding(0) var<storage, read_write> outb: array<f32>;
@group(0) @binding(1) var<storage, read> src: array<f16>;
var<workgroup> t: array<f16, 8192>;
var<workgroup> o: array<f32, 4352>;
@compute @workgroup_size(${WG}) fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wg: vec3u, @builtin(subgroup_id) sg: u32) {
  for (var i = li; i < 8192u; i += ${WG}u) { t[i] = f16(f32(i % 7u) * 0.01); }
  for (var i = li; i < 4352u; i += ${WG}u) { o[i] = 0.0; }
  if (li == 0u) { o[0] = f32(src[0]); }
  workgroupBarrier();
  let l0 = subgroupMatrixLoad<${L}, row_major>(&t, 0, 16);
  var l0b = l0;
  let l1 = subgroupMatrixLoad<${L}, row_major>(&t, 256, 16);
  var r0 = subgroupMatrixLoad<${R}, row_major>(&t, 512, 16);
  let r1 = subgroupMatrixLoad<${R}, row_major>(&t, 768, 16);
  var c0 = ${C}(); var c1 = ${C}(); var c2 = ${C}(); var c3 = ${C}();
  for (var it = 0u; it < ${ITER}u; it++) {
    ${body}
    c0 = subgroupMatrixMultiplyAccumulate(l0b, r0, c0);
    c1 = subgroupMatrixMultiplyAccumulate(l1, r0, c1);
    c2 = subgroupMatrixMultiplyAccumulate(l0, r1, c2);
    c3 = subgroupMatrixMultiplyAccumulate(l1, r1, c3);
  }
  subgroupMatrixStore<row_major>(&outb, (wg.x * 4u + sg) * 1024u, c0, 16);
  subgroupMatrixStore<row_major>(&outb, (wg.x * 4u + sg) * 1024u + 256u, c1, 16);
  subgroupMatrixStore<row_major>(&outb, (wg.x * 4u + sg) * 1024u + 512u, c2, 16);
  subgroupMatrixStore<row_major>(&outb, (wg.x * 4u + sg) * 1024u + 768u, c3, 16);
}`;
  device.pushErrorScope("validation");
  const module = device.createShaderModule({ code });
  const info = await module.getCompilationInfo();
  const errs = info.messages.filter((m) => m.type === "error");
  if (errs.length) { console.log(name, "WGSL:", errs[0].lineNum, errs[0].message); await device.popErrorScope(); continue; }
  const p = device.createComputePipeline({ layout: "auto", compute: { module, entryPoint: "main" } });
  const err = await device.popErrorScope();
  if (err) { console.log(name, "pipeline:", err.message.split("\n")[0]); continue; }
  const bg = device.createBindGroup({ layout: p.getBindGroupLayout(0), entries: [{ binding: 0, resource: { buffer: out } }, { binding: 1, resource: { buffer: src } }] });
  const go = () => { const e = device.createCommandEncoder(); const pass = e.beginComputePass(); pass.setPipeline(p); pass.setBindGroup(0, bg); pass.dispatchWorkgroups(groups); pass.end(); device.queue.submit([e.finish()]); };
  go(); await device.queue.onSubmittedWorkDone();
  const t0 = performance.now();
  for (let r = 0; r < 5; r++) go();
  await device.queue.onSubmittedWorkDone();
  const s = (performance.now() - t0) / 5 / 1e3;
  const mmas = groups * (WG / 32) * ITER * 4;
  console.log(`${name.padEnd(9)} ${(mmas * 8192 / s / 1e12).toFixed(1).padStart(7)} TFLOP/s  (${(s * 1e3).toFixed(3)} ms, ${(s * 1.98e9 * 132 / (mmas / 4)).toFixed(1)} SM clocks per 4-MMA step of one subgroup)`);
}
process.exit(0);
