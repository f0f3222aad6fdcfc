/**
 * A backend: storage allocation, host transfers, memory accounting and a kernel table.
 * Which backend runs is always explicit: chosen by name, logged once, printed in every
 * benchmark line; there is no silent fallback from a fast backend to a slower one.
 */
import type { Device } from "../tensor/tensor.js";
import type { DType, HostArray } from "../tensor/dtype.js";
import type { Kernels } from "./kernels.js";

export interface MemoryStats {
  /** bytes held by live tensors now */
  bytesInUse: number;
  /** high-water mark since the last resetPeak() */
  peakBytes: number;
  /** live allocations */
  allocations: number;
}

export interface Backend<S = unknown> extends Device {
  readonly name: string;
  readonly kernels: Kernels<S>;
  /**
   * Storage of the KV caches this backend allocates for decoding (default "f32"). "f16" halves
   * the bytes that long-context decoding reads (llama.cpp's default); attention still computes
   * in f32. A backend offers it only where its attentionForward reads f16 keys and values.
   */
  readonly kvCache?: "f32" | "f16";
  /** One line for logs and reports: backend, threads or adapter, precision. */
  describe(): string;
  /** Uninitialised storage for `size` elements (callers must write before reading). */
  allocate(dtype: DType, size: number): S;
  release(handle: S, bytes: number): void;
  /** Copy host data into new storage. */
  upload(dtype: DType, data: HostArray): S;
  /** Overwrite existing storage with host data (same dtype and length). */
  write(handle: S, dtype: DType, data: HostArray): void;
  /** Copy `size` elements into a fresh host array (f16/bf16 come back as Uint16Array). */
  read(handle: S, dtype: DType, size: number): Promise<HostArray>;
  /** Synchronous read, host backends only. */
  readSync?(handle: S, dtype: DType, size: number): HostArray;
  /** Resolves when all queued work has finished (a no-op on synchronous backends). */
  sync(): Promise<void>;
  memory(): MemoryStats;
  resetPeak(): void;
  /**
   * Give cached free storage back (webgpu: its buffer pool, and the pool's memory of the peak):
   * between workloads that share nothing, such as the showdown's architectures and sections.
   */
  releaseCached?(): void;
}

/** Bookkeeping shared by backends: exact byte counts of live storage and the peak. */
export class MemoryMeter {
  bytesInUse = 0;
  peakBytes = 0;
  allocations = 0;

  add(bytes: number): void {
    this.bytesInUse += bytes;
    this.allocations++;
    if (this.bytesInUse > this.peakBytes) this.peakBytes = this.bytesInUse;
  }

  remove(bytes: number): void {
    this.bytesInUse -= bytes;
    this.allocations--;
  }

  stats(): MemoryStats {
    return { bytesInUse: this.bytesInUse, peakBytes: this.peakBytes, allocations: this.allocations };
  }

  resetPeak(): void {
    this.peakBytes = this.bytesInUse;
  }
}
