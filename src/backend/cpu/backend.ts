/**
 * The cpu backend: WebAssembly SIMD kernels on every core. Tensor storage lives in one shared
 * WebAssembly.Memory; handles are typed-array views into it (Float32Array for f32, Int32Array
 * for i32, Uint16Array for f16/bf16), so the reference kernels can run on the very same
 * handles. Every kernel of the table, core and mixer families alike, runs natively;
 * nativeKernels() / refKernels() / describe() say which run what, so nothing would fall back
 * to a reference twin silently.
 */
import type { Backend } from "../backend.js";
import { MemoryMeter } from "../backend.js";
import type { Kernels, KernelName } from "../kernels.js";
import type { DType, HostArray } from "../../tensor/dtype.js";
import { DTYPE_BYTES } from "../../tensor/dtype.js";
import { refKernels } from "../ref/index.js";
import * as refElementwise from "../ref/elementwise.js";
import { SeqlabError } from "../../util/errors.js";
import { kernelModule, instantiate, chooseIsa } from "./wasm_module.js";
import type { CpuIsa } from "./isa.js";
import { WasmHeap, type HeapStats } from "./heap.js";
import { ThreadPool, type WorkerFactory } from "./pool.js";
import { CTRL } from "./control.js";
import { CpuRuntime } from "./runtime.js";
import { cpuCoreKernels } from "./kernels.js";
import { cpuMixerKernels } from "./mixers.js";

export interface CpuOptions {
  /** threads including the main thread (default: available cores) */
  threads?: number;
  /** how workers are started (default: Node worker_threads) */
  workers?: WorkerFactory;
  /** initial memory in bytes (it grows on demand up to 4 GiB) */
  initialBytes?: number;
  /** split every kernel across all threads, however small its work (for tests of the partitioning) */
  forceThreads?: boolean;
  /** storage of decoding's KV caches (Backend.kvCache; default f32) */
  kvCache?: "f32" | "f16";
  /** instruction set of the kernels (wasm_module.ts): relaxed where the engine runs it, else simd128 */
  isa?: CpuIsa;
}

/** Address space the module's static data may use; the allocator starts above it. */
const STATIC_RESERVE = 65536;

export const MAX_THREADS = 256;

export class CpuBackend implements Backend<HostArray> {
  readonly name = "cpu";
  readonly kernels: Kernels<HostArray>;
  private readonly meter = new MemoryMeter();
  private readonly native: Set<string>;
  private readonly helpers: Set<string>;

  private constructor(
    readonly runtime: CpuRuntime,
    private readonly heap: WasmHeap,
    readonly kvCache: "f32" | "f16",
    readonly isa: CpuIsa,
  ) {
    const coreKernels = cpuCoreKernels(runtime);
    const core = { ...coreKernels, ...cpuMixerKernels(runtime, coreKernels) };
    this.native = new Set(Object.keys(core));
    this.kernels = { ...refKernels, ...core };
    // ref/elementwise also exports scalar helpers (sigmoid, unaryValue ...) that ride along in
    // refKernels; they are not kernels, so they are neither native nor "on ref"
    this.helpers = new Set(Object.keys(refElementwise).filter((k) => !this.native.has(k)));
  }

  static async create(opts: CpuOptions = {}): Promise<CpuBackend> {
    const threads = opts.threads ?? (await defaultThreads());
    if (!Number.isInteger(threads) || threads < 1 || threads > MAX_THREADS) {
      throw new SeqlabError(`cpu backend: threads must be an integer in [1, ${MAX_THREADS}], got ${threads}`);
    }
    const isa = await chooseIsa(opts.isa);
    const module = await kernelModule(isa);
    const heap = new WasmHeap(STATIC_RESERVE, opts.initialBytes);
    const exports = instantiate(module, heap.memory);
    if (exports.heapBase() > STATIC_RESERVE) throw new Error(`internal: wasm static data ends at ${exports.heapBase()}, past the reserved ${STATIC_RESERVE}`);
    const names = kernelExportNames(module);
    const ctrl = heap.alloc(CTRL.BYTES, "the thread control block");
    const spawn = opts.workers ?? (threads > 1 ? (await import("./node_workers.js")).nodeWorkers : noWorkers);
    const pool = await ThreadPool.start(threads, module, heap.memory, ctrl, names, spawn);
    return new CpuBackend(new CpuRuntime(heap, exports, pool, names, opts.forceThreads), heap, opts.kvCache ?? "f32", isa);
  }

  get threads(): number {
    return this.runtime.threads;
  }

  describe(): string {
    const onRef = this.refKernels();
    const fallback = onRef.length === 0 ? "" : `; ${onRef.length} kernels on ref: ${onRef.join(", ")}`;
    const kv = this.kvCache === "f16" ? ", f16 KV cache" : "";
    const isa = this.isa === "relaxed" ? "simd128 + relaxed FMA" : "simd128";
    return `cpu (wasm ${isa}, ${this.threads} thread${this.threads === 1 ? "" : "s"}${kv}${fallback})`;
  }

  /** Kernels that run as WebAssembly. */
  nativeKernels(): KernelName[] {
    return (Object.keys(this.kernels) as KernelName[]).filter((k) => this.native.has(k));
  }

  /** Kernels that run the reference TypeScript twin (no wasm version yet). */
  refKernels(): KernelName[] {
    return (Object.keys(this.kernels) as KernelName[]).filter((k) => !this.native.has(k) && !this.helpers.has(k));
  }

  allocate(dtype: DType, size: number): HostArray {
    const bytes = size * DTYPE_BYTES[dtype];
    const at = this.heap.alloc(bytes, `a ${dtype} tensor of ${size} elements`);
    const h = makeView(this.heap, dtype, at, size);
    this.meter.add(bytes);
    return h;
  }

  release(handle: HostArray): void {
    this.heap.free(handle.byteOffset, handle.byteLength);
    this.meter.remove(handle.byteLength);
  }

  upload(dtype: DType, data: HostArray): HostArray {
    const h = this.allocate(dtype, data.length);
    h.set(data);
    return h;
  }

  write(handle: HostArray, _dtype: DType, data: HostArray): void {
    handle.set(data);
  }

  readSync(handle: HostArray, dtype: DType, size: number): HostArray {
    const out = dtype === "f32" ? new Float32Array(size) : dtype === "i32" ? new Int32Array(size) : new Uint16Array(size);
    out.set(handle.subarray(0, size));
    return out;
  }

  async read(handle: HostArray, dtype: DType, size: number): Promise<HostArray> {
    return this.readSync(handle, dtype, size);
  }

  async sync(): Promise<void> {}

  memory() {
    return this.meter.stats();
  }

  resetPeak(): void {
    this.meter.resetPeak();
  }

  /** The allocator's view: memory size, live and free bytes, and the kernels' scratch. */
  heapStats(): HeapStats & { scratchBytes: number } {
    return { ...this.heap.stats(), scratchBytes: this.runtime.scratchBytes() };
  }

  /** Stop the worker threads. The backend must not be used afterwards. */
  async dispose(): Promise<void> {
    await this.runtime.pool.close();
  }
}

function makeView(heap: WasmHeap, dtype: DType, at: number, size: number): HostArray {
  switch (dtype) {
    case "f32":
      return heap.view(Float32Array, at, size);
    case "i32":
      return heap.view(Int32Array, at, size);
    case "f16":
    case "bf16":
      return heap.view(Uint16Array, at, size);
  }
}

/** Exported functions of the module, in a fixed order shared with the workers. */
function kernelExportNames(module: WebAssembly.Module): string[] {
  return WebAssembly.Module.exports(module)
    .filter((e) => e.kind === "function")
    .map((e) => e.name);
}

const noWorkers: WorkerFactory = () => {
  throw new Error("internal: no worker factory");
};

async function defaultThreads(): Promise<number> {
  if (typeof navigator !== "undefined" && navigator.hardwareConcurrency) return navigator.hardwareConcurrency;
  const os = await import("node:os");
  return os.availableParallelism ? os.availableParallelism() : os.cpus().length;
}
