/**
 * Shared helpers of the WebAssembly kernels: work partitioning across threads and small
 * vector utilities. Every exported kernel takes (tid, nth) first: thread tid of nth computes
 * its own share, so the same call runs on the main thread and on every worker.
 */

/** First item of thread tid's share of n items, shares aligned to `align` items. */
@inline
export function splitLo(n: i32, tid: i32, nth: i32, align: i32): i32 {
  const units = (n + align - 1) / align;
  return min(n, <i32>((<i64>units * tid) / nth) * align);
}

/** One past the last item of thread tid's share (splitLo of the next thread). */
@inline
export function splitHi(n: i32, tid: i32, nth: i32, align: i32): i32 {
  return splitLo(n, tid + 1, nth, align);
}

/**
 * c + a b, lane by lane: one fused multiply-add in the relaxed build (RELAXED, a compile-time
 * constant from scripts/build-wasm.mjs; f32x4.relaxed_madd rounds once where the CPU fuses, twice
 * where it does not), a multiply and an add in the simd128 build. Each chain of them waits on
 * the latency of the one before: callers keep several accumulators.
 */
@inline
export function madd(a: v128, b: v128, c: v128): v128 {
  if (RELAXED) return f32x4.relaxed_madd(a, b, c);
  return f32x4.add(c, f32x4.mul(a, b));
}

/** Sum of the four lanes. */
@inline
export function hsum(v: v128): f32 {
  const s = f32x4.add(v, i32x4.shuffle(v, v, 2, 3, 0, 1));
  return f32x4.extract_lane(f32x4.add(s, i32x4.shuffle(s, s, 1, 0, 3, 2)), 0);
}

/** Largest of the four lanes. */
@inline
export function hmax(v: v128): f32 {
  const s = f32x4.max(v, i32x4.shuffle(v, v, 2, 3, 0, 1));
  return f32x4.extract_lane(f32x4.max(s, i32x4.shuffle(s, s, 1, 0, 3, 2)), 0);
}

/**
 * Work-stealing counter for unevenly sized items (causal attention blocks): each call claims
 * the next item index. The counter lives in the job's control block and starts at 0.
 */
@inline
export function claim(counter: usize): i32 {
  return atomic.add<i32>(counter, 1);
}

/** Pointer to element i of an f32 buffer. */
@inline
export function at32(base: usize, i: i32): usize {
  return base + (<usize>i << 2);
}
