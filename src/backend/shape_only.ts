/**
 * A backend that holds shapes and byte counts but no data (PyTorch's "meta" device): building a
 * model and allocating its inference state here costs no memory, so the memory a configuration
 * needs (weights, KV cache, recurrent state) can be read from shapes even when the model would not
 * fit. Filling (zeros) and writing are accepted and do nothing; any other kernel, and reading
 * back, is an internal error: nothing may compute on it.
 */
import type { Backend } from "./backend.js";
import { MemoryMeter } from "./backend.js";
import type { Kernels } from "./kernels.js";
import type { DType, HostArray } from "../tensor/dtype.js";
import { DTYPE_BYTES } from "../tensor/dtype.js";

/** A storage handle that only knows its size. */
export interface ShapeOnlyHandle {
  readonly bytes: number;
}

const kernels = new Proxy({} as Kernels<ShapeOnlyHandle>, {
  get(_target, name) {
    if (name === "fill") return () => {};
    return () => {
      throw new Error(`internal: the shape-only backend computes nothing (kernel ${String(name)})`);
    };
  },
});

export class ShapeOnlyBackend implements Backend<ShapeOnlyHandle> {
  readonly name = "shape-only";
  readonly kernels = kernels;
  private meter = new MemoryMeter();

  describe(): string {
    return "shape-only (sizes, no data)";
  }

  allocate(dtype: DType, size: number): ShapeOnlyHandle {
    const h = { bytes: DTYPE_BYTES[dtype] * size };
    this.meter.add(h.bytes);
    return h;
  }

  release(handle: ShapeOnlyHandle): void {
    this.meter.remove(handle.bytes);
  }

  upload(dtype: DType, data: HostArray): ShapeOnlyHandle {
    return this.allocate(dtype, data.length);
  }

  write(): void {}

  read(): Promise<HostArray> {
    throw new Error("internal: the shape-only backend holds no data to read");
  }

  async sync(): Promise<void> {}

  memory() {
    return this.meter.stats();
  }

  resetPeak(): void {
    this.meter.resetPeak();
  }
}
