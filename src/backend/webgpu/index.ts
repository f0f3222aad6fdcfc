/**
 * The webgpu backend: storage in GPU buffers from a size-class pool, WGSL kernels recorded into
 * a command encoder and submitted in batches (context.ts), asynchronous reads.
 *
 * Each kernel family is its own file of WGSL kernels (elementwise, matmul and matmul_half,
 * norm, attention, loss, scan, rwkv, deltanet, moe, train): every kernel of the table. A name
 * outside the table is still refused with a SeqlabError naming it: there is no silent fallback
 * to another backend.
 */
import type { Backend, MemoryStats } from "../backend.js";
import { MemoryMeter } from "../backend.js";
import type { KernelName, Kernels } from "../kernels.js";
import type { DType, HostArray } from "../../tensor/dtype.js";
import { DTYPE_BYTES } from "../../tensor/dtype.js";
import { SeqlabError, TensorTooLargeError } from "../../util/errors.js";
import { acquireDevice, type DeviceOptions } from "./device.js";
import { GpuContext } from "./context.js";
import { GpuTensorBuffer } from "./pool.js";
import { elementwiseKernels } from "./elementwise.js";
import { matmulKernels } from "./matmul.js";
import { normKernels } from "./norm.js";
import { MMA_MIN_ROWS, attentionKernels } from "./attention.js";
import { naiveAttentionKernels } from "./attention_naive.js";
import { lossKernels } from "./loss.js";
import { scanKernels } from "./scan.js";
import { trainKernels } from "./train.js";
import { rwkvKernels } from "./rwkv.js";
import { deltanetKernels } from "./deltanet.js";
import { moeKernels } from "./moe.js";

type S = GpuTensorBuffer;

/** Every kernel with a WGSL implementation. */
function implementedKernels(ctx: GpuContext): Kernels<S> {
  return {
    ...elementwiseKernels(ctx),
    ...matmulKernels(ctx),
    ...normKernels(ctx),
    ...attentionKernels(ctx),
    ...naiveAttentionKernels(ctx),
    ...lossKernels(ctx),
    ...scanKernels(ctx),
    ...trainKernels(ctx),
    ...rwkvKernels(ctx),
    ...deltanetKernels(ctx),
    ...moeKernels(ctx),
  };
}

/**
 * The kernel table: implemented kernels, and a refusal for any other name, so that a model
 * using a mixer whose WGSL kernels are not written yet fails at its first call, by name.
 */
function kernelTable(ctx: GpuContext): Kernels<S> {
  const impl = implementedKernels(ctx) as unknown as Record<string, unknown>;
  return new Proxy(impl, {
    get(target, prop) {
      if (typeof prop !== "string" || prop in target) return target[prop as string];
      if (prop === "then" || prop === "toJSON") return undefined;
      return () => {
        throw new SeqlabError(`webgpu: kernel ${prop} is not implemented`);
      };
    },
  }) as unknown as Kernels<S>;
}

export class WebGpuBackend implements Backend<S> {
  readonly name = "webgpu";
  readonly kernels: Kernels<S>;
  private meter = new MemoryMeter();

  private constructor(
    readonly ctx: GpuContext,
    private adapterName: string,
  ) {
    this.kernels = kernelTable(ctx);
  }

  static async create(opts: DeviceOptions = {}): Promise<WebGpuBackend> {
    const acquired = await acquireDevice(opts);
    return new WebGpuBackend(new GpuContext(acquired), acquired.adapterName);
  }

  /** Whether `name` has a WGSL implementation. */
  implements(name: KernelName): boolean {
    return name in (this.kernels as object);
  }

  describe(): string {
    const l = this.ctx.limits;
    const tc = this.ctx.acquired.tensorCores ? `, large matmuls and attention from ${MMA_MIN_ROWS} rows on f16 tensor cores (fp32 as 3 f16 products)` : "";
    return `webgpu (${this.adapterName}, f32, ${Math.round(l.maxComputeWorkgroupStorageSize / 1024)} KiB workgroup memory${tc})`;
  }

  allocate(dtype: DType, size: number): S {
    this.ctx.check();
    const bytes = size * DTYPE_BYTES[dtype];
    if (bytes > this.ctx.limits.maxStorageBufferBindingSize) {
      throw new TensorTooLargeError(`webgpu: a tensor of ${bytes} bytes exceeds this device's largest storage binding (${this.ctx.limits.maxStorageBufferBindingSize} bytes)`);
    }
    const h = new GpuTensorBuffer(this.ctx.pool.acquire(bytes), dtype, size);
    this.meter.add(h.bytes);
    return h;
  }

  release(handle: S): void {
    this.meter.remove(handle.bytes);
    this.ctx.pool.release(handle.buffer);
  }

  upload(dtype: DType, data: HostArray): S {
    const h = this.allocate(dtype, data.length);
    this.write(h, dtype, data);
    return h;
  }

  write(handle: S, dtype: DType, data: HostArray): void {
    this.ctx.write(handle.buffer, toDeviceArray(dtype, data));
  }

  async read(handle: S, dtype: DType, size: number): Promise<HostArray> {
    const bytes = await this.ctx.read(handle.buffer, size * DTYPE_BYTES[dtype]);
    switch (dtype) {
      case "f32":
        return new Float32Array(bytes);
      case "i32":
        return new Int32Array(bytes);
      case "f16":
      case "bf16":
        return new Uint16Array(bytes);
    }
  }

  async sync(): Promise<void> {
    await this.ctx.sync();
  }

  memory(): MemoryStats {
    return this.meter.stats();
  }

  releaseCached(): void {
    this.ctx.trim();
  }

  resetPeak(): void {
    this.meter.resetPeak();
  }

  /** GPU bytes held by the pool beyond live tensors (size-class slack and free buffers). */
  pooledBytes(): number {
    return this.ctx.pool.pooledBytes + this.ctx.pool.liveBytes - this.meter.bytesInUse;
  }

  destroy(): void {
    this.ctx.destroy();
  }
}

/** The typed array the device stores for `dtype` (f32 storage even for f64 host data). */
function toDeviceArray(dtype: DType, data: HostArray): ArrayBufferView {
  if (dtype === "f32" && !(data instanceof Float32Array)) return Float32Array.from(data);
  if (dtype === "i32" && !(data instanceof Int32Array)) return Int32Array.from(data);
  if ((dtype === "f16" || dtype === "bf16") && !(data instanceof Uint16Array)) return Uint16Array.from(data);
  return data;
}
