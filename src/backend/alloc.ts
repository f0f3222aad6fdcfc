/** Creating tensors on a backend and reading them back: the seam between tensor/ and backend/. */
import { Storage, Tensor } from "../tensor/tensor.js";
import type { DType, HostArray } from "../tensor/dtype.js";
import { DTYPE_BYTES } from "../tensor/dtype.js";
import { type Shape, numel } from "../tensor/shape.js";
import type { Backend } from "./backend.js";
import type { Kernels } from "./kernels.js";

export function backendOf(t: Tensor): Backend {
  return t.device as Backend;
}

/** Kernels typed for generic (backend-independent) code. */
export function kernelsOf(t: Tensor): Kernels<unknown> {
  return backendOf(t).kernels as Kernels<unknown>;
}

/** Uninitialised tensor. */
export function empty(be: Backend, shape: Shape, dtype: DType = "f32"): Tensor {
  const size = numel(shape);
  const handle = be.allocate(dtype, size);
  return new Tensor(new Storage(be, handle, size * DTYPE_BYTES[dtype]), shape, dtype);
}

export function zeros(be: Backend, shape: Shape, dtype: DType = "f32"): Tensor {
  const t = empty(be, shape, dtype);
  (be.kernels as Kernels<unknown>).fill(t.handle, 0, t.size);
  return t;
}

export function full(be: Backend, shape: Shape, value: number): Tensor {
  const t = empty(be, shape, "f32");
  (be.kernels as Kernels<unknown>).fill(t.handle, value, t.size);
  return t;
}

export function fromArray(be: Backend, data: HostArray | number[], shape: Shape, dtype: DType = "f32"): Tensor {
  const arr = Array.isArray(data) ? (dtype === "i32" ? Int32Array.from(data) : Float32Array.from(data)) : data;
  if (arr.length !== numel(shape)) throw new Error(`internal: ${arr.length} values for shape (${shape.join(", ")})`);
  const handle = be.upload(dtype, arr);
  return new Tensor(new Storage(be, handle, arr.length * DTYPE_BYTES[dtype]), shape, dtype);
}

export async function toArray(t: Tensor): Promise<HostArray> {
  return backendOf(t).read(t.handle, t.dtype, t.size);
}

/** Synchronous read; host backends only. */
export function toArraySync(t: Tensor): HostArray {
  const be = backendOf(t);
  if (!be.readSync) throw new Error(`internal: backend ${be.name} has no synchronous read; use toArray`);
  return be.readSync(t.handle, t.dtype, t.size);
}

export async function toFloat32(t: Tensor): Promise<Float32Array> {
  const a = await toArray(t);
  return a instanceof Float32Array ? a : Float32Array.from(a);
}

export async function scalar(t: Tensor): Promise<number> {
  return (await toArray(t))[0];
}
