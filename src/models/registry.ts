/**
 * Architectures by HF `model_type`. Each entry parses its typed config and builds the model;
 * later architectures join by adding a line here.
 */
import type { RawConfig } from "../io/config.js";
import type { ModuleContext } from "../nn/module.js";
import { SeqlabError } from "../util/errors.js";
import type { CausalLM } from "./causal_lm.js";
import { LlamaForCausalLM, parseLlamaConfig } from "./llama.js";
import { GPT2LMHeadModel, parseGPT2Config } from "./gpt2.js";
import { RwkvForCausalLM, parseRwkv4Config } from "./rwkv4.js";
import { Rwkv7ForCausalLM, parseRwkv7Config } from "./rwkv7.js";
import { SeqlabForCausalLM, parseNativeConfig } from "./native.js";
import { MambaForCausalLM, parseMambaConfig } from "./mamba.js";
import { Mamba2ForCausalLM, parseMamba2Config } from "./mamba2.js";
import { Qwen3NextForCausalLM, parseQwen3NextConfig } from "./qwen3next.js";
import { JambaForCausalLM, parseJambaConfig } from "./jamba.js";
import { GraniteMoeHybridForCausalLM, parseGraniteMoeHybridConfig } from "./granitemoehybrid.js";
import { checkpointNames, GRANITE_MOE_NAMES, JAMBA_NAMES, QWEN2_MOE_NAMES, type CheckpointNames } from "./checkpoint_names.js";

export interface Architecture {
  modelType: string;
  /** the transformers class this matches */
  hfClass: string;
  /** whether that class is in transformers (export can write a directory it loads) */
  inTransformers: boolean;
  build(raw: RawConfig, ctx: ModuleContext): CausalLM;
  /** how checkpoint file names differ from module names (none: they are the same) */
  checkpointNames?: CheckpointNames;
}

const ARCHITECTURES: Architecture[] = [
  { modelType: "llama", hfClass: "LlamaForCausalLM", inTransformers: true, build: (raw, ctx) => new LlamaForCausalLM(ctx, parseLlamaConfig(raw)) },
  { modelType: "gpt2", hfClass: "GPT2LMHeadModel", inTransformers: true, build: (raw, ctx) => new GPT2LMHeadModel(ctx, parseGPT2Config(raw)) },
  { modelType: "rwkv", hfClass: "RwkvForCausalLM", inTransformers: true, build: (raw, ctx) => new RwkvForCausalLM(ctx, parseRwkv4Config(raw)) },
  { modelType: "rwkv7", hfClass: "RWKV-7 x070 (BlinkDL RWKV-LM)", inTransformers: false, build: (raw, ctx) => new Rwkv7ForCausalLM(ctx, parseRwkv7Config(raw)) },
  { modelType: "seqlab", hfClass: "(native)", inTransformers: false, build: (raw, ctx) => new SeqlabForCausalLM(ctx, parseNativeConfig(raw)) },
  { modelType: "mamba", hfClass: "MambaForCausalLM", inTransformers: true, build: (raw, ctx) => new MambaForCausalLM(ctx, parseMambaConfig(raw)) },
  { modelType: "mamba2", hfClass: "Mamba2ForCausalLM", inTransformers: true, build: (raw, ctx) => new Mamba2ForCausalLM(ctx, parseMamba2Config(raw)) },
  {
    modelType: "qwen3_next",
    hfClass: "Qwen3NextForCausalLM",
    inTransformers: true,
    build: (raw, ctx) => new Qwen3NextForCausalLM(ctx, parseQwen3NextConfig(raw)),
    checkpointNames: checkpointNames(QWEN2_MOE_NAMES),
  },
  {
    modelType: "jamba",
    hfClass: "JambaForCausalLM",
    inTransformers: true,
    build: (raw, ctx) => new JambaForCausalLM(ctx, parseJambaConfig(raw)),
    checkpointNames: checkpointNames(JAMBA_NAMES),
  },
  {
    modelType: "granitemoehybrid",
    hfClass: "GraniteMoeHybridForCausalLM",
    inTransformers: true,
    build: (raw, ctx) => new GraniteMoeHybridForCausalLM(ctx, parseGraniteMoeHybridConfig(raw)),
    checkpointNames: checkpointNames(GRANITE_MOE_NAMES),
  },
];

export function supportedModelTypes(): string[] {
  return ARCHITECTURES.map((a) => a.modelType);
}

export function architectureFor(raw: RawConfig): Architecture {
  const type = raw.str("model_type");
  const arch = ARCHITECTURES.find((a) => a.modelType === type);
  if (!arch) {
    throw new SeqlabError(`${raw.source}: model_type "${type}" is not supported (supported: ${supportedModelTypes().join(", ")})`);
  }
  return arch;
}

export function buildModel(raw: RawConfig, ctx: ModuleContext): CausalLM {
  return architectureFor(raw).build(raw, ctx);
}
