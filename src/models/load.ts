/**
 * Loading an HF model directory: config.json + model.safetensors. The model is built from the
 * config, then each parameter is read by its checkpoint name, checked against the shape the
 * config implies, and written into place one tensor at a time.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import type { Backend } from "../backend/backend.js";
import { backendOf } from "../backend/alloc.js";
import { RawConfig } from "../io/config.js";
import { SafetensorsFile } from "../io/safetensors.js";
import { ModuleContext } from "../nn/module.js";
import { fmtShape, sameShape } from "../tensor/shape.js";
import { SeqlabError } from "../util/errors.js";
import type { CausalLM } from "./causal_lm.js";
import { architectureFor, type Architecture } from "./registry.js";
import { safetensorsReader, type TensorReader } from "./checkpoint_names.js";

export function readModelConfig(dir: string): RawConfig {
  if (!fs.existsSync(dir)) throw new SeqlabError(`${dir}: no such model directory`);
  if (!fs.statSync(dir).isDirectory()) throw new SeqlabError(`${dir}: not a directory`);
  return RawConfig.fromFile(path.join(dir, "config.json"));
}

export function loadModel(dir: string, be: Backend): CausalLM {
  const raw = readModelConfig(dir);
  const arch = architectureFor(raw);
  const model = arch.build(raw, ModuleContext.forLoading(be));
  const file = path.join(dir, "model.safetensors");
  if (!fs.existsSync(file)) throw new SeqlabError(`${file}: no such file (the model's weights)`);
  const st = SafetensorsFile.open(file);
  try {
    loadWeights(model, checkpointReader(arch, st));
  } finally {
    st.close();
  }
  return model;
}

/** The checkpoint file seen under the module names of `arch` (its name conversion, if it has one). */
export function checkpointReader(arch: Architecture, st: SafetensorsFile): TensorReader {
  const file = safetensorsReader(st);
  return arch.checkpointNames ? arch.checkpointNames.fromCheckpoint(file) : file;
}

/** Fill every parameter of `model` from `file` (read under module names), checking names and shapes. */
export function loadWeights(model: CausalLM, file: TensorReader): void {
  for (const [name, t] of model.namedParameters()) {
    if (!file.has(name)) throw new SeqlabError(`${file.path}: tensor "${name}" is missing`);
    const shape = file.shape(name);
    if (!sameShape(shape, t.shape)) {
      throw new SeqlabError(`${file.path}: tensor "${name}" has shape ${fmtShape(shape)}, the config needs ${fmtShape(t.shape)}`);
    }
    backendOf(t).write(t.handle, t.dtype, file.readF32(name));
  }
}
