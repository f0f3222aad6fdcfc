/**
 * `seqlab export`: write a model in another program's format.
 *   --hf DIR --model DIR|config.json|PRESET   a Hugging Face directory (config.json + model.safetensors)
 *       that transformers loads. Native seqlab models export when their layer pattern is a
 *       transformers architecture (Llama, Mamba, Mamba-2, Jamba); otherwise one line says what
 *       prevents it. With --reference the directory also gets reference.safetensors (input ids and
 *       seqlab's logits), which `seqlab verify` and scripts/check_hf_export.py compare against.
 *   --gguf OUT.gguf --model DIR|hf:owner/name  a GGUF file llama.cpp loads (Llama, Mamba), with the
 *       model's tokenizer or a minimal byte vocabulary.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { createBackend } from "../../backend/registry.js";
import { fromArray, toFloat32 } from "../../backend/alloc.js";
import { noGradAsync } from "../../autograd/tape.js";
import { tidyAsync } from "../../tensor/scope.js";
import { writeSafetensors } from "../../io/safetensors.js";
import { buildModel } from "../../models/registry.js";
import { checkConfigBudget, loadModel } from "../../models/load.js";
import type { CausalLM } from "../../models/causal_lm.js";
import { asTransformers, writeTransformersDir } from "../../models/export.js";
import { exportGguf, type ExportType } from "../../export/gguf_export.js";
import { ModuleContext } from "../../nn/module.js";
import { Rng } from "../../util/rng.js";
import { SeqlabError } from "../../util/errors.js";
import { formatBytes } from "../../util/format.js";
import { intFlag } from "../args.js";
import { assertWritableDir, assertWritableFile } from "../output_path.js";
import { ORACLE_BACKEND_OPTIONS, cpuFlags, type Command, type Values } from "../command.js";
import { modelSource, PRESET_OPTIONS } from "../model_source.js";
import { modelDir } from "../inference.js";

const GGUF_TYPES: ExportType[] = ["f32", "f16", "auto"];

export const exportCommand: Command = {
  name: "export",
  summary: "write a model as a Hugging Face directory (--hf) or as GGUF for llama.cpp (--gguf)",
  usage: "--hf DIR --model DIR|config.json|PRESET [--reference] [--force]  |  --gguf OUT.gguf --model DIR|hf:owner/name [--type f32|f16|auto]",
  options: {
    hf: { type: "string", help: "write a Hugging Face directory here" },
    gguf: { type: "string", help: "write a GGUF file here" },
    model: { type: "string", help: "model directory (or hf:owner/name for --gguf), or a config.json / preset (seeded random weights, --hf only)" },
    seed: { type: "string", default: "0", help: "initialisation seed for a config or preset" },
    reference: { type: "boolean", help: "--hf: also write reference.safetensors: random input_ids (2 x 16) and the source model's logits" },
    force: { type: "boolean", help: "--hf: overwrite an existing config.json / model.safetensors in DIR" },
    type: { type: "string", default: "auto", help: "--gguf: precision of the weight matrices: f32, f16, or auto (f16 when the checkpoint is half precision)" },
    ...PRESET_OPTIONS,
    ...ORACLE_BACKEND_OPTIONS,
  },
  async run(v, pos) {
    const c = "export";
    if (pos.length > 0) throw new SeqlabError(`${c}: unexpected argument "${pos[0]}"`);
    if (v.hf !== undefined && v.gguf !== undefined) throw new SeqlabError(`${c}: give one of --hf DIR and --gguf FILE, not both`);
    if (v.gguf !== undefined) return exportToGguf(c, v);
    if (v.hf === undefined) throw new SeqlabError(`${c}: give --hf DIR (a Hugging Face directory) or --gguf FILE (for llama.cpp)`);
    return exportToHf(c, v);
  },
};

async function exportToGguf(c: string, v: Values): Promise<number> {
  const out = v.gguf as string;
  const type = v.type as ExportType;
  if (!GGUF_TYPES.includes(type)) throw new SeqlabError(`${c}: --type must be one of ${GGUF_TYPES.join(", ")}, got "${type}"`);
  assertWritableFile(`${c}: --gguf`, out);
  const dir = await modelDir(c, v);
  fs.mkdirSync(path.dirname(path.resolve(out)), { recursive: true });
  const r = exportGguf(dir, out, type);
  console.log(`export: ${out}: ${r.arch}, ${r.tensors} tensors, matrices ${r.matrixType}, ${formatBytes(fs.statSync(out).size)}`);
  return 0;
}

async function exportToHf(c: string, v: Values): Promise<number> {
  const out = v.hf;
  if (typeof out !== "string" || out === "") throw new SeqlabError("export: --hf DIR (the directory to write) is required");
  assertWritableDir(`${c}: --hf`, out);
  const src = modelSource(c, v);
  for (const f of ["config.json", "model.safetensors"]) {
    if (!v.force && fs.existsSync(path.join(out, f))) throw new SeqlabError(`export: ${path.join(out, f)} exists (give --force to overwrite)`);
  }
  if (!src.dir) checkConfigBudget(src.raw);
  const be = await createBackend(v.backend as string, cpuFlags(c, v));
  const model = src.dir ? loadModel(src.dir, be) : buildModel(src.raw, ModuleContext.seeded(be, intFlag(c, "seed", v.seed, 0)));
  const hf = await asTransformers(model, src.raw);
  await writeTransformersDir(out, hf);
  if (v.reference) await writeReference(path.join(out, "reference.safetensors"), model); // the source's logits: the export must reproduce them
  console.log(`export: wrote ${out} as ${hf.arch.hfClass} (${hf.model.parameterCount().toLocaleString("en-US")} parameters)${v.reference ? " with reference.safetensors" : ""}`);
  return 0;
}

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
