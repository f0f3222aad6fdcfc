/**
 * The cpu backend in a browser: the same WebAssembly kernels and thread pool as in Node, with
 * Web Workers (started from Blob URLs) in place of Node's worker threads.
 */
import { CpuBackend } from "../../../src/backend/cpu/backend.js";
import { webWorkers } from "./web_workers.js";

export function startCpuBackend(threads: number): Promise<CpuBackend> {
  return CpuBackend.create({ threads, workers: webWorkers });
}
