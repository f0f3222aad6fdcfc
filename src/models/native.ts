/**
 * seqlab's native model (model_type "seqlab"): any stack of pre-norm residual blocks, each a
 * token mixer and an optional FFN, chosen per layer:
 *
 *   { "model_type": "seqlab", "vocab_size": 64, "hidden_size": 64, "tie_word_embeddings": true,
 *     "layers": ["mamba", "mamba", "mamba", "attention+moe"],
 *     "attention": { "num_heads": 4, "position": "none" },
 *     "mamba": { "state_size": 16 }, "moe": { "num_experts": 4, "top_k": 2, "intermediate_size": 64 } }
 *
 * A layer is "mixer" or "mixer+ffn"; each part reads its settings from the config section of
 * its name. Block: h = h + mixer(norm(h)); h = h + ffn(norm(h)). This is what the showdown
 * trains: Transformers, Mamba, Mamba-2, RWKV and Jamba-style hybrids from one description.
 */
import type { Tensor } from "../tensor/tensor.js";
import type { Backend } from "../backend/backend.js";
import * as ops from "../ops/index.js";
import { Module, ModuleContext, normalInit } from "../nn/module.js";
import { Embedding, Linear, RMSNorm } from "../nn/layers.js";
import { InferenceState, type LayerState } from "../nn/state.js";
import { RawConfig } from "../io/config.js";
import { CausalLM, type ForwardOptions, type ForwardResult, type LMConfig } from "./causal_lm.js";
import { runStack } from "./stack.js";
import { makeFfn, makeMixer, type FfnPart, type MixerPart } from "./native_parts.js";
import type { RouterLog } from "../nn/moe.js";
import "./native_builtin.js";
import "./native_ssm.js";
import "./native_moe.js";

export interface NativeLayer {
  mixer: string;
  ffn: string;
}

export interface NativeConfig extends LMConfig {
  layers: NativeLayer[];
  eps: number;
  initStd: number;
  raw: RawConfig;
}

export function parseLayer(spec: string): NativeLayer {
  const [mixer, ffn = "none"] = spec.split("+");
  return { mixer, ffn };
}

export function parseNativeConfig(raw: RawConfig): NativeConfig {
  const specs = raw.strings("layers");
  raw.require(specs.length > 0, `"layers" must list at least one layer`);
  const layers = specs.map(parseLayer);
  // the MoE FFNs' load-balancing loss is added in training with the moe section's aux_loss_coef
  const moe = layers.some((l) => l.ffn === "moe") ? (raw.object("moe") ?? new RawConfig(`${raw.source} (moe)`, {})) : null;
  return {
    modelType: "seqlab",
    V: raw.int("vocab_size"),
    C: raw.int("hidden_size"),
    L: specs.length,
    tieWordEmbeddings: raw.bool("tie_word_embeddings", true),
    maxPositions: null,
    routerAuxLossCoef: moe ? moe.num("aux_loss_coef", 0.001) : 0,
    layers,
    eps: raw.num("norm_eps", 1e-5),
    initStd: raw.num("initializer_range", 0.02),
    raw,
  };
}

export class NativeBlock extends Module {
  mixer_norm: RMSNorm;
  mixer: Module;
  ffn_norm: RMSNorm | null;
  ffn: Module | null;
  private readonly mixerPart: MixerPart;
  private readonly ffnPart: FfnPart | null;

  constructor(ctx: ModuleContext, cfg: NativeConfig, layer: number) {
    super();
    const spec = cfg.layers[layer];
    const part = (name: string) => ({
      ctx,
      C: cfg.C,
      eps: cfg.eps,
      initStd: cfg.initStd,
      section: cfg.raw.object(name) ?? new RawConfig(`${cfg.raw.source} (${name})`, {}),
      layer,
    });
    this.mixer_norm = new RMSNorm(ctx, cfg.C, cfg.eps);
    this.mixerPart = makeMixer(spec.mixer, part(spec.mixer), cfg.raw.source);
    this.mixer = this.mixerPart.module;
    this.ffnPart = makeFfn(spec.ffn, part(spec.ffn), cfg.raw.source);
    this.ffn_norm = this.ffnPart ? new RMSNorm(ctx, cfg.C, cfg.eps) : null;
    this.ffn = this.ffnPart?.module ?? null;
  }

  forward(x: Tensor, pos0: number, state?: LayerState, router?: RouterLog): Tensor {
    let h = ops.add(x, this.mixerPart.forward(this.mixer_norm.forward(x), pos0, state)); // (B, T, C)
    if (this.ffnPart) h = ops.add(h, this.ffnPart.forward(this.ffn_norm!.forward(h), router)); // (B, T, C)
    return h;
  }

  allocateState(be: Backend, batch: number, capacity: number): LayerState {
    return this.mixerPart.allocateState(be, batch, capacity);
  }
}

export class NativeModel extends Module {
  embed_tokens: Embedding;
  layers: NativeBlock[];
  norm: RMSNorm;

  constructor(ctx: ModuleContext, cfg: NativeConfig) {
    super();
    this.embed_tokens = new Embedding(ctx, cfg.V, cfg.C, normalInit(cfg.initStd));
    this.layers = cfg.layers.map((_, i) => new NativeBlock(ctx, cfg, i));
    this.norm = new RMSNorm(ctx, cfg.C, cfg.eps);
  }
}

export class SeqlabForCausalLM extends CausalLM {
  readonly backend: Backend;
  model: NativeModel;
  lm_head: Linear;

  constructor(
    ctx: ModuleContext,
    readonly config: NativeConfig,
  ) {
    super();
    this.backend = ctx.backend;
    this.model = new NativeModel(ctx, config);
    this.lm_head = new Linear(ctx, config.C, config.V, false, normalInit(config.initStd));
    if (config.tieWordEmbeddings) this.lm_head.weight = this.model.embed_tokens.weight;
  }

  forward(ids: Tensor, opts: ForwardOptions = {}): ForwardResult {
    const h = this.model.embed_tokens.forward(ids); // (B, T, C)
    return runStack(h, this.model.layers, (x) => this.model.norm.forward(x), (x) => this.lm_head.forward(x), opts);
  }

  allocateState(batch: number, capacity = 256): InferenceState {
    return new InferenceState(
      batch,
      this.model.layers.map((l) => l.allocateState(this.backend, batch, capacity)),
    );
  }
}
