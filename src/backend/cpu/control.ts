/**
 * Layout of the control block through which the main thread hands a kernel call to the
 * workers (one block in the shared memory; worker_source.ts reads the same offsets).
 * Int32 slots first, then Float64 argument slots (f64 holds every i32, u32 pointer and f32 exactly).
 *
 * A call is cut into `nth` shares (share s runs the kernel as thread s of nth). Shares are not
 * tied to threads: whoever is running claims the next one from CLAIM, so a worker the OS has
 * descheduled never holds the call up; the main thread then computes its share too.
 */
export const CTRL = {
  /** job sequence number: sleeping workers wait for it to change */
  SEQ: 0,
  /** shares finished in the current job */
  DONE: 1,
  /** kernel index into the name list, or EXIT */
  FN: 2,
  /** (nth << 16) | next share to claim; the job is fully claimed when next >= nth */
  CLAIM: 3,
  /** 1 + share of a kernel that threw */
  ERROR: 4,
  /** work-stealing counter the kernels claim items from (Int32 slot; byte offset COUNTER * 4) */
  COUNTER: 8,
  /** byte offset of the Float64 argument slots */
  ARGS_BYTE: 128,
  MAX_ARGS: 32,
  BYTES: 128 + 32 * 8,
  EXIT: -1,
  /** bits of CLAIM below the share count */
  SHARE_BITS: 16,
} as const;
