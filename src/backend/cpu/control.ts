/**
 * Layout of the control block through which the main thread hands a kernel call to the
 * workers (one block in the shared memory; worker_source.ts reads the same offsets).
 * Int32 slots first, then Float64 argument slots (f64 holds every i32, u32 pointer and f32 exactly).
 */
export const CTRL = {
  /** job sequence number: workers wait for it to change */
  SEQ: 0,
  /** workers that have not finished the current job */
  PENDING: 1,
  /** kernel index into the name list, or EXIT */
  FN: 2,
  /** threads taking part (tid < nth work, the others only acknowledge) */
  NTH: 3,
  /** 1 + tid of a worker whose kernel threw */
  ERROR: 4,
  /** work-stealing counter the kernels claim items from (Int32 slot; byte offset COUNTER * 4) */
  COUNTER: 8,
  /** byte offset of the Float64 argument slots */
  ARGS_BYTE: 128,
  MAX_ARGS: 32,
  BYTES: 128 + 32 * 8,
  EXIT: -1,
} as const;
