/** The page's handle on the engine worker: one promise per request, events to a callback. */
import type { EngineEvent, Request, WorkerMessage } from "./protocol.js";

interface Pending {
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
  onEvent?: (e: EngineEvent) => void;
}

/** An error the engine reported (one line, meant for the page as it is). */
export class EngineError extends Error {}

export class EngineClient {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();

  constructor(private readonly worker: Worker) {
    worker.onmessage = (e: MessageEvent<WorkerMessage>) => this.receive(e.data);
    worker.onerror = (e) => {
      const err = new EngineError(`the engine worker failed: ${e.message || "it could not start"}`);
      for (const p of this.pending.values()) p.reject(err);
      this.pending.clear();
    };
  }

  request<T>(req: Request, onEvent?: (e: EngineEvent) => void, transfer: Transferable[] = []): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject, onEvent });
      this.worker.postMessage({ id, req }, transfer);
    });
  }

  /** Ask the running job to end after its current token or step. */
  stop(): void {
    this.worker.postMessage({ id: 0, req: { kind: "stop" } });
  }

  private receive(m: WorkerMessage): void {
    const p = this.pending.get(m.id);
    if (!p) return;
    if (m.type === "event") p.onEvent?.(m.event);
    else {
      this.pending.delete(m.id);
      if (m.type === "done") p.resolve(m.result);
      else p.reject(new EngineError(m.message));
    }
  }
}
