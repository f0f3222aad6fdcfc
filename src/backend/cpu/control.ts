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
  /** job sequence number: sleeping workers wait for it to change. Alone on its cache line: a
   * spinning worker polls it, and every write the main thread makes while setting up a call
   * (arguments, claim word, counter) would otherwise pull the line away from the poller and back
   * (Llama f16 decode after 16 tokens, call setup from the arguments to the notify: 0.49-1.13 ms
   * a token before, 0.29-0.68 after, two noisy runs each). */
  SEQ: 0,
  /** shares finished in the current job (its own line: the main thread polls it while shares run) */
  DONE: 16,
  /** kernel index into the name list, or EXIT */
  FN: 32,
  /** (nth << 16) | next share to claim; the job is fully claimed when next >= nth */
  CLAIM: 33,
  /** 1 + share of a kernel that threw */
  ERROR: 34,
  /** work-stealing counter the kernels claim items from (Int32 slot; byte offset COUNTER * 4; its own line) */
  COUNTER: 48,
  /** Int32 slots before the arguments */
  INTS: 64,
  /** byte offset of the Float64 argument slots */
  ARGS_BYTE: 256,
  MAX_ARGS: 32,
  BYTES: 256 + 32 * 8,
  EXIT: -1,
  /** bits of CLAIM below the share count */
  SHARE_BITS: 16,
} as const;
