/**
 * Tensor: a shape, a dtype and a reference-counted handle to storage owned by a device
 * (a backend). No math lives here; ops/ does the math through the device's kernels.
 *
 * Storage is freed deterministically, not by the garbage collector: the WebAssembly and WebGPU
 * backends keep tensors in their own heaps, which the JS GC cannot see. A tensor is freed by
 * dispose(), or when the tidy() scope that created it ends (see scope.ts). Reshaped views share
 * the storage and hold a reference to it.
 */
import type { DType } from "./dtype.js";
import { DTYPE_BYTES } from "./dtype.js";
import { type Shape, numel, fmtShape, resolveShape } from "./shape.js";
import { track } from "./scope.js";

/** What a tensor needs from the backend that owns its storage. */
export interface Device {
  readonly name: string;
  release(handle: unknown, bytes: number): void;
}

export class Storage {
  refs = 0;
  constructor(
    readonly device: Device,
    readonly handle: unknown,
    readonly bytes: number,
  ) {}
}

/** The autograd node that produced a tensor (defined in autograd/). */
export interface GradNodeLike {
  readonly op: string;
}

export class Tensor {
  readonly shape: Shape;
  readonly size: number;
  requiresGrad = false;
  grad: Tensor | null = null;
  node: GradNodeLike | null = null;
  /** Parameter name when the tensor is a module parameter (used in error messages and NaN reports). */
  name: string | undefined;
  private disposed = false;

  constructor(
    readonly storage: Storage,
    shape: Shape,
    readonly dtype: DType,
  ) {
    this.shape = [...shape];
    this.size = numel(shape);
    storage.refs++;
    track(this);
  }

  get device(): Device {
    return this.storage.device;
  }

  get handle(): unknown {
    if (this.disposed) throw new Error(`internal: use of a disposed tensor ${this.describe()}`);
    return this.storage.handle;
  }

  get isDisposed(): boolean {
    return this.disposed;
  }

  get bytes(): number {
    return this.size * DTYPE_BYTES[this.dtype];
  }

  get rank(): number {
    return this.shape.length;
  }

  dim(i: number): number {
    return this.shape[i < 0 ? this.shape.length + i : i];
  }

  /** A view with another shape over the same storage (no copy; -1 infers one dim). */
  reshape(shape: Shape): Tensor {
    const view = new Tensor(this.storage, resolveShape(shape, this.size), this.dtype);
    viewHook?.(view, this);
    return view;
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.storage.refs--;
    if (this.storage.refs === 0) this.storage.device.release(this.storage.handle, this.storage.bytes);
  }

  describe(): string {
    return `${this.name ?? "tensor"} ${this.dtype}${fmtShape(this.shape)} on ${this.device.name}`;
  }
}

/** autograd registers how a reshape is differentiated (views are made here, below autograd). */
let viewHook: ((view: Tensor, base: Tensor) => void) | null = null;
export function setViewHook(hook: (view: Tensor, base: Tensor) => void): void {
  viewHook = hook;
}
