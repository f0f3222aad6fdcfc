/**
 * The reference backend: plain TypeScript loops over typed arrays, float32 storage (or float64
 * for finite-difference gradient checks), accumulation in JS doubles. It is the oracle for
 * every other backend, not the engine users run.
 */
import type { Backend } from "../backend.js";
import { MemoryMeter } from "../backend.js";
import type { Kernels } from "../kernels.js";
import type { DType, HostArray } from "../../tensor/dtype.js";
import { DTYPE_BYTES } from "../../tensor/dtype.js";
import * as ew from "./elementwise.js";
import { matmul } from "./matmul.js";
import * as norm from "./norm.js";
import * as attn from "./attention.js";
import * as loss from "./loss.js";
import * as scan from "./scan.js";
import * as rwkv from "./rwkv.js";
import * as moe from "./moe.js";
import * as train from "./train.js";
import * as deltanet from "./deltanet.js";

export const refKernels: Kernels<HostArray> = {
  ...ew,
  matmul,
  ...norm,
  ...attn,
  ...loss,
  ...scan,
  ...rwkv,
  ...moe,
  ...train,
  ...deltanet,
};

export interface RefOptions {
  /** storage precision of f32 tensors: "f64" for gradient checks */
  precision?: "f32" | "f64";
  /** storage of the KV caches decoding allocates (Backend.kvCache) */
  kvCache?: "f32" | "f16";
}

export class RefBackend implements Backend<HostArray> {
  readonly name = "ref";
  readonly kernels: Kernels<HostArray>;
  private meter = new MemoryMeter();
  readonly precision: "f32" | "f64";
  readonly kvCache: "f32" | "f16";

  constructor(opts: RefOptions = {}, kernels: Kernels<HostArray> = refKernels) {
    this.precision = opts.precision ?? "f32";
    this.kvCache = opts.kvCache ?? "f32";
    this.kernels = kernels;
  }

  describe(): string {
    return `ref (TypeScript loops, ${this.precision} storage${this.kvCache === "f16" ? ", f16 KV cache" : ""})`;
  }

  allocate(dtype: DType, size: number): HostArray {
    const a = this.make(dtype, size);
    this.meter.add(a.byteLength);
    return a;
  }

  private make(dtype: DType, size: number): HostArray {
    switch (dtype) {
      case "f32":
        return this.precision === "f64" ? new Float64Array(size) : new Float32Array(size);
      case "f16":
      case "bf16":
        return new Uint16Array(size);
      case "i32":
        return new Int32Array(size);
    }
  }

  release(handle: HostArray): void {
    this.meter.remove(handle.byteLength);
  }

  upload(dtype: DType, data: HostArray): HostArray {
    const a = this.allocate(dtype, data.length);
    a.set(data);
    return a;
  }

  write(handle: HostArray, _dtype: DType, data: HostArray): void {
    handle.set(data);
  }

  readSync(handle: HostArray, dtype: DType, size: number): HostArray {
    const a = this.make(dtype, size);
    a.set(handle.subarray(0, size));
    return a;
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

  static bytesOf(dtype: DType, size: number): number {
    return DTYPE_BYTES[dtype] * size;
  }
}
