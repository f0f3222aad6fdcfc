/**
 * A pool of `threads - 1` workers plus the calling thread, over one shared memory. A kernel
 * call writes its arguments into the control block, opens `nth` shares of work, bumps the job
 * sequence number and notifies. Every running thread, the main thread included, claims shares
 * until none is left (control.ts); the main thread then waits only for shares that were claimed
 * and are still running. A worker that the OS has not scheduled yet (a busy or shared machine)
 * therefore never stalls a call: it wakes to find the job claimed and goes back to sleep, and
 * the call took as long as one thread needed. Kernels stay synchronous. Workers spin for a short
 * while before blocking in Atomics.wait, because back-to-back kernels are the common case and a
 * futex wake costs tens of microseconds.
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
    this.ctl = new Int32Array(memory.buffer, ctrl, CTRL.INTS);
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
   * Run kernel `fn` (index `index` in the workers' name list) as `nth` shares: share s computes
   * as thread s of nth. With nth = 1 no worker is involved.
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
    if (nth >= 1 << CTRL.SHARE_BITS) throw new Error(`internal: ${nth} shares`);
    for (let i = 0; i < args.length; i++) this.args[i] = args[i];
    ctl[CTRL.FN] = index;
    ctl[CTRL.ERROR] = 0;
    ctl[CTRL.DONE] = 0;
    Atomics.store(ctl, CTRL.CLAIM, nth << CTRL.SHARE_BITS); // opens the job: everything above is visible to a claimer
    Atomics.add(ctl, CTRL.SEQ, 1);
    Atomics.notify(ctl, CTRL.SEQ);
    let mainError: unknown = null;
    for (let share = claimShare(ctl); share >= 0; share = claimShare(ctl)) {
      try {
        callWith(fn, share, nth, args);
      } catch (e) {
        mainError ??= e;
      }
      Atomics.add(ctl, CTRL.DONE, 1);
    }
    this.join(nth);
    if (mainError) throw mainError;
    if (ctl[CTRL.ERROR] !== 0) throw new Error(`internal: a cpu worker failed in share ${ctl[CTRL.ERROR] - 1} of a kernel ${this.errorText}`);
  }

  /** Wait for the shares other threads claimed. */
  private join(nth: number): void {
    const ctl = this.ctl;
    let done = Atomics.load(ctl, CTRL.DONE);
    for (let i = 0; done !== nth && i < MAIN_SPIN; i++) done = Atomics.load(ctl, CTRL.DONE);
    while (done !== nth) {
      Atomics.wait(ctl, CTRL.DONE, done);
      done = Atomics.load(ctl, CTRL.DONE);
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

/** The next unclaimed share of the open job, or -1 (the same protocol as the workers'). */
function claimShare(ctl: Int32Array): number {
  for (;;) {
    const w = Atomics.load(ctl, CTRL.CLAIM);
    const next = w & ((1 << CTRL.SHARE_BITS) - 1);
    if (next >= w >>> CTRL.SHARE_BITS) return -1;
    if (Atomics.compareExchange(ctl, CTRL.CLAIM, w, w + 1) === w) return next;
  }
}

/** fn(tid, nth, ...args) without building a new array for the common short argument lists. */
function callWith(fn: WasmFn, tid: number, nth: number, a: number[]): void {
  fn(tid, nth, ...a);
}
