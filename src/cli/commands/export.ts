/**
 * `seqlab export --hf DIR --model SRC`: write SRC (a model directory, a config.json or a preset)
 * as a Hugging Face directory that transformers loads: config.json + model.safetensors. Native
 * seqlab models export when their layer pattern is a transformers architecture (Llama, Mamba,
 * Mamba-2, Jamba); otherwise one line says what prevents it. With --reference, the directory also
 * gets reference.safetensors (input ids and seqlab's logits on them), which `seqlab verify` and
 * scripts/check_hf_export.py (transformers) compare against.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { createBackend } from "../../backend/registry.js";
import { fromArray, toFloat32 } from "../../backend/alloc.js";
import { noGradAsync } from "../../autograd/tape.js";
import { tidyAsync } from "../../tensor/scope.js";
import { writeSafetensors } from "../../io/safetensors.js";
import { buildModel } from "../../models/registry.js";
import { loadModel } from "../../models/load.js";
import type { CausalLM } from "../../models/causal_lm.js";
import { asTransformers, writeTransformersDir } from "../../models/export.js";
import { ModuleContext } from "../../nn/module.js";
import { Rng } from "../../util/rng.js";
import { SeqlabError } from "../../util/errors.js";
import { intFlag } from "../args.js";
import { BACKEND_OPTIONS, threadsFlag, type Command } from "../command.js";
import { modelSource, PRESET_OPTIONS } from "../model_source.js";

export const exportCommand: Command = {
  name: "export",
  summary: "write a model as a Hugging Face directory (config.json + model.safetensors) that transformers loads",
  usage: "--hf DIR --model DIR|config.json|PRESET [--reference] [--seed N] [--force]",
  options: {
    hf: { type: "string", help: "the directory to write" },
    model: { type: "string", help: "model directory (with weights), or a config.json / preset (seeded random weights)" },
    seed: { type: "string", default: "0", help: "initialisation seed for a config or preset" },
    reference: { type: "boolean", help: "also write reference.safetensors: random input_ids (2 x 16) and the source model's logits" },
    force: { type: "boolean", help: "overwrite an existing config.json / model.safetensors in DIR" },
    ...PRESET_OPTIONS,
    ...BACKEND_OPTIONS,
  },
  async run(v) {
    const c = "export";
    const out = v.hf;
    if (typeof out !== "string" || out === "") throw new SeqlabError("export: --hf DIR (the directory to write) is required");
    const src = modelSource(c, v);
    for (const f of ["config.json", "model.safetensors"]) {
      if (!v.force && fs.existsSync(path.join(out, f))) throw new SeqlabError(`export: ${path.join(out, f)} exists (give --force to overwrite)`);
    }
    const be = await createBackend(v.backend as string, { threads: threadsFlag(c, v.threads) });
    const model = src.dir ? loadModel(src.dir, be) : buildModel(src.raw, ModuleContext.seeded(be, intFlag(c, "seed", v.seed, 0)));
    const hf = await asTransformers(model, src.raw);
    await writeTransformersDir(out, hf);
    if (v.reference) await writeReference(path.join(out, "reference.safetensors"), model); // the source's logits: the export must reproduce them
    console.log(`export: wrote ${out} as ${hf.arch.hfClass} (${hf.model.parameterCount().toLocaleString("en-US")} parameters)${v.reference ? " with reference.safetensors" : ""}`);
    return 0;
  },
};

/** input_ids (2, 16) drawn from a fixed seed and the model's logits on them. */
export async function writeReference(file: string, model: CausalLM): Promise<void> {
  const B = 2;
  const T = 16;
  const rng = new Rng(1234);
  const ids = Int32Array.from({ length: B * T }, () => rng.int(0, model.config.V));
  const logits = await noGradAsync(() => tidyAsync(() => toFloat32(model.forward(fromArray(model.backend, ids, [B, T], "i32")).logits)));
  writeSafetensors(file, [
    { name: "input_ids", dtype: "I32", shape: [B, T], data: ids },
    { name: "logits", dtype: "F32", shape: [B, T, model.config.V], data: logits },
  ]);
}
