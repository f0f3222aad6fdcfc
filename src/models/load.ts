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
import { buildModel } from "./registry.js";

export function readModelConfig(dir: string): RawConfig {
  if (!fs.existsSync(dir)) throw new SeqlabError(`${dir}: no such model directory`);
  if (!fs.statSync(dir).isDirectory()) throw new SeqlabError(`${dir}: not a directory`);
  return RawConfig.fromFile(path.join(dir, "config.json"));
}

export function loadModel(dir: string, be: Backend): CausalLM {
  const raw = readModelConfig(dir);
  const model = buildModel(raw, ModuleContext.forLoading(be));
  const file = path.join(dir, "model.safetensors");
  if (!fs.existsSync(file)) throw new SeqlabError(`${file}: no such file (the model's weights)`);
  const st = SafetensorsFile.open(file);
  try {
    loadWeights(model, st);
  } finally {
    st.close();
  }
  return model;
}

/** Fill every parameter of `model` from `st`, checking names and shapes. */
export function loadWeights(model: CausalLM, st: SafetensorsFile): void {
  for (const [name, t] of model.namedParameters()) {
    if (!st.has(name)) throw new SeqlabError(`${st.path}: tensor "${name}" is missing`);
    const info = st.info(name);
    if (!sameShape(info.shape, t.shape)) {
      throw new SeqlabError(`${st.path}: tensor "${name}" has shape ${fmtShape(info.shape)}, the config needs ${fmtShape(t.shape)}`);
    }
    backendOf(t).write(t.handle, t.dtype, st.readF32(name));
  }
}
