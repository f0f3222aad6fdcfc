/**
 * WebGPU tests run on SwiftShader, the CPU Vulkan driver that Debian's chromium package ships:
 * Dawn finds it through VK_ICD_FILENAMES, pointing at a copy of chromium's ICD file whose
 * library path is made absolute (written here into a temp dir, so no root is needed).
 * `compareKernel` runs one kernel on the ref backend and on WebGPU from the same inputs and
 * returns the relative error of every output.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { WebGpuBackend } from "../src/backend/webgpu/index.js";
import { refKernels } from "../src/backend/ref/index.js";
import type { DType, HostArray } from "../src/tensor/dtype.js";
import type { GpuTensorBuffer } from "../src/backend/webgpu/pool.js";
import { Rng } from "../src/util/rng.js";
import { relErr } from "./helpers.js";
import assert from "node:assert/strict";
import { loadModel } from "../src/models/load.js";
import { formatCheck, runChecks } from "../src/cli/verify.js";
import { SafetensorsFile } from "../src/io/safetensors.js";

const CHROMIUM = "/usr/lib/chromium";

/** Point Vulkan at SwiftShader unless the environment already chose a driver. */
export function useSwiftShader(): void {
  process.env.XDG_RUNTIME_DIR ??= os.tmpdir();
  if (process.env.VK_ICD_FILENAMES || process.env.VK_DRIVER_FILES) return;
  const lib = path.join(CHROMIUM, "libvk_swiftshader.so");
  if (!fs.existsSync(lib)) throw new Error(`SwiftShader not found at ${lib}: apt-get install -y chromium libvulkan1`);
  const icd = JSON.parse(fs.readFileSync(path.join(CHROMIUM, "vk_swiftshader_icd.json"), "utf8"));
  icd.ICD.library_path = lib;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "seqlab-vk-"));
  const file = path.join(dir, "vk_swiftshader_icd.json");
  fs.writeFileSync(file, JSON.stringify(icd));
  process.env.VK_ICD_FILENAMES = file;
}

let shared: Promise<WebGpuBackend> | null = null;

/** One backend per test process. */
export function gpuBackend(): Promise<WebGpuBackend> {
  if (!shared) {
    useSwiftShader();
    shared = WebGpuBackend.create();
  }
  return shared;
}

/** A buffer argument: inputs carry data; outputs start from `data` too (random garbage or accumulators). */
export interface BufArg {
  buf: true;
  dtype: DType;
  data: HostArray;
  output: boolean;
  /** compare exactly (integer outputs, bit patterns) */
  exact?: boolean;
}

export const input = (data: HostArray, dtype: DType = "f32"): BufArg => ({ buf: true, dtype, data, output: false });
export const output = (data: HostArray, dtype: DType = "f32", exact = false): BufArg => ({ buf: true, dtype, data, output: true, exact });

const isBuf = (a: unknown): a is BufArg => typeof a === "object" && a !== null && (a as BufArg).buf === true;

export function randArray(n: number, rng: Rng, std = 1): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = rng.normal() * std;
  return a;
}

export function copyArray(a: HostArray): HostArray {
  return a.slice() as HostArray;
}

/**
 * Run `kernel` on ref and on the GPU; returns the relative errors of the outputs (in argument
 * order; exact outputs give 0 or Infinity).
 */
export async function compareKernel(be: WebGpuBackend, kernel: string, args: unknown[]): Promise<number[]> {
  const refArgs = args.map((a) => (isBuf(a) ? copyArray(a.data) : a));
  (refKernels as unknown as Record<string, (...x: unknown[]) => void>)[kernel](...refArgs);
  const handles: (GpuTensorBuffer | null)[] = args.map((a) => (isBuf(a) ? be.upload(a.dtype, a.data) : null));
  const gpuArgs = args.map((a, i) => (isBuf(a) ? handles[i] : a));
  (be.kernels as unknown as Record<string, (...x: unknown[]) => void>)[kernel](...gpuArgs);
  const errors: number[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (!isBuf(a) || !a.output) continue;
    const got = await be.read(handles[i]!, a.dtype, a.data.length);
    const want = refArgs[i] as HostArray;
    if (a.exact) {
      let same = got.length === want.length;
      for (let j = 0; same && j < want.length; j++) same = Object.is(got[j], want[j]) || (Number.isNaN(got[j]) && Number.isNaN(want[j]));
      errors.push(same ? 0 : Infinity);
    } else {
      errors.push(relErr(Float64Array.from(got), Float64Array.from(want)));
    }
  }
  handles.forEach((h) => h && be.release(h));
  return errors;
}

/** Run verify's checks on webgpu for one fixture directory; asserts every check passes. */
export async function verifyOnGpu(dir: string): Promise<void> {
  const be = await gpuBackend();
  const model = loadModel(dir, be);
  const ref = SafetensorsFile.open(path.join(dir, "reference.safetensors"));
  try {
    const checks = await runChecks(model, ref);
    const failed = checks.filter((c) => !c.ok);
    assert.equal(failed.length, 0, `${dir}:\n${failed.map(formatCheck).join("\n")}`);
    assert.ok(checks.some((c) => c.name === "logits" && c.ok), `${dir}: no logits check`);
  } finally {
    ref.close();
    for (const p of model.parameters()) p.dispose();
  }
}

