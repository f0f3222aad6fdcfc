/**
 * Which backend the playground's engine runs on, chosen once per page and said on the page:
 * WebGPU when navigator.gpu hands out an adapter, else the cpu backend (WebAssembly SIMD on a
 * pool of Web Workers over shared memory). A URL parameter forces either; a forced backend
 * that cannot start is an error, never a quiet switch to the other.
 */
import type { Backend } from "../../../src/backend/backend.js";
import { WebGpuBackend } from "../../../src/backend/webgpu/index.js";
import { startCpuBackend } from "./cpu.js";
import { SeqlabError } from "../../../src/util/errors.js";
import type { BackendChoice, BackendInfo } from "../protocol.js";

export interface ChosenBackend {
  backend: Backend;
  info: BackendInfo;
}

export async function chooseBackend(choice: BackendChoice, threads?: number): Promise<ChosenBackend> {
  if (choice === "webgpu") return startWebGpu("forced by ?backend=webgpu");
  if (choice === "cpu") return startCpu("forced by ?backend=cpu", threads);
  if (choice !== "auto") throw new SeqlabError(`backend "${choice}" is unknown (auto, webgpu, cpu)`);
  const gpu = (navigator as Navigator & { gpu?: GPU }).gpu;
  if (!gpu) return startCpu("auto: this browser has no navigator.gpu", threads);
  const adapter = await gpu.requestAdapter();
  if (!adapter) return startCpu("auto: navigator.gpu gave no adapter", threads);
  return startWebGpu("auto: navigator.gpu gave an adapter");
}

async function startWebGpu(reason: string): Promise<ChosenBackend> {
  const backend = await WebGpuBackend.create();
  const describe = backend.describe();
  // "webgpu (ADAPTER, f32, ...)": the adapter is the first field
  const adapter = describe.replace(/^webgpu \(/, "").split(", f32")[0];
  return { backend, info: { name: "webgpu", describe, reason, adapter } };
}

async function startCpu(reason: string, threads?: number): Promise<ChosenBackend> {
  if (typeof SharedArrayBuffer === "undefined" || !(self as { crossOriginIsolated?: boolean }).crossOriginIsolated) {
    throw new SeqlabError(
      "cpu backend: SharedArrayBuffer needs a cross-origin isolated page (serve it with Cross-Origin-Opener-Policy: same-origin and Cross-Origin-Embedder-Policy: require-corp, as `seqlab serve` does)",
    );
  }
  const backend = await startCpuBackend(threads ?? navigator.hardwareConcurrency ?? 1);
  return { backend, info: { name: "cpu", describe: backend.describe(), reason, threads: backend.threads } };
}
