/**
 * GPU storage: the handle kernels receive (a GPUBuffer with the dtype and element count it was
 * allocated for) and a pool that reuses buffers by size class.
 *
 * Reuse is safe without fences because every use of a buffer is recorded, in order, on the one
 * queue: a buffer released while enqueued work still reads it is only rewritten by work enqueued
 * later. Host writes (queue.writeBuffer) bypass the encoder, so the context flushes recorded
 * work before every host write (see context.ts).
 */
import type { DType } from "../../tensor/dtype.js";
import { DTYPE_BYTES } from "../../tensor/dtype.js";
import { BufferUsage } from "./device.js";

/** The storage handle of the webgpu backend. */
export class GpuTensorBuffer {
  constructor(
    readonly buffer: GPUBuffer,
    readonly dtype: DType,
    /** elements */
    readonly size: number,
  ) {}

  /** bytes the tensor holds (the buffer itself may be larger: its size class) */
  get bytes(): number {
    return this.size * DTYPE_BYTES[this.dtype];
  }
}

/**
 * Size classes: multiples of 256 bytes up to 4 KiB, then 8 classes per power of two (at most
 * 12.5% slack). Every class is a multiple of 16, so any buffer can be bound as array<vec4<f32>>.
 */
export function sizeClass(bytes: number): number {
  const b = Math.max(bytes, 16);
  if (b <= 4096) return Math.ceil(b / 256) * 256;
  const pow = 2 ** Math.floor(Math.log2(b));
  const step = pow / 8;
  return Math.ceil(b / step) * step;
}

/**
 * Requests from this size may take a larger free buffer. Smaller ones keep to their class: a
 * decoding step's many small buffers must come back the same every step for the bind-group
 * cache, which borrowing across classes would break.
 */
const LARGER_FROM = 4 * 2 ** 20;

/**
 * Free buffers are handed out lowest creation number first (not last-released first): a
 * sequence of acquires and releases that repeats, like a decoding step, then gets the very same
 * buffers every time, so the context's bind-group cache hits (with last-in-first-out reuse the
 * buffers of one step were a permutation of the previous step's).
 *
 * Live plus free bytes are kept within twice the most bytes ever live at once (or the live
 * bytes plus a floor, if more), so that a workload that once needed X finds its buffers again
 * next round even where they come in more size classes than are live at once. Over the bound,
 * the free buffers released longest ago go first, whatever their size class. A large request
 * whose class has no free buffer takes the smallest free one of up to twice its size before a
 * new one is made. (A fixed 1 GiB cap that destroyed the buffer just released instead left the
 * pool full of an earlier, shorter workload's classes: on an H200 every call of a 256k-token
 * forward of a small Mamba re-created its buffers, 80 of its 103 ms; with live + free bytes
 * bounded by the peak alone, a 1M-token Mamba-2 forward still re-created some every call.)
 */
export class BufferPool {
  /** per size class, free buffers sorted by decreasing creation number */
  private free = new Map<number, GPUBuffer[]>();
  /** every free buffer, least recently released first (Map keeps insertion order) */
  private released = new Map<GPUBuffer, true>();
  private order = new WeakMap<GPUBuffer, number>();
  /** buffers created so far */
  created = 0;
  /** bytes of GPU memory held by pooled (free) buffers */
  pooledBytes = 0;
  /** bytes of GPU memory held by buffers in use (size classes, not tensor bytes) */
  liveBytes = 0;
  /** the most bytes ever live at once */
  peakLiveBytes = 0;
  /** buffers to destroy once the work recorded so far has been submitted */
  private doomed: GPUBuffer[] = [];

  constructor(
    private device: GPUDevice,
    /** free bytes kept for reuse whatever the peak */
    private minPooledBytes: number,
  ) {}

  acquire(bytes: number): GPUBuffer {
    const cls = sizeClass(bytes);
    const reuse = this.takeFree(cls) ?? (cls >= LARGER_FROM ? this.takeFree(this.smallestFreeAbove(cls)) : undefined);
    const b = reuse ?? this.device.createBuffer({ size: cls, usage: BufferUsage.STORAGE | BufferUsage.COPY_SRC | BufferUsage.COPY_DST });
    if (!reuse) this.order.set(b, this.created++);
    this.liveBytes += b.size;
    this.peakLiveBytes = Math.max(this.peakLiveBytes, this.liveBytes);
    if (!reuse) this.evictOverBound();
    return b;
  }

  /** The oldest free buffer of class `cls`, taken out of the pool. */
  private takeFree(cls: number | undefined): GPUBuffer | undefined {
    const list = cls === undefined ? undefined : this.free.get(cls);
    if (!list || list.length === 0) return undefined;
    const b = list.pop()!;
    if (list.length === 0) this.free.delete(cls!);
    this.released.delete(b);
    this.pooledBytes -= b.size;
    return b;
  }

  /** The smallest class in (cls, 2 cls] with a free buffer. */
  private smallestFreeAbove(cls: number): number | undefined {
    let best: number | undefined;
    for (const c of this.free.keys()) if (c > cls && c <= 2 * cls && (best === undefined || c < best)) best = c;
    return best;
  }

  release(buf: GPUBuffer): void {
    this.liveBytes -= buf.size;
    const list = this.free.get(buf.size) ?? [];
    // insert keeping decreasing creation numbers (pop() takes the oldest buffer)
    const k = this.order.get(buf) ?? -1;
    let lo = 0;
    let hi = list.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if ((this.order.get(list[mid]) ?? -1) > k) lo = mid + 1;
      else hi = mid;
    }
    list.splice(lo, 0, buf);
    this.free.set(buf.size, list);
    this.released.set(buf, true);
    this.pooledBytes += buf.size;
    this.evictOverBound();
  }

  /**
   * Oldest free buffers out until live + free bytes are within twice the peak live bytes (or the
   * live ones plus the floor): room for a forward whose buffers, by class, add up to more than
   * its peak, and a bound on what the pool holds.
   */
  private evictOverBound(): void {
    const bound = Math.max(2 * this.peakLiveBytes, this.liveBytes + this.minPooledBytes);
    while (this.pooledBytes > 0 && this.liveBytes + this.pooledBytes > bound) this.evictOldest();
  }

  private evictOldest(): void {
    const [b] = this.released.keys();
    this.released.delete(b);
    const list = this.free.get(b.size)!;
    list.splice(list.indexOf(b), 1);
    if (list.length === 0) this.free.delete(b.size);
    this.pooledBytes -= b.size;
    this.doomed.push(b);
  }

  /** Called after a submit: destroy what could not be pooled (destroy waits for the GPU). */
  afterSubmit(): void {
    for (const b of this.doomed) b.destroy();
    this.doomed = [];
  }

  /** Give every pooled buffer back to the driver (after a submit), and start the peak afresh. */
  trim(): void {
    this.peakLiveBytes = this.liveBytes;
    for (const list of this.free.values()) this.doomed.push(...list);
    this.free.clear();
    this.released.clear();
    this.pooledBytes = 0;
  }
}
