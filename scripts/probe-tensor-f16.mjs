// Does Dawn on this GPU give f16 tensor cores (subgroup matrices) once shader-f16 is allowed on
// NVIDIA (Dawn toggle vulkan_enable_f16_on_nvidia)? Checks the layout conventions of
// subgroupMatrixLoad / Store against a CPU product (from storage and from workgroup memory), the
// accuracy of an fp32 product split into two f16 halves (hi*hi + hi*lo + lo*hi), and f16
// subnormals. Throughput: probe-tensor-f16-loads.mjs. Prints; writes nothing.
//   source .device/prologue.sh && node scripts/probe-tensor-f16.mjs   (PROBE_NULL=1: compile only)
// With the toggles "allow_unsafe_apis" alone it lists what Dawn offers without f16 (on an H200:
// integer configurations only) and stops there.
const { create, globals } = await import("webgpu");
Object.assign(globalThis, globals);
const toggles = process.argv[2] ?? "allow_unsafe_apis,vulkan_enable_f16_on_nvidia,disable_workgroup_init";
// PROBE_NULL=1: Dawn's null backend, to check that the WGSL compiles on a machine without the GPU.
const gpu = create([...(process.env.PROBE_NULL ? ["backend=null"] : []), `enable-dawn-features=${toggles}`]);
const adapter = await gpu.requestAdapter({ powerPreference: "high-performance" });
console.log("adapter:", adapter.info.description, "| toggles:", toggles);
console.log("features:", [...adapter.features].sort().join(", "));
const cfgs = (adapter.info.subgroupMatrixConfigs ?? []).map((c) => `${c.componentType}->${c.resultComponentType} ${c.M}x${c.N}x${c.K}`);
console.log("shader-f16:", adapter.features.has("shader-f16"), "| configs:", cfgs.join(", ") || "none");
const want = ["shader-f16", "subgroups", "chromium-experimental-subgroup-matrix", "timestamp-query"].filter((f) => adapter.features.has(f));
const device = await adapter.requestDevice({ requiredFeatures: want, requiredLimits: { maxComputeWorkgroupStorageSize: adapter.limits.maxComputeWorkgroupStorageSize } });
device.addEventListener?.("uncapturederror", (e) => console.log("uncaptured:", e.error.message));
if (!process.env.PROBE_NULL && (!want.includes("shader-f16") || !cfgs.some((c) => c.startsWith("f16->f32")))) { console.log("no f16 -> f32 configuration: stop"); process.exit(0); }

const U = { STORAGE: 0x80, COPY_SRC: 0x4, COPY_DST: 0x8, MAP_READ: 0x1 };
function buf(data, usage = U.STORAGE | U.COPY_SRC | U.COPY_DST) {
  const b = device.createBuffer({ size: Math.max(16, data.byteLength), usage });
  device.queue.writeBuffer(b, 0, data);
  return b;
}
async function read(b, bytes) {
  const r = device.createBuffer({ size: bytes, usage: U.MAP_READ | U.COPY_DST });
  const e = device.createCommandEncoder(); e.copyBufferToBuffer(b, 0, r, 0, bytes); device.queue.submit([e.finish()]);
  await r.mapAsync(1); const out = new Float32Array(r.getMappedRange().slice(0)); r.unmap(); return out;
}
async function pipeline(code) {
  device.pushErrorScope("validation");
  const module = device.createShaderModule({ code });
  const info = await module.getCompilationInfo();
  for (const m of info.messages) if (m.type === "error") console.log("WGSL", m.lineNum, m.message);
  const p = device.createComputePipeline({ layout: "auto", compute: { module, entryPoint: "main" } });
  const err = await device.popErrorScope(); if (err) console.log("pipeline error:", err.message);
  return p;
}
function run(p, bufs, wg) {
  const bg = device.createBindGroup({ layout: p.getBindGroupLayout(0), entries: bufs.map((b, i) => ({ binding: i, resource: { buffer: b } })) });
  const e = device.createCommandEncoder(); const pass = e.beginComputePass(); pass.setPipeline(p); pass.setBindGroup(0, bg); pass.dispatchWorkgroups(wg); pass.end(); device.queue.submit([e.finish()]);
}
// f32 -> nearest f16 (ties to even) as a number, and arrays of f16 bits: src/util/half.ts's f32ToF16,
// restated because the device runs plain node on this file (no TypeScript), and Node 20 has no Float16Array
const F = new Float32Array(1), W = new Uint32Array(F.buffer);
function f16bits(v) {
  F[0] = v; const x = W[0], sign = (x >>> 16) & 0x8000, e = ((x >>> 23) & 0xff) - 112;
  let m = x & 0x7fffff;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) { if (e < -10) return sign; m |= 0x800000; const sh = 14 - e, h = m >> sh, r = m & ((1 << sh) - 1), mid = 1 << (sh - 1); return sign | (h + (r > mid || (r === mid && h & 1) ? 1 : 0)); }
  const h = (e << 10) | (m >> 13), r = m & 0x1fff;
  return sign | (h + (r > 0x1000 || (r === 0x1000 && h & 1) ? 1 : 0));
}
function f16value(h) { const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 0x1f, f = h & 0x3ff; return e === 0 ? s * f * 2 ** -24 : s * (1 + f / 1024) * 2 ** (e - 15); }
const f16 = (x) => f16value(f16bits(x));
const Half = (xs) => Uint16Array.from(xs, f16bits);
const rnd = (n, s = 1) => Float32Array.from({ length: n }, () => (Math.random() * 2 - 1) * s);

// 1. layouts: C(16x16) = A(16x16) B(16x16), A row-major, B given as B^T row-major (a col-major
// load), C row-major: straight from storage, and (1b) from workgroup memory with padded rows
// (stride 24) at an offset, copied in by the threads.
async function layoutCheck(label, code) {
  const A = rnd(256).map(f16), BT = rnd(256).map(f16);
  const p = await pipeline(code);
  const C = buf(new Float32Array(256));
  run(p, [buf(Half(A)), buf(Half(BT)), C], 1);
  const got = await read(C, 1024);
  let worst = 0;
  for (let i = 0; i < 16; i++) for (let j = 0; j < 16; j++) {
    let s = 0; for (let k = 0; k < 16; k++) s += A[i * 16 + k] * BT[j * 16 + k];
    worst = Math.max(worst, Math.abs(s - got[i * 16 + j]));
  }
  console.log(`layout check ${label}: max abs err`, worst.toExponential(2));
}
const LAYOUT_BINDINGS = `@group(0) @binding(0) var<storage, read_write> a: array<f16>;
@group(0) @binding(1) var<storage, read_write> bt: array<f16>;
@group(0) @binding(2) var<storage, read_write> c: array<f32>;`;
await layoutCheck("(A row-major, B^T col-major load, C row-major)", `enable f16; enable chromium_experimental_subgroup_matrix;
${LAYOUT_BINDINGS}
@compute @workgroup_size(128) fn main() {
  let l = subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>, row_major>(&a, 0, 16);
  let r = subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>, col_major>(&bt, 0, 16);
  let m = subgroupMatrixMultiplyAccumulate(l, r, subgroup_matrix_result<f32, 16, 16>());
  subgroupMatrixStore<row_major>(&c, 0, m, 16);
}`);
await layoutCheck("from workgroup memory (stride 24, offset 32)", `enable f16; enable subgroups; enable chromium_experimental_subgroup_matrix;
${LAYOUT_BINDINGS}
var<workgroup> ta: array<f16, 1024>;
var<workgroup> tb: array<f16, 1024>;
@compute @workgroup_size(128) fn main(@builtin(local_invocation_index) li: u32, @builtin(subgroup_id) sg: u32) {
  for (var i = li; i < 256u; i += 128u) { ta[32u + (i / 16u) * 24u + i % 16u] = a[i]; tb[32u + (i / 16u) * 24u + i % 16u] = bt[i]; }
  workgroupBarrier();
  let l = subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>, row_major>(&ta, 32u, 24u);
  let r = subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>, col_major>(&tb, 32u, 24u);
  let m = subgroupMatrixMultiplyAccumulate(l, r, subgroup_matrix_result<f32, 16, 16>());
  if (sg == 0u) { subgroupMatrixStore<row_major>(&c, 0, m, 16); }
}`);

// 2. fp32 product from f16 halves, K = 64: errors against float64, and against plain f32 sums.
{
  const K = 64, M = 16, N = 16;
  const A = rnd(M * K, 3), B = rnd(N * K, 3);
  const split = (x) => { const hi = x.map(f16); const lo = x.map((v, i) => f16(v - hi[i])); return [Half(hi), Half(lo)]; };
  const [ah, al] = split(A), [bh, bl] = split(B);
  const code = `enable f16; enable chromium_experimental_subgroup_matrix;
@group(0) @binding(0) var<storage, read_write> ah: array<f16>;
@group(0) @binding(1) var<storage, read_write> al: array<f16>;
@group(0) @binding(2) var<storage, read_write> bh: array<f16>;
@group(0) @binding(3) var<storage, read_write> bl: array<f16>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;
@compute @workgroup_size(128) fn main() {
  var m = subgroup_matrix_result<f32, 16, 16>();
  for (var k = 0u; k < ${K}u; k += 16u) {
    let a0 = subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>, row_major>(&ah, k, ${K});
    let a1 = subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>, row_major>(&al, k, ${K});
    let b0 = subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>, col_major>(&bh, k, ${K});
    let b1 = subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>, col_major>(&bl, k, ${K});
    m = subgroupMatrixMultiplyAccumulate(a1, b0, m);
    m = subgroupMatrixMultiplyAccumulate(a0, b1, m);
    m = subgroupMatrixMultiplyAccumulate(a0, b0, m);
  }
  subgroupMatrixStore<row_major>(&c, 0, m, 16);
}`;
  const p = await pipeline(code);
  const C = buf(new Float32Array(256));
  run(p, [buf(ah), buf(al), buf(bh), buf(bl), C], 1);
  const got = await read(C, 1024);
  let e3 = 0, e32 = 0, scale = 0;
  for (let i = 0; i < M; i++) for (let j = 0; j < N; j++) {
    let s = 0, s32 = Math.fround(0), mag = 0;
    for (let k = 0; k < K; k++) { s += A[i * K + k] * B[j * K + k]; s32 = Math.fround(s32 + Math.fround(A[i * K + k] * B[j * K + k])); mag += Math.abs(A[i * K + k] * B[j * K + k]); }
    e3 = Math.max(e3, Math.abs(got[i * N + j] - s) / mag); e32 = Math.max(e32, Math.abs(s32 - s) / mag);
  }
  console.log(`3-product f16 split, K=${K}: max |err| / sum|a b| = ${e3.toExponential(2)} (sequential fp32: ${e32.toExponential(2)})`);
}

// 2b. f16 subnormals: converted in the shader (f32 -> f16), and as MMA inputs (raw bits from the host)
{
  const code = `enable f16; enable chromium_experimental_subgroup_matrix;
@group(0) @binding(0) var<storage, read_write> a: array<f16>;
@group(0) @binding(1) var<storage, read_write> b: array<f16>;
@group(0) @binding(2) var<storage, read_write> c: array<f32>;
@group(0) @binding(3) var<storage, read_write> cv: array<f32>;
@compute @workgroup_size(128) fn main(@builtin(local_invocation_index) li: u32) {
  let l = subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>, row_major>(&a, 0, 16);
  let r = subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>, row_major>(&b, 0, 16);
  let m = subgroupMatrixMultiplyAccumulate(l, r, subgroup_matrix_result<f32, 16, 16>());
  subgroupMatrixStore<row_major>(&c, 0, m, 16);
  if (li == 0u) { cv[0] = f32(f16(cv[4])); cv[1] = f32(f16(cv[5])); cv[2] = f32(f16(cv[4]) * f16(1024.0)); }
}`;
  const p = await pipeline(code);
  const A = new Uint16Array(256).fill(0x0010); // 2^-20, an f16 subnormal
  const B = new Uint16Array(256).fill(0x3c00); // 1.0
  const C = buf(new Float32Array(256)), CV = buf(Float32Array.from([0, 0, 0, 0, 1e-6, 3e-5, 0, 0]));
  run(p, [buf(A), buf(B), C, CV], 1);
  const got = await read(C, 1024), cv = await read(CV, 32);
  console.log(`subnormal f16 MMA input 2^-20 x 1 summed over 16: ${got[0].toExponential(4)} (exact ${(16 * 2 ** -20).toExponential(4)}); shader f16(1e-6) = ${cv[0].toExponential(4)}, f16(3e-5) = ${cv[1].toExponential(4)}, f16(1e-6)*1024 = ${cv[2].toExponential(4)}`);
}

process.exit(0);
