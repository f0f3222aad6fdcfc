/**
 * Filling a model from named tensors, with no file system: the part of checkpoint loading that
 * Node (models/load.ts, reading a model directory) and browsers (a config.json and a
 * model.safetensors a user drops on the page) share. Each parameter is read by its checkpoint
 * name, checked against the shape the config implies, and written into place one at a time.
 * The shapes are compared first, on a build of the config on the shape-only backend, so a config
 * that disagrees with its weights (a hidden size of 10^9 beside a small checkpoint) is refused
 * before anything is allocated.
 */
import type { Backend } from "../backend/backend.js";
import { backendOf } from "../backend/alloc.js";
import { ShapeOnlyBackend } from "../backend/shape_only.js";
import type { RawConfig } from "../io/config.js";
import type { StorageDtype, WeightReader } from "../io/weights.js";
import { ModuleContext } from "../nn/module.js";
import { fmtShape, sameShape } from "../tensor/shape.js";
import { SeqlabError } from "../util/errors.js";
import { f32ToBf16, f32ToF16 } from "../util/half.js";
import type { CausalLM } from "./causal_lm.js";
import { architectureFor } from "./registry.js";
import type { TensorReader } from "./checkpoint_names.js";

/** The model `raw` describes, built on `be` and filled from `weights` (checkpoint names). */
export function buildFromWeights(raw: RawConfig, weights: WeightReader, be: Backend, dtype: StorageDtype = "f32"): CausalLM {
  const arch = architectureFor(raw);
  const file = arch.checkpointNames ? arch.checkpointNames.fromCheckpoint(weights) : weights;
  checkShapes(arch.build(raw, ModuleContext.forLoading(new ShapeOnlyBackend(), dtype)), file);
  const model = arch.build(raw, ModuleContext.forLoading(be, dtype));
  fill(model, file);
  return model;
}

/** Every parameter of `model` is in `file` (under module names) with the shape the config implies. */
function checkShapes(model: CausalLM, file: WeightReader | TensorReader): void {
  for (const [name, t] of model.namedParameters()) {
    if (!file.has(name)) throw new SeqlabError(`${file.path}: tensor "${name}" is missing`);
    const shape = file.shape(name);
    if (!sameShape(shape, t.shape)) {
      throw new SeqlabError(`${file.path}: tensor "${name}" has shape ${fmtShape(shape)}, the config needs ${fmtShape(t.shape)}`);
    }
  }
}

/** Fill every parameter of `model` from `file` (read under module names), checking names and shapes, in each parameter's own precision. */
export function loadWeights(model: CausalLM, file: WeightReader | TensorReader): void {
  checkShapes(model, file);
  fill(model, file);
}

/** Every parameter of `model` written from `file`, whose names and shapes were checked. */
function fill(model: CausalLM, file: WeightReader | TensorReader): void {
  for (const [name, t] of model.namedParameters()) backendOf(t).write(t.handle, t.dtype, read(file, name, t.dtype as StorageDtype));
}

/** A tensor in `dtype`: read directly when the reader can, else converted from f32. */
function read(file: WeightReader | TensorReader, name: string, dtype: StorageDtype) {
  if (dtype === "f32") return file.readF32(name);
  if ("readAs" in file && file.readAs) return file.readAs(name, dtype);
  const encode = dtype === "f16" ? f32ToF16 : f32ToBf16;
  return Uint16Array.from(file.readF32(name), (v) => encode(v));
}
