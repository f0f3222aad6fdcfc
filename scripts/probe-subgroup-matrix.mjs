// Which subgroup-matrix (cooperative matrix) shapes and types this GPU offers through Dawn.
const { create } = await import("webgpu");
const gpu = create(["enable-dawn-features=allow_unsafe_apis"]);
const adapter = await gpu.requestAdapter({ powerPreference: "high-performance" });
const feats = [...adapter.features].sort();
console.log("adapter:", adapter.info?.description, adapter.info?.vendor, adapter.info?.architecture);
console.log("features:", feats.join(", "));
const info = adapter.info ?? {};
for (const k of Object.keys(Object.getPrototypeOf(info)).concat(Object.keys(info))) {
  if (/matrix/i.test(k)) console.log("info." + k + ":", JSON.stringify(info[k]));
}
try {
  const cfgs = info.subgroupMatrixConfigs;
  if (cfgs) for (const c of cfgs) console.log("config:", JSON.stringify({ componentType: c.componentType, resultComponentType: c.resultComponentType, M: c.M, N: c.N, K: c.K }));
  else console.log("no info.subgroupMatrixConfigs");
} catch (e) { console.log("configs error:", e.message); }
