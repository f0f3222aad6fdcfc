/**
 * Web Workers for the cpu backend's thread pool: each starts from the pool's worker source
 * (a Blob URL: the bundle needs no extra file) and is wrapped as the PoolWorker the pool
 * drives. The engine itself runs in a worker, since the pool's caller blocks in Atomics.wait,
 * which a page's main thread may not.
 */
import type { PoolWorker, WorkerFactory } from "../../../src/backend/cpu/pool.js";

export const webWorkers: WorkerFactory = (source: string): PoolWorker => {
  const url = URL.createObjectURL(new Blob([source], { type: "text/javascript" }));
  const w = new Worker(url, { name: "seqlab-cpu" });
  return {
    postMessage: (m) => w.postMessage(m),
    onMessage: (fn) => w.addEventListener("message", (e) => fn(e.data)),
    onError: (fn) => w.addEventListener("error", (e) => fn(new Error(e.message || "a cpu worker failed to start"))),
    release: () => URL.revokeObjectURL(url),
    terminate: () => {
      URL.revokeObjectURL(url);
      w.terminate();
    },
  };
};
