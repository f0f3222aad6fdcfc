/**
 * Helpers for the cpu mixer-kernel tests: run a native kernel and its reference twin on the
 * same inputs (the reference writes plain host arrays), compare every output, and check that
 * the native results are the same bit for bit on every thread count (of one instruction set:
 * the relaxed build's fused multiply-adds round differently from the simd128 build's).
 */
import assert from "node:assert/strict";
import type { CpuBackend } from "../src/backend/cpu/backend.js";
import type { KernelName, Kernels } from "../src/backend/kernels.js";
import type { HostArray } from "../src/tensor/dtype.js";
import { refKernels } from "../src/backend/ref/index.js";
import { Rng } from "../src/util/rng.js";
import { close, type Cpu } from "./cpu_helpers.js";

type AnyKernel = (...args: unknown[]) => void;

/** What an output slot holds before the kernel runs: garbage, so that unwritten entries show. */
const POISON = 12345.5;

export interface Compared {
  /** the native outputs (null where the slot was null) */
  got: (Float32Array | null)[];
  want: (Float32Array | null)[];
}

/**
 * Calls kernel `name` as (outputs..., rest...) natively and on the reference, outputs of the
 * given sizes (null: absent), and compares each against the reference within `tol` (relative L2,
 * with `floor` as in close()). `init` gives outputs that are also inputs (accumulated or
 * updated in place) their starting values.
 */
export function compare(
  be: CpuBackend,
  name: KernelName,
  outSizes: (number | null)[],
  rest: unknown[],
  tol: number,
  label: string,
  opts: { floor?: number; init?: (Float32Array | null)[]; names?: string[]; tols?: number[] } = {},
): Compared {
  const got = outSizes.map((n, i) => {
    if (n === null) return null;
    const h = be.allocate("f32", n) as Float32Array;
    h.fill(POISON);
    if (opts.init?.[i]) h.set(opts.init[i]!);
    return h;
  });
  const want = outSizes.map((n, i) => {
    if (n === null) return null;
    const h = new Float32Array(n).fill(POISON);
    if (opts.init?.[i]) h.set(opts.init[i]!);
    return h;
  });
  (be.kernels[name] as unknown as AnyKernel)(...got, ...rest);
  (refKernels[name] as unknown as AnyKernel)(...want, ...rest);
  got.forEach((g, i) => {
    if (!g) return;
    const what = `${label} ${name} ${opts.names?.[i] ?? `output ${i}`}`;
    close(g, want[i]!, opts.tols?.[i] ?? tol, what, opts.floor ?? 0);
  });
  return { got, want };
}

/** The native outputs of two runs are identical bit for bit. */
export function sameBits(a: (Float32Array | null)[], b: (Float32Array | null)[], what: string): void {
  a.forEach((x, i) => {
    const y = b[i];
    if (!x || !y) return;
    const xi = new Int32Array(x.buffer, x.byteOffset, x.length);
    const yi = new Int32Array(y.buffer, y.byteOffset, y.length);
    for (let j = 0; j < xi.length; j++) if (xi[j] !== yi[j]) assert.fail(`${what}: output ${i} differs at ${j} (${x[j]} vs ${y[j]})`);
  });
}

/** A cpu f32 view of n normal values (std, mean). */
export function randn(be: CpuBackend, n: number, rng: Rng, std = 1, mean = 0): Float32Array {
  const a = be.allocate("f32", n) as Float32Array;
  for (let i = 0; i < n; i++) a[i] = mean + std * rng.normal();
  return a;
}

/** A cpu f32 view of n uniform values in [lo, hi). */
export function uniform(be: CpuBackend, n: number, rng: Rng, lo: number, hi: number): Float32Array {
  const a = be.allocate("f32", n) as Float32Array;
  for (let i = 0; i < n; i++) a[i] = lo + (hi - lo) * rng.uniform();
  return a;
}

/** The same values in another backend's memory (inputs shared by runs on several thread counts). */
export function moveTo<T extends HostArray | null>(be: CpuBackend, a: T): T {
  if (a === null) return a;
  const dtype = a instanceof Int32Array ? "i32" : "f32";
  return be.upload(dtype, a as HostArray) as T;
}

export type { Kernels };

/**
 * Runs `run` on every backend of `cpus` with its own copies of the inputs; the native outputs
 * of backends with the same instruction set must agree bit for bit, whatever their thread count.
 */
export function onEveryThreadCount(
  cpus: Cpu[],
  label: string,
  run: (be: CpuBackend, put: <T extends Float32Array | null>(a: T) => T, label: string) => (Float32Array | null)[],
): void {
  const first = new Map<string, { got: (Float32Array | null)[]; threads: string }>();
  for (const { be, label: threads } of cpus) {
    const got = run(be, (a) => moveTo(be, a), `${label} [${threads}]`);
    const prev = first.get(be.isa);
    if (prev) sameBits(got, prev.got, `${label}: ${threads} vs ${prev.threads}`);
    else first.set(be.isa, { got: got.map((g) => (g ? g.slice() : null)), threads });
  }
}
