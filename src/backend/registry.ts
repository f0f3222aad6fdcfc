/**
 * Backends by name. Creation is async (WebAssembly compilation, GPU adapters). The chosen
 * backend is explicit: callers name it, and createBackend never substitutes another.
 */
import type { Backend } from "./backend.js";
import { RefBackend } from "./ref/index.js";
import { SeqlabError } from "../util/errors.js";
import type { CpuIsa } from "./cpu/isa.js";

export interface BackendOptions {
  /** worker threads for the cpu backend (default: available cores) */
  threads?: number;
  precision?: "f32" | "f64";
  /** storage of decoding's KV caches (Backend.kvCache): f32 (default) or f16 (ref and cpu backends) */
  kvCache?: "f32" | "f16";
  /** instruction set of the cpu backend's kernels (default: relaxed where the engine runs it) */
  cpuIsa?: CpuIsa;
}

type Factory = (opts: BackendOptions) => Promise<Backend>;

const factories = new Map<string, Factory>([
  ["ref", async (opts) => new RefBackend({ precision: opts.precision, kvCache: opts.kvCache })],
  // loaded on demand: it brings Dawn (the npm package "webgpu") into Node
  [
    "webgpu",
    async (opts) => {
      if (opts.precision === "f64") throw new SeqlabError("backend webgpu stores f32 only (f64 precision is for the ref backend)");
      if (opts.kvCache === "f16") throw new SeqlabError("backend webgpu keeps its KV cache in f32 (an f16 KV cache is for the cpu and ref backends)");
      return (await import("./webgpu/index.js")).WebGpuBackend.create();
    },
  ],
  // loaded on demand: compiling the wasm module and starting workers is only for those who ask
  [
    "cpu",
    async (opts) => {
      if (opts.precision === "f64") throw new SeqlabError('backend "cpu" stores float32 only (use --backend ref for float64)');
      return (await import("./cpu/backend.js")).CpuBackend.create({ threads: opts.threads, kvCache: opts.kvCache, isa: opts.cpuIsa });
    },
  ],
]);

/** Later backends (cpu, webgpu) register themselves here. */
export function registerBackend(name: string, factory: Factory): void {
  factories.set(name, factory);
}

export function backendNames(): string[] {
  return [...factories.keys()];
}

export async function createBackend(name: string, opts: BackendOptions = {}): Promise<Backend> {
  const f = factories.get(name);
  if (!f) throw new SeqlabError(`backend "${name}" is unknown (choose one of: ${backendNames().join(", ")})`);
  return f(opts);
}

let current: Backend | null = null;

/** The backend that creation ops use when none is named. */
export function defaultBackend(): Backend {
  if (!current) current = new RefBackend();
  return current;
}

export function setDefaultBackend(b: Backend): void {
  current = b;
}
