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
import { backendOf } from "../backend/alloc.js";
import { RawConfig } from "../io/config.js";
import { CheckpointWeights, type StorageDtype, type WeightReader } from "../io/weights.js";
import { ModuleContext } from "../nn/module.js";
import { fmtShape, sameShape } from "../tensor/shape.js";
import { SeqlabError } from "../util/errors.js";
import { formatBytes } from "../util/format.js";
import { availableMemoryBytes } from "../util/memory.js";
import { f32ToBf16, f32ToF16 } from "../util/half.js";
import type { CausalLM } from "./causal_lm.js";
import { architectureFor } from "./registry.js";
import type { TensorReader } from "./checkpoint_names.js";

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
  return RawConfig.fromFile(path.join(dir, "config.json"));
}

export function loadModel(dir: string, be: Backend, opts: LoadOptions = {}): CausalLM {
  const raw = readModelConfig(dir);
  const arch = architectureFor(raw);
  const weights = CheckpointWeights.open(dir);
  try {
    const dtype = opts.dtype === "auto" ? weights.storedWeightDtype() : (opts.dtype ?? "f32");
    checkMemoryBudget(dir, weights, dtype, opts.memoryBudget);
    const model = arch.build(raw, ModuleContext.forLoading(be, dtype));
    loadWeights(model, arch.checkpointNames ? arch.checkpointNames.fromCheckpoint(weights) : weights);
    return model;
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

/** Fill every parameter of `model` from `file` (read under module names), checking names and shapes, in each parameter's own precision. */
export function loadWeights(model: CausalLM, file: WeightReader | TensorReader): void {
  for (const [name, t] of model.namedParameters()) {
    if (!file.has(name)) throw new SeqlabError(`${file.path}: tensor "${name}" is missing`);
    const shape = file.shape(name);
    if (!sameShape(shape, t.shape)) {
      throw new SeqlabError(`${file.path}: tensor "${name}" has shape ${fmtShape(shape)}, the config needs ${fmtShape(t.shape)}`);
    }
    backendOf(t).write(t.handle, t.dtype, read(file, name, t.dtype as StorageDtype));
  }
}

/** A tensor in `dtype`: read directly when the reader can, else converted from f32. */
function read(file: WeightReader | TensorReader, name: string, dtype: StorageDtype) {
  if (dtype === "f32") return file.readF32(name);
  if ("readAs" in file && file.readAs) return file.readAs(name, dtype);
  const encode = dtype === "f16" ? f32ToF16 : f32ToBf16;
  return Uint16Array.from(file.readF32(name), (v) => encode(v));
}
