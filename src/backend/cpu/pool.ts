/**
 * A pool of `threads - 1` workers plus the calling thread, over one shared memory. A kernel
 * call writes its arguments into the control block, bumps the job sequence number and notifies;
 * the main thread computes share 0 itself, then waits until every worker has acknowledged.
 * Kernels stay synchronous. Waiting spins for a short while before blocking in Atomics.wait,
 * because back-to-back kernels are the common case and a futex wake costs tens of microseconds.
 *
 * Where workers come from is a parameter (WorkerFactory): Node worker_threads now, Web Workers
 * in browsers later (a browser's main thread may not block in Atomics.wait, so there the
 * engine itself runs in a worker).
 */
import { CTRL } from "./control.js";
import { WORKER_SOURCE } from "./worker_source.js";
import type { WasmFn } from "./wasm_module.js";

/** What the pool needs from a worker (a Node Worker or a Web Worker wrapped alike). */
export interface PoolWorker {
  postMessage(msg: unknown): void;
  onMessage(fn: (msg: { type: string; tid: number; message?: string }) => void): void;
  onError(fn: (err: Error) => void): void;
  /** Let the process exit while the worker lives (Node's unref); called once the worker is running. */
  release(): void;
  terminate(): Promise<unknown> | void;
}

export type WorkerFactory = (source: string) => PoolWorker;

/** Polls of the pending count before blocking: long enough for a worker finishing its share, short
 * enough not to steal the core from a preempted worker on a busy machine. */
const MAIN_SPIN = 20000;

export class ThreadPool {
  private readonly ctl: Int32Array;
  private readonly args: Float64Array;
  private readonly workers: PoolWorker[] = [];
  private errorText = "";
  private closed = false;

  private constructor(
    readonly threads: number,
    memory: WebAssembly.Memory,
    private readonly ctrl: number,
  ) {
    this.ctl = new Int32Array(memory.buffer, ctrl, 32);
    this.args = new Float64Array(memory.buffer, ctrl + CTRL.ARGS_BYTE, CTRL.MAX_ARGS);
  }

  /** Start `threads - 1` workers, each instantiating `module` over `memory`; resolves when all are ready. */
  static async start(
    threads: number,
    module: WebAssembly.Module,
    memory: WebAssembly.Memory,
    ctrl: number,
    names: string[],
    spawn: WorkerFactory,
  ): Promise<ThreadPool> {
    const pool = new ThreadPool(threads, memory, ctrl);
    pool.ctl.fill(0);
    const ready: Promise<void>[] = [];
    for (let tid = 1; tid < threads; tid++) {
      const w = spawn(WORKER_SOURCE);
      pool.workers.push(w);
      ready.push(
        new Promise<void>((resolve, reject) => {
          w.onMessage((m) => {
            if (m.type === "ready") resolve();
            else if (m.type === "error") {
              pool.errorText ||= `worker ${m.tid}: ${m.message}`;
              reject(new Error(`internal: cpu worker ${m.tid} failed: ${m.message}`));
            }
          });
          w.onError((e) => reject(new Error(`internal: cpu worker ${tid} failed to start: ${e.message}`)));
        }),
      );
      w.postMessage({ module, memory, ctrl, tid, names });
    }
    try {
      await Promise.all(ready);
    } catch (e) {
      await pool.close();
      throw e;
    }
    for (const w of pool.workers) w.release();
    return pool;
  }

  /** Byte address of the work-stealing counter (kernels that claim items take it as an argument). */
  get counter(): number {
    return this.ctrl + CTRL.COUNTER * 4;
  }

  /**
   * Run kernel `fn` (index `index` in the workers' name list) on `nth` threads: the main thread
   * is tid 0. With nth = 1 no worker is involved.
   */
  run(fn: WasmFn, index: number, nth: number, args: number[]): void {
    const ctl = this.ctl;
    ctl[CTRL.COUNTER] = 0;
    if (nth <= 1 || this.workers.length === 0) {
      callWith(fn, 0, 1, args);
      return;
    }
    if (this.closed) throw new Error("internal: cpu backend used after dispose()");
    if (args.length > CTRL.MAX_ARGS) throw new Error(`internal: ${args.length} kernel arguments (max ${CTRL.MAX_ARGS})`);
    for (let i = 0; i < args.length; i++) this.args[i] = args[i];
    ctl[CTRL.FN] = index;
    ctl[CTRL.NTH] = nth;
    ctl[CTRL.ERROR] = 0;
    Atomics.store(ctl, CTRL.PENDING, this.workers.length);
    Atomics.add(ctl, CTRL.SEQ, 1);
    Atomics.notify(ctl, CTRL.SEQ);
    let mainError: unknown = null;
    try {
      callWith(fn, 0, nth, args);
    } catch (e) {
      mainError = e;
    }
    this.join();
    if (mainError) throw mainError;
    if (ctl[CTRL.ERROR] !== 0) throw new Error(`internal: cpu worker ${ctl[CTRL.ERROR] - 1} failed in a kernel ${this.errorText}`);
  }

  private join(): void {
    const ctl = this.ctl;
    let pending = Atomics.load(ctl, CTRL.PENDING);
    for (let i = 0; pending !== 0 && i < MAIN_SPIN; i++) pending = Atomics.load(ctl, CTRL.PENDING);
    while (pending !== 0) {
      Atomics.wait(ctl, CTRL.PENDING, pending);
      pending = Atomics.load(ctl, CTRL.PENDING);
    }
  }

  /** Stop the workers (they leave their loop, then are terminated). Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.ctl[CTRL.FN] = CTRL.EXIT;
    Atomics.add(this.ctl, CTRL.SEQ, 1);
    Atomics.notify(this.ctl, CTRL.SEQ);
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}

/** fn(tid, nth, ...args) without building a new array for the common short argument lists. */
function callWith(fn: WasmFn, tid: number, nth: number, a: number[]): void {
  fn(tid, nth, ...a);
}
