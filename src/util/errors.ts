/**
 * User-facing errors. Every entry point (files, configs, CLI flags, token ids) reports bad input
 * by throwing a SeqlabError whose message is one line naming the thing and the problem; the CLI
 * prints that line and exits non-zero without a stack trace.
 */
export class SeqlabError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "SeqlabError";
  }
}

/** A tensor larger than the backend can hold in one buffer (webgpu: its largest storage binding). */
export class TensorTooLargeError extends SeqlabError {
  constructor(message: string) {
    super(message);
    this.name = "TensorTooLargeError";
  }
}

/** The GPU ran out of memory (webgpu: a GPUOutOfMemoryError from the device). */
export class GpuOutOfMemoryError extends SeqlabError {
  constructor(message: string) {
    super(message);
    this.name = "GpuOutOfMemoryError";
  }
}

/** Throws a SeqlabError unless `cond` holds. */
export function check(cond: unknown, message: string | (() => string)): asserts cond {
  if (!cond) throw new SeqlabError(typeof message === "string" ? message : message());
}

/** Internal invariant (a bug if it fails, not bad input). */
export function assert(cond: unknown, message: string | (() => string)): asserts cond {
  if (!cond) throw new Error("internal: " + (typeof message === "string" ? message : message()));
}
