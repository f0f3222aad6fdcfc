/**
 * Worker threads for Node: eval workers from the pool's source text. Once running, they are
 * unref'd (release) so that they never keep a process alive; until then they must stay ref'd,
 * or a process awaiting their start would find its event loop empty and exit.
 */
import { Worker } from "node:worker_threads";
import type { PoolWorker, WorkerFactory } from "./pool.js";

export const nodeWorkers: WorkerFactory = (source: string): PoolWorker => {
  const w = new Worker(source, { eval: true });
  return {
    postMessage: (m) => w.postMessage(m),
    onMessage: (fn) => w.on("message", fn),
    onError: (fn) => w.on("error", fn),
    release: () => w.unref(),
    terminate: () => w.terminate(),
  };
};
