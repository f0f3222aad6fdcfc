/**
 * What the cpu kernels run on: the heap, the kernel module's exports on the main thread, the
 * thread pool, and per-thread scratch space. `call` picks the thread count for one kernel call
 * from the size of its work: small calls stay on the main thread (a dispatch costs a few
 * microseconds), large ones use every thread.
 */
import type { HostArray } from "../../tensor/dtype.js";
import type { WasmExports, WasmFn } from "./wasm_module.js";
import type { ThreadPool } from "./pool.js";
import { WasmHeap } from "./heap.js";

export class CpuRuntime {
  private readonly index = new Map<string, number>();
  private readonly fns = new Map<string, WasmFn>();
  private scratchAt = 0;
  private scratchStride = 0;

  constructor(
    readonly heap: WasmHeap,
    readonly exports: WasmExports,
    readonly pool: ThreadPool,
    /** kernel export names, in the order the workers index them */
    readonly names: string[],
    /** split every kernel across all threads however small (tests of the partitioning) */
    private readonly forceThreads = false,
  ) {
    names.forEach((n, i) => {
      this.index.set(n, i);
      this.fns.set(n, exports[n]);
    });
  }

  get threads(): number {
    return this.pool.threads;
  }

  /** Threads for `work` units when each thread should get at least `grain` of them. */
  threadsFor(work: number, grain: number): number {
    if (this.forceThreads) return this.pool.threads;
    return Math.max(1, Math.min(this.pool.threads, Math.floor(work / grain)));
  }

  /** Run kernel `name` on `nth` threads with these arguments (after tid, nth). */
  call(name: string, nth: number, ...args: number[]): void {
    const fn = this.fns.get(name);
    if (!fn) throw new Error(`internal: no wasm kernel ${name}`);
    this.pool.run(fn, this.index.get(name)!, nth, args);
  }

  /** Byte address of a handle's data; the handle must be a view into this backend's memory. */
  ptr(h: HostArray | null, what: string): number {
    if (h === null) return 0;
    if (!this.heap.owns(h)) throw new Error(`internal: cpu kernel got ${what} that is not cpu-backend storage`);
    return h.byteOffset;
  }

  /** Per-thread scratch of at least `bytes` each: [base, stride]. Grows (never shrinks) on demand. */
  scratch(bytes: number): [number, number] {
    const stride = WasmHeap.blockSize(bytes);
    if (stride > this.scratchStride) {
      if (this.scratchStride > 0) this.heap.free(this.scratchAt, this.scratchStride * this.threads);
      this.scratchAt = this.heap.alloc(stride * this.threads, "kernel scratch");
      this.scratchStride = stride;
    }
    return [this.scratchAt, this.scratchStride];
  }

  /** Scratch bytes in use (per thread, all threads). */
  scratchBytes(): number {
    return this.scratchStride * this.threads;
  }

  /** A temporary block for the duration of one kernel call. */
  withTemp<T>(bytes: number, fn: (at: number) => T): T {
    const at = this.heap.alloc(bytes, "kernel workspace");
    try {
      return fn(at);
    } finally {
      this.heap.free(at, bytes);
    }
  }
}
