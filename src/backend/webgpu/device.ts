/// <reference types="@webgpu/types" />
/**
 * Acquiring a WebGPU device: `navigator.gpu` in browsers, Dawn (the npm package `webgpu`) in
 * Node. This is the only place that knows which of the two it is running on.
 *
 * The device asks for the adapter's own limits (storage binding size, workgroup memory,
 * invocations) rather than WebGPU's portable defaults: kernels pick their tile shapes from them.
 */
import { SeqlabError } from "../../util/errors.js";

export interface AcquiredDevice {
  device: GPUDevice;
  adapter: GPUAdapter;
  /** "vendor architecture device description", as far as the adapter tells */
  adapterName: string;
  /** whether the device has the timestamp-query feature (benchmarks) */
  timestamps: boolean;
  /** the narrowest subgroup the device may run (0 without the subgroups feature): kernels that
   * combine values across lanes with subgroup shuffles need it at least as wide as the lanes */
  subgroupMinSize: number;
  /**
   * f16 x f16 -> f32 16 x 16 x 16 subgroup matrices (tensor cores) on subgroups of exactly 32
   * lanes: what attention_mma.ts needs (Dawn's chromium-experimental-subgroup-matrix with
   * shader-f16)
   */
  tensorCores: boolean;
}

export interface DeviceOptions {
  powerPreference?: GPUPowerPreference;
  /** ask for timestamp queries when the adapter has them */
  timestamps?: boolean;
  /** use f16 tensor cores where the adapter has them (default: yes, unless SEQLAB_WEBGPU_TENSOR_CORES=0) */
  tensorCores?: boolean;
}

/** Limits seqlab raises to the adapter's maximum when it can. */
const WANTED_LIMITS = [
  "maxStorageBufferBindingSize",
  "maxBufferSize",
  "maxComputeWorkgroupStorageSize",
  "maxComputeInvocationsPerWorkgroup",
  "maxComputeWorkgroupSizeX",
  "maxComputeWorkgroupSizeY",
  "maxStorageBuffersPerShaderStage",
  "maxComputeWorkgroupsPerDimension",
] as const;

/**
 * The GPU entry point, created once and kept for the life of the process: Dawn tears its
 * instance down when the JS object is collected, which kills devices still in use.
 */
let entryPoint: Promise<GPU> | null = null;

function gpuEntryPoint(): Promise<GPU> {
  entryPoint ??= createEntryPoint();
  return entryPoint;
}

const tensorCoresWanted = () => typeof process === "undefined" || process.env?.SEQLAB_WEBGPU_TENSOR_CORES !== "0";

/**
 * Dawn toggles. Workgroup memory is zero-initialised by WebGPU unless told otherwise; every
 * kernel here writes its workgroup tiles before reading them, and the initialisation costs
 * time on every workgroup (and seconds of shader compilation on SwiftShader). Subgroup matrices
 * (tensor cores) are an experimental feature (allow_unsafe_apis), and Dawn keeps shader-f16,
 * hence f16 subgroup matrices, from NVIDIA GPUs under Vulkan unless vulkan_enable_f16_on_nvidia
 * is on (a crash in its conformance tests, not in compute: crbug.com/tint/2164); both stay off
 * with SEQLAB_WEBGPU_TENSOR_CORES=0. Extra toggles for experiments come from SEQLAB_DAWN_FLAGS
 * (space-separated Dawn flags).
 */
const DAWN_FLAGS = [
  `enable-dawn-features=disable_workgroup_init${tensorCoresWanted() ? ",allow_unsafe_apis,vulkan_enable_f16_on_nvidia" : ""}`,
  // timestamps are rounded (a browser's defence against timing attacks) unless this is off
  "disable-dawn-features=timestamp_quantization",
  ...(typeof process !== "undefined" && process.env?.SEQLAB_DAWN_FLAGS ? process.env.SEQLAB_DAWN_FLAGS.split(" ") : []),
];

async function createEntryPoint(): Promise<GPU> {
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  if (nav?.gpu) return nav.gpu;
  const isNode = typeof process !== "undefined" && !!process.versions?.node;
  if (!isNode) throw new SeqlabError("webgpu: this browser has no navigator.gpu (WebGPU is not available)");
  let mod: { create: (flags: string[]) => GPU };
  try {
    // A variable specifier keeps bundlers from inlining the native addon.
    const name = "webgpu";
    mod = (await import(name)) as typeof mod;
  } catch (e) {
    entryPoint = null;
    throw new SeqlabError(`webgpu: the npm package "webgpu" (Dawn for Node) cannot be loaded: ${(e as Error).message.split("\n")[0]}`);
  }
  return mod.create(DAWN_FLAGS);
}

/** "description (vendor architecture)", from whatever the adapter tells. */
function describeAdapter(adapter: GPUAdapter): string {
  const info = adapter.info;
  const name = info?.description || info?.device || "unknown adapter";
  const maker = [info?.vendor, info?.architecture].filter((s) => !!s && s !== name).join(" ");
  return maker ? `${name} (${maker})` : name;
}

export async function acquireDevice(opts: DeviceOptions = {}): Promise<AcquiredDevice> {
  const gpu = await gpuEntryPoint();
  const adapter = await gpu.requestAdapter({ powerPreference: opts.powerPreference ?? "high-performance" });
  if (!adapter) {
    throw new SeqlabError(
      "webgpu: no GPU adapter is available (in Node without a GPU: install Debian's chromium and libvulkan1 and point VK_ICD_FILENAMES at SwiftShader)",
    );
  }
  const requiredLimits: Record<string, number> = {};
  for (const name of WANTED_LIMITS) {
    const v = (adapter.limits as unknown as Record<string, number>)[name];
    if (typeof v === "number") requiredLimits[name] = v;
  }
  const timestamps = !!opts.timestamps && adapter.features.has("timestamp-query");
  const subgroups = adapter.features.has("subgroups");
  const tensorCores = subgroups && (opts.tensorCores ?? tensorCoresWanted()) && hasF16Matrices(adapter);
  const requiredFeatures = [
    ...(timestamps ? ["timestamp-query"] : []),
    ...(subgroups ? ["subgroups"] : []),
    ...(tensorCores ? ["shader-f16", "chromium-experimental-subgroup-matrix"] : []),
  ] as GPUFeatureName[];
  const device = await adapter.requestDevice({ requiredLimits, requiredFeatures });
  const subgroupMinSize = subgroups ? ((adapter.info as { subgroupMinSize?: number }).subgroupMinSize ?? 0) : 0;
  return { device, adapter, adapterName: describeAdapter(adapter), timestamps, subgroupMinSize, tensorCores };
}

/** One of the adapter's subgroup matrix shapes (GPUAdapterInfo.subgroupMatrixConfigs, Dawn's experimental feature). */
interface SubgroupMatrixConfig {
  componentType: string;
  resultComponentType: string;
  M: number;
  N: number;
  K: number;
}

/** f16 -> f32 16 x 16 x 16 subgroup matrices on subgroups of exactly 32 lanes. */
function hasF16Matrices(adapter: GPUAdapter): boolean {
  const info = adapter.info as unknown as { subgroupMinSize?: number; subgroupMaxSize?: number; subgroupMatrixConfigs?: SubgroupMatrixConfig[] };
  if (!adapter.features.has("shader-f16") || !adapter.features.has("chromium-experimental-subgroup-matrix" as GPUFeatureName)) return false;
  if (info.subgroupMinSize !== 32 || info.subgroupMaxSize !== 32) return false;
  return (info.subgroupMatrixConfigs ?? []).some((c) => c.componentType === "f16" && c.resultComponentType === "f32" && c.M === 16 && c.N === 16 && c.K === 16);
}

/** WebGPU's flag constants (the GPUBufferUsage etc. globals do not exist in Node). */
export const BufferUsage = {
  MAP_READ: 0x1,
  MAP_WRITE: 0x2,
  COPY_SRC: 0x4,
  COPY_DST: 0x8,
  UNIFORM: 0x40,
  STORAGE: 0x80,
  QUERY_RESOLVE: 0x200,
} as const;
export const MapMode = { READ: 0x1, WRITE: 0x2 } as const;
export const ShaderStage = { COMPUTE: 0x4 } as const;
