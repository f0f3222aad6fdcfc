/**
 * The cpu backend's heap: one shared WebAssembly.Memory (a SharedArrayBuffer that every worker
 * maps) and a first-class allocator over it, written in TypeScript on the host side.
 *
 * Blocks are 64-byte aligned (a cache line, and every f32x4 load is aligned). A freed block of
 * up to QUICK_BYTES goes to an exact-size list as it is (decoding and training steps free and
 * allocate the same sizes over and over: a push and a pop, where merging and splitting cost
 * several map updates each, measured ~0.7 ms a token on a 24-layer model). Larger blocks, and
 * the small ones whenever they are coalesced, are indexed by start and by end, so they merge
 * with free neighbours, and a block at the top of the heap gives its space back to the bump
 * pointer. Allocation takes an exactly sized free block when there is one, else the smallest
 * merged block that fits (split), else bumps the top within the memory; only before growing the
 * memory are the small blocks coalesced and searched again. wasm32 addresses 4 GiB at most; a
 * request past that is a SeqlabError.
 *
 * Tensors hold typed-array views into the memory. Shared memory never detaches on grow, so views
 * made before a grow stay valid (they just do not see the new space, which they do not need).
 */
import { SeqlabError } from "../../util/errors.js";

export const PAGE = 65536;
export const MAX_PAGES = 65536; // 4 GiB
export const ALIGN = 64;
/** Bytes past the top of the heap kept mapped, so a kernel's 16-byte vector at a tensor's end stays inside memory. */
const SLACK = 64;
/** Largest block kept in the exact-size lists without merging (see the file comment). */
const QUICK_BYTES = 1 << 20;

const mib = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;

export interface HeapStats {
  /** bytes of the WebAssembly memory */
  memoryBytes: number;
  /** bytes in live blocks (rounded up to the alignment) */
  liveBytes: number;
  /** bytes in free blocks below the top */
  freeBytes: number;
  freeBlocks: number;
  /** end of the highest block ever handed out (the bump pointer) */
  top: number;
}

export class WasmHeap {
  readonly memory: WebAssembly.Memory;
  private readonly base: number;
  private top: number;
  private live = 0;
  /**
   * Free blocks, keyed in units of ALIGN (so keys stay small integers past 1 GiB of addresses):
   * start -> size, end -> start, and size -> starts (exact-fit index).
   */
  private readonly freeAt = new Map<number, number>();
  private readonly freeEnd = new Map<number, number>();
  private readonly bySize = new Map<number, number[]>();
  /** units of ALIGN in free blocks */
  private freeTotal = 0;
  /** freed small blocks, not merged: size (units) -> starts (units) */
  private readonly quick = new Map<number, number[]>();
  /** units of ALIGN in the quick lists */
  private quickTotal = 0;
  /** every SharedArrayBuffer the memory has exposed (one per grow): what `owns` accepts */
  private readonly buffers = new WeakSet<ArrayBufferLike>();
  /** the buffer object `owns` recorded last (one of `buffers`) */
  private lastBuffer: ArrayBufferLike | null = null;

  /** `base`: first byte the allocator may use (past the module's static data). */
  constructor(base: number, initialBytes = 16 * 2 ** 20) {
    this.base = Math.ceil(base / ALIGN) * ALIGN;
    this.top = this.base;
    const pages = Math.max(1, Math.ceil(Math.max(initialBytes, this.base + SLACK) / PAGE));
    this.memory = new WebAssembly.Memory({ initial: pages, maximum: MAX_PAGES, shared: true });
    this.buffers.add(this.memory.buffer);
  }

  /** Rounded block size for a request. */
  static blockSize(bytes: number): number {
    return Math.max(ALIGN, Math.ceil(bytes / ALIGN) * ALIGN);
  }

  /** Byte offset of a new block of at least `bytes`; `what` names it in the out-of-memory error. */
  alloc(bytes: number, what = "a buffer"): number {
    const size = WasmHeap.blockSize(bytes);
    const units = size / ALIGN;
    let u = this.quick.get(units)?.pop() ?? null;
    if (u !== null) this.quickTotal -= units;
    else u = this.takeFree(units);
    if (u === null && this.top + size + SLACK > this.memory.buffer.byteLength && this.quickTotal > 0) {
      this.coalesce();
      u = this.takeFree(units);
    }
    const p = u === null ? this.bump(size, what) : u * ALIGN;
    this.live += size;
    return p;
  }

  free(offset: number, bytes: number): void {
    const size = WasmHeap.blockSize(bytes);
    const start = offset / ALIGN;
    const units = size / ALIGN;
    this.live -= size;
    if (size > QUICK_BYTES) return this.release(start, units);
    const list = this.quick.get(units);
    if (list) list.push(start);
    else this.quick.set(units, [start]);
    this.quickTotal += units;
  }

  /** Merge every block waiting in the quick lists into the free index (and the top). */
  coalesce(): void {
    for (const [size, starts] of this.quick) for (const start of starts) this.release(start, size);
    this.quick.clear();
    this.quickTotal = 0;
  }

  /** Block [start, start + size) (units) rejoins the free index, merged with its free neighbours. */
  private release(start: number, size: number): void {
    // merge with the free block that ends here and the one that starts at our end
    const before = this.freeEnd.get(start);
    if (before !== undefined) {
      const bsize = this.freeAt.get(before)!;
      this.unlinkFree(before, bsize);
      start = before;
      size += bsize;
    }
    const after = this.freeAt.get(start + size);
    if (after !== undefined) {
      this.unlinkFree(start + size, after);
      size += after;
    }
    if ((start + size) * ALIGN === this.top) this.top = start * ALIGN;
    else this.linkFree(start, size);
  }

  /** A typed-array view of `size` elements at `offset`. */
  view<T extends Float32Array | Int32Array | Uint16Array>(ctor: { new (b: ArrayBufferLike, o: number, n: number): T }, offset: number, size: number): T {
    return new ctor(this.memory.buffer, offset, size);
  }

  /** Whether a typed array is a view into this heap's memory. */
  owns(a: ArrayBufferView): boolean {
    // V8 hands out a new buffer object for a shared memory whenever any shared memory of the
    // process grows (another backend's, too), so the current one is recorded when first seen.
    // The last one recorded answers first: reading memory.buffer and the set cost ~0.1 us, and
    // every kernel call asks this of each of its operands.
    const buffer = a.buffer;
    if (buffer === this.lastBuffer) return true;
    if (buffer === this.memory.buffer) {
      this.buffers.add(buffer);
      this.lastBuffer = buffer;
      return true;
    }
    return this.buffers.has(buffer);
  }

  stats(): HeapStats {
    return { memoryBytes: this.memory.buffer.byteLength, liveBytes: this.live, freeBytes: (this.freeTotal + this.quickTotal) * ALIGN, freeBlocks: this.freeAt.size + this.quickBlocks(), top: this.top };
  }

  private quickBlocks(): number {
    let n = 0;
    for (const starts of this.quick.values()) n += starts.length;
    return n;
  }

  /** A free block of exactly `size` units (or split from the smallest larger one): its start unit. */
  private takeFree(size: number): number | null {
    const exact = this.bySize.get(size);
    if (exact && exact.length > 0) {
      const p = exact[exact.length - 1];
      this.unlinkFree(p, size);
      return p;
    }
    // best fit among larger blocks
    let best = -1;
    let bestSize = Infinity;
    for (const [p, s] of this.freeAt) {
      if (s >= size && s < bestSize) {
        best = p;
        bestSize = s;
      }
    }
    if (best < 0) return null;
    this.unlinkFree(best, bestSize);
    if (bestSize > size) this.linkFree(best + size, bestSize - size);
    return best;
  }

  private bump(size: number, what: string): number {
    const p = this.top;
    const end = p + size;
    const need = end + SLACK;
    const have = this.memory.buffer.byteLength;
    if (need > have) {
      if (need > MAX_PAGES * PAGE) {
        throw new SeqlabError(
          `cpu backend: out of memory allocating ${what} of ${mib(size)}: WebAssembly (wasm32) memory is limited to 4 GiB ` +
            `(${mib(this.live)} live, ${mib((this.freeTotal + this.quickTotal) * ALIGN)} free but fragmented)`,
        );
      }
      const havePages = have / PAGE;
      const needPages = Math.ceil(need / PAGE);
      // grow by at least a quarter of the current size, so a growing workload grows rarely
      const pages = Math.min(MAX_PAGES, Math.max(needPages, havePages + Math.ceil(havePages / 4)));
      this.memory.grow(pages - havePages);
      this.buffers.add(this.memory.buffer);
    }
    this.top = end;
    return p;
  }

  /** Block [p, p + size) (units of ALIGN) becomes free. */
  private linkFree(p: number, size: number): void {
    this.freeAt.set(p, size);
    this.freeEnd.set(p + size, p);
    const list = this.bySize.get(size);
    if (list) list.push(p);
    else this.bySize.set(size, [p]);
    this.freeTotal += size;
  }

  private unlinkFree(p: number, size: number): void {
    this.freeAt.delete(p);
    this.freeEnd.delete(p + size);
    const list = this.bySize.get(size)!;
    const i = list.lastIndexOf(p);
    list[i] = list[list.length - 1];
    list.pop();
    if (list.length === 0) this.bySize.delete(size);
    this.freeTotal -= size;
  }
}
