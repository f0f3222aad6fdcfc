/** A seqlab subcommand: its options, usage, and what it runs. */
import type { OptionSpec } from "./args.js";
import { intFlag } from "./args.js";
import { backendNames } from "../backend/registry.js";
import { DTYPE_CHOICES, type DtypeChoice, type LoadOptions } from "../models/load.js";
import { parseByteSize } from "../util/memory.js";
import { SeqlabError } from "../util/errors.js";
import { CPU_ISAS, type CpuIsa } from "../backend/cpu/isa.js";

export type Values = Record<string, string | boolean | undefined>;

export interface Command {
  name: string;
  summary: string;
  usage: string;
  options: OptionSpec;
  /** returns the exit status */
  run(values: Values, positionals: string[]): Promise<number>;
}

/**
 * Options every compute command takes. The cpu backend (WebAssembly SIMD on every core) is the
 * engine by default; the reference loops are the oracle, the default where the output is
 * reference numbers (ORACLE_BACKEND_OPTIONS).
 */
export const BACKEND_OPTIONS: OptionSpec = {
  backend: { type: "string", default: "cpu", help: `compute backend (${backendNames().join(", ")})` },
  threads: { type: "string", help: "worker threads for the cpu backend (default: all cores)" },
  "cpu-isa": { type: "string", help: `instruction set of the cpu backend's kernels: ${CPU_ISAS.join(" or ")} (default: relaxed, simd128 with fused multiply-add, where the WebAssembly engine runs it)` },
  help: { type: "boolean", short: "h", help: "show this help" },
};

/**
 * For `verify` (the model code against PyTorch's numbers) and `export` (whose --reference writes
 * seqlab's logits for PyTorch to match): the reference loops, unless --backend names an engine.
 */
export const ORACLE_BACKEND_OPTIONS: OptionSpec = {
  ...BACKEND_OPTIONS,
  backend: { ...BACKEND_OPTIONS.backend, default: "ref" },
};

export function threadsFlag(command: string, v: string | boolean | undefined): number | undefined {
  return v === undefined ? undefined : intFlag(command, "threads", v, 0, 1, 256);
}

/** --cpu-isa simd128|relaxed (CpuOptions.isa); undefined when not given. */
export function cpuIsaFlag(command: string, v: string | boolean | undefined): CpuIsa | undefined {
  if (v === undefined) return undefined;
  if (!CPU_ISAS.includes(v as CpuIsa)) throw new SeqlabError(`${command}: --cpu-isa takes ${CPU_ISAS.join(" or ")}, got "${v}"`);
  return v as CpuIsa;
}

/** The cpu backend's flags (--threads, --cpu-isa) as BackendOptions. */
export function cpuFlags(command: string, v: Values): { threads?: number; cpuIsa?: CpuIsa } {
  return { threads: threadsFlag(command, v.threads), cpuIsa: cpuIsaFlag(command, v["cpu-isa"]) };
}

/** For the commands that decode with a KV cache (generate, chat, passkey, bench). */
export const KV_CACHE_OPTION: OptionSpec = {
  "kv-cache": { type: "string", help: "storage of attention's KV cache while decoding: f32 (default) or f16 (cpu, ref: half the bytes, as llama.cpp)" },
};

/** --kv-cache f32|f16 (Backend.kvCache); undefined when not given. */
export function kvCacheFlag(command: string, v: string | boolean | undefined): "f32" | "f16" | undefined {
  if (v === undefined) return undefined;
  if (v !== "f32" && v !== "f16") throw new SeqlabError(`${command}: --kv-cache takes f32 or f16, got "${v}"`);
  return v;
}

/** Options of commands that load a model's weights. */
export const LOAD_OPTIONS: OptionSpec = {
  dtype: { type: "string", help: `weight precision: ${DTYPE_CHOICES.join(", ")} (auto keeps what the checkpoint stores; f16/bf16 are inference-only)` },
  "memory-budget": { type: "string", help: "refuse weights larger than this, e.g. 8GiB (default: the memory available now)" },
};

export function loadFlags(command: string, v: Values, defaultDtype: DtypeChoice): LoadOptions {
  const dtype = (v.dtype as string | undefined) ?? defaultDtype;
  if (!DTYPE_CHOICES.includes(dtype as DtypeChoice)) {
    throw new SeqlabError(`${command}: --dtype must be one of ${DTYPE_CHOICES.join(", ")}, got "${dtype}"`);
  }
  const budget = v["memory-budget"];
  return {
    dtype: dtype as DtypeChoice,
    memoryBudget: budget === undefined ? undefined : parseByteSize(`${command}: --memory-budget`, String(budget)),
  };
}
