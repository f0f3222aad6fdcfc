/**
 * Loading an HF model directory: config.json + weights (model.safetensors, or shards listed by
 * model.safetensors.index.json). The memory the weights will take is estimated from the
 * safetensors headers and checked against a budget before anything is allocated; then the
 * model is built from the config and each parameter is read by its checkpoint name, checked
 * against the shape the config implies, and written into place one tensor at a time.
 *
 * Weight matrices can be kept in half precision (f16/bf16, as stored or converted): they are
 * read by kernels that widen them on the fly and are inference-only (see nn/module.ts).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import type { Backend } from "../backend/backend.js";
import type { WeightDtype } from "../backend/kernels.js";
import { ShapeOnlyBackend } from "../backend/shape_only.js";
import type { RawConfig } from "../io/config.js";
import { readConfigFile } from "../io/config_file.js";
import { CheckpointWeights, type StorageDtype } from "../io/weights.js";
import { SeqlabError } from "../util/errors.js";
import { formatBytes } from "../util/format.js";
import { availableMemoryBytes } from "../util/memory.js";
import { ModuleContext } from "../nn/module.js";
import type { CausalLM } from "./causal_lm.js";
import { architectureFor, buildModel } from "./registry.js";
import { buildFromWeights } from "./load_weights.js";

// shared with browsers, which read weights from memory rather than from a directory
export { buildFromWeights, loadWeights } from "./load_weights.js";

/** Weight precision a user asks for; "auto" keeps what the checkpoint stores. */
export type DtypeChoice = StorageDtype | "auto";
export const DTYPE_CHOICES: readonly DtypeChoice[] = ["f32", "f16", "bf16", "auto"];

export interface LoadOptions {
  /** precision of the weight matrices (default f32) */
  dtype?: DtypeChoice;
  /** bytes the weights may occupy (default: the memory available now) */
  memoryBudget?: number;
}

export function readModelConfig(dir: string): RawConfig {
  if (!fs.existsSync(dir)) throw new SeqlabError(`${dir}: no such model directory`);
  if (!fs.statSync(dir).isDirectory()) throw new SeqlabError(`${dir}: not a directory`);
  return readConfigFile(path.join(dir, "config.json"));
}

export function loadModel(dir: string, be: Backend, opts: LoadOptions = {}): CausalLM {
  const raw = readModelConfig(dir);
  architectureFor(raw); // an unsupported model_type is refused before the weights are opened
  const weights = CheckpointWeights.open(dir);
  try {
    const dtype = opts.dtype === "auto" ? weights.storedWeightDtype() : (opts.dtype ?? "f32");
    checkMemoryBudget(dir, weights, dtype, opts.memoryBudget);
    return buildFromWeights(raw, weights, be, dtype);
  } finally {
    weights.close();
  }
}

/** Refuse, before allocating anything, weights that will not fit the budget; names both sizes. */
export function checkMemoryBudget(dir: string, weights: CheckpointWeights, dtype: StorageDtype, budget?: number): void {
  const needed = weights.memoryBytes(dtype);
  const limit = budget ?? availableMemoryBytes();
  if (needed <= limit) return;
  const source = budget === undefined ? "the memory available now; --memory-budget overrides it" : "--memory-budget";
  const smaller = dtype === "f32" && weights.memoryBytes("bf16") <= limit ? "; --dtype bf16 or f16 would fit" : "";
  throw new SeqlabError(
    `${dir}: the weights need ${formatBytes(needed)} as ${dtype} (${formatBytes(weights.storedBytes())} on disk), more than the memory budget of ${formatBytes(limit)} (${source})${smaller}`,
  );
}

/**
 * Refuse, before allocating anything, a configuration whose parameters will not fit the budget.
 * They are counted by building the model on the shape-only backend (no data). `copies` counts
 * what training keeps beside each parameter (its gradient and AdamW's two moments: 4 in all).
 */
export function checkConfigBudget(raw: RawConfig, opts: { dtype?: WeightDtype; budget?: number; copies?: number } = {}): void {
  const be = new ShapeOnlyBackend();
  buildModel(raw, ModuleContext.forLoading(be, opts.dtype ?? "f32"));
  const copies = opts.copies ?? 1;
  const needed = be.memory().bytesInUse * copies;
  const limit = opts.budget ?? availableMemoryBytes();
  if (needed <= limit) return;
  const what = copies === 1 ? "its parameters need" : `its parameters, their gradients and optimizer moments need`;
  const source = opts.budget === undefined ? "the memory available now" : "--memory-budget";
  throw new SeqlabError(`${raw.source}: ${what} ${formatBytes(needed)}, more than the memory budget of ${formatBytes(limit)} (${source})`);
}
