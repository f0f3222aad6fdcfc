/**
 * The models of `seqlab bench cpu`: a ~130M Mamba, a ~130M Mamba-2 (the mamba-130m and
 * mamba2-130m shapes) and a Llama of the same width and depth, with seeded random weights.
 * Each is written once as a Hugging Face directory (config.json + model.safetensors, what
 * seqlab loads) and exported from that directory to GGUF at f32 and f16 (what llama.cpp loads),
 * so both engines run the very same weights. Files are cached by a hash of the config and seed.
 *
 * The init is scaled so that greedy decoding means something: every block adds a visible
 * update to the residual stream and the logits spread over several units, so the argmax is not
 * a near-tie that rounding differences between engines could flip.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { createHash } from "node:crypto";
import { RawConfig } from "../io/config.js";
import { ModuleContext } from "../nn/module.js";
import { RefBackend } from "../backend/ref/index.js";
import { buildModel } from "../models/registry.js";
import { asTransformers, writeTransformersDir } from "../models/export.js";
import { exportGguf } from "../export/gguf_export.js";
import { noGradAsync } from "../autograd/tape.js";

export type BenchModelName = "mamba" | "mamba2" | "llama";
export const BENCH_MODELS: readonly BenchModelName[] = ["mamba", "mamba2", "llama"];
export type BenchWeightType = "f32" | "f16";
export const BENCH_TYPES: readonly BenchWeightType[] = ["f32", "f16"];

/** config.json of each benchmark model; `tiny` gives a few-layer, narrow version for --quick tests. */
export function benchConfig(name: BenchModelName, tiny: boolean): Record<string, unknown> {
  const C = tiny ? 64 : 768;
  const L = tiny ? 2 : 24;
  switch (name) {
    case "mamba":
      // state-spaces/mamba-130m-hf
      return {
        model_type: "mamba",
        architectures: ["MambaForCausalLM"],
        hidden_size: C,
        num_hidden_layers: L,
        intermediate_size: 2 * C,
        expand: 2,
        state_size: 16,
        conv_kernel: 4,
        time_step_rank: "auto",
        vocab_size: tiny ? 512 : 50280,
        tie_word_embeddings: true,
        use_bias: false,
        use_conv_bias: true,
        hidden_act: "silu",
        layer_norm_epsilon: 1e-5,
        initializer_range: 0.1,
        residual_in_fp32: true,
      };
    case "mamba2":
      // state-spaces/mamba2-130m: head_dim 64, state 128, one group
      return {
        model_type: "mamba2",
        architectures: ["Mamba2ForCausalLM"],
        hidden_size: C,
        num_hidden_layers: L,
        expand: 2,
        num_heads: (2 * C) / 64,
        head_dim: 64,
        state_size: tiny ? 32 : 128,
        n_groups: 1,
        conv_kernel: 4,
        chunk_size: 256,
        vocab_size: tiny ? 512 : 50280,
        tie_word_embeddings: true,
        use_bias: false,
        use_conv_bias: true,
        hidden_act: "silu",
        layer_norm_epsilon: 1e-5,
        initializer_range: 0.1,
        residual_in_fp32: true,
      };
    case "llama":
      return {
        model_type: "llama",
        architectures: ["LlamaForCausalLM"],
        hidden_size: C,
        num_hidden_layers: L,
        num_attention_heads: tiny ? 4 : 12,
        num_key_value_heads: tiny ? 4 : 12,
        intermediate_size: tiny ? 160 : 2048,
        vocab_size: tiny ? 512 : 32000,
        max_position_embeddings: 4096,
        rms_norm_eps: 1e-5,
        rope_theta: 10000,
        hidden_act: "silu",
        tie_word_embeddings: false,
        // 1/sqrt(C)-ish projections: attention and MLP updates of the same order as the stream
        initializer_range: tiny ? 0.1 : 0.05,
      };
  }
}

export interface BenchModelFiles {
  name: BenchModelName;
  /** Hugging Face directory (config.json + model.safetensors) */
  dir: string;
  /** GGUF exports of that directory */
  gguf: Record<BenchWeightType, string>;
  config: Record<string, unknown>;
  /** parameters (a tied head counted once) */
  parameters: number;
}

/**
 * The model's files under `cacheDir`, written unless a previous run left them (the directory
 * name carries a hash of config and seed, so a changed config never reuses stale files).
 */
export async function benchModelFiles(name: BenchModelName, tiny: boolean, cacheDir: string, seed = 0, log: (s: string) => void = () => {}): Promise<BenchModelFiles> {
  const config = benchConfig(name, tiny);
  const hash = createHash("sha256").update(JSON.stringify({ config, seed, version: 1 })).digest("hex").slice(0, 10);
  const dir = path.join(cacheDir, `${name}${tiny ? "-tiny" : ""}-${hash}`);
  const gguf = { f32: path.join(dir, "model-f32.gguf"), f16: path.join(dir, "model-f16.gguf") };
  const done = path.join(dir, "complete.json");
  if (!fs.existsSync(done)) {
    fs.rmSync(dir, { recursive: true, force: true });
    fs.mkdirSync(dir, { recursive: true });
    log(`writing ${name} weights (seed ${seed}) to ${dir}`);
    const raw = new RawConfig(`${name} benchmark config`, config);
    const be = new RefBackend();
    const model = buildModel(raw, ModuleContext.seeded(be, seed));
    await noGradAsync(async () => writeTransformersDir(dir, await asTransformers(model, raw)));
    const parameters = model.parameterCount();
    for (const t of model.parameters()) t.dispose();
    for (const type of BENCH_TYPES) exportGguf(dir, gguf[type], type);
    fs.writeFileSync(done, JSON.stringify({ parameters }) + "\n");
  }
  const { parameters } = JSON.parse(fs.readFileSync(done, "utf8")) as { parameters: number };
  return { name, dir, gguf, config, parameters };
}
