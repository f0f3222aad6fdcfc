/**
 * Export to a Hugging Face model directory: config.json + model.safetensors as transformers'
 * save_pretrained writes them (float32; a tied LM head is not stored; per-architecture file names
 * through checkpoint_names' inverse, e.g. Jamba's experts one tensor per expert), so the directory
 * loads with AutoModelForCausalLM.from_pretrained and with seqlab.
 *
 * A model of an HF architecture is written as it is, its config cleaned of seqlab's own keys. A
 * native seqlab model is first rebuilt as the HF architecture its layer pattern is (native_export.ts),
 * its weights copied under the HF names; every HF parameter must receive exactly one native one.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { backendOf, toFloat32 } from "../backend/alloc.js";
import { RawConfig } from "../io/config.js";
import { writeSafetensors } from "../io/safetensors.js";
import { ModuleContext } from "../nn/module.js";
import { fmtShape, sameShape } from "../tensor/shape.js";
import { SeqlabError } from "../util/errors.js";
import type { CausalLM } from "./causal_lm.js";
import type { FileTensor } from "./checkpoint_names.js";
import { architectureFor, type Architecture } from "./registry.js";
import { SeqlabForCausalLM } from "./native.js";
import { nativeAsHf } from "./native_export.js";

export interface TransformersModel {
  /** config.json contents */
  config: Record<string, unknown>;
  /** a model of `arch` holding the weights to write */
  model: CausalLM;
  arch: Architecture;
}

/** Keys only seqlab reads; a value other than HF's behaviour cannot be exported. */
const SEQLAB_KEYS: Record<string, (v: unknown) => string | null> = {
  selective: (v) => (v === false ? "selective: false (the time-invariant Mamba ablation) has no transformers equivalent" : null),
};

/** `model`, built from `raw`, as a transformers architecture. */
export async function asTransformers(model: CausalLM, raw: RawConfig): Promise<TransformersModel> {
  const arch = architectureFor(raw);
  if (model instanceof SeqlabForCausalLM) return fromNative(model);
  if (!arch.inTransformers) throw new SeqlabError(`${raw.source}: model_type "${arch.modelType}" (${arch.hfClass}) has no transformers class to export to`);
  const config: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(raw.json)) {
    if (k.startsWith("seqlab_") || k === "torch_dtype") continue; // the weights are written as float32, said by "dtype"
    const problem = SEQLAB_KEYS[k]?.(v);
    if (problem) throw new SeqlabError(`${raw.source}: cannot export: ${problem}`);
    if (k in SEQLAB_KEYS) continue;
    config[k] = v;
  }
  return { config: { ...config, architectures: [arch.hfClass], dtype: "float32" }, model, arch };
}

async function fromNative(native: SeqlabForCausalLM): Promise<TransformersModel> {
  const target = nativeAsHf(native);
  const raw = new RawConfig(`${native.config.raw.source} as ${String((target.json.architectures as string[])[0])}`, target.json);
  const arch = architectureFor(raw);
  const model = arch.build(raw, ModuleContext.forLoading(native.backend));
  const into = new Map(model.namedParameters());
  const filled = new Set<string>();
  for (const [name, t] of native.namedParameters()) {
    const hfName = target.rename(name);
    const dst = into.get(hfName);
    if (!dst || filled.has(hfName)) throw new Error(`internal: native ${name} maps to ${hfName}, which ${arch.hfClass} ${dst ? "already got" : "lacks"}`);
    if (!sameShape(dst.shape, t.shape)) throw new Error(`internal: native ${name} ${fmtShape(t.shape)} vs ${hfName} ${fmtShape(dst.shape)}`);
    backendOf(dst).write(dst.handle, dst.dtype, await toFloat32(t));
    filled.add(hfName);
  }
  const missing = [...into.keys()].filter((n) => !filled.has(n));
  if (missing.length > 0) throw new Error(`internal: ${arch.hfClass} parameters without a native source: ${missing.join(", ")}`);
  return { config: target.json, model, arch };
}

/** The file tensors of a model under its architecture's checkpoint names. */
export async function checkpointTensors(model: CausalLM, arch: Architecture): Promise<FileTensor[]> {
  const out: FileTensor[] = [];
  for (const [name, t] of model.namedParameters()) {
    const data = await toFloat32(t);
    out.push(...(arch.checkpointNames ? arch.checkpointNames.toCheckpoint(name, [...t.shape], data) : [{ name, shape: [...t.shape], data }]));
  }
  return out;
}

/** Write config.json and model.safetensors into `dir` (created if needed). */
export async function writeTransformersDir(dir: string, m: TransformersModel): Promise<void> {
  fs.mkdirSync(dir, { recursive: true });
  const tensors = await checkpointTensors(m.model, m.arch);
  writeSafetensors(
    path.join(dir, "model.safetensors"),
    tensors.map((t) => ({ name: t.name, dtype: "F32", shape: t.shape, data: t.data })),
    { format: "pt" },
  );
  fs.writeFileSync(path.join(dir, "config.json"), configJson(m.config));
}

/**
 * Float fields of the configs exported (a number or a list of numbers), as transformers writes
 * them; those the fixtures hold as whole numbers are among them.
 */
const FLOAT_FIELDS = new Set([
  "time_step_limit", "time_step_scale", "time_step_min", "time_step_max", "time_step_floor", "router_aux_loss_coef", "rope_theta",
  "attention_dropout", "attn_pdrop", "embd_pdrop", "resid_pdrop", "attention_multiplier", "embedding_multiplier", "logits_scaling", "residual_multiplier",
]);

/**
 * config.json text. JSON.stringify writes 1.0 as 1, which transformers 5's strict config
 * dataclasses refuse for some float fields (Mamba's time_step_scale, Jamba's
 * router_aux_loss_coef, Mamba-2's time_step_limit [0, inf]: "Invalid item at index 0"), so whole
 * numbers in float fields are written with a decimal point, as Python writes them.
 */
export function configJson(config: Record<string, unknown>): string {
  const mark = "\u0000float:";
  const text = JSON.stringify(
    config,
    function (this: unknown, key: string, value: unknown) {
      if (!FLOAT_FIELDS.has(key)) return value;
      const float = (x: unknown) => (typeof x === "number" && Number.isInteger(x) ? `${mark}${x}` : x);
      return Array.isArray(value) ? value.map(float) : float(value);
    },
    2,
  );
  return text.replace(/"\\u0000float:(-?\d+)"/g, "$1.0") + "\n";
}
