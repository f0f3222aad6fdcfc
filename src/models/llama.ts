/**
 * LlamaForCausalLM (transformers models/llama): pre-norm RMSNorm blocks, rotary attention
 * with grouped KV heads, SwiGLU MLP. Parameter names follow the HF checkpoint.
 */
import type { Tensor } from "../tensor/tensor.js";
import type { Backend } from "../backend/backend.js";
import * as ops from "../ops/index.js";
import { Module, ModuleContext, normalInit } from "../nn/module.js";
import { Embedding, Linear, RMSNorm } from "../nn/layers.js";
import { Attention, type AttentionConfig } from "../nn/attention.js";
import { GatedMLP } from "../nn/mlp.js";
import { InferenceState, type AttentionState, type LayerState } from "../nn/state.js";
import type { RawConfig } from "../io/config.js";
import type { UnaryOp } from "../backend/kernels.js";
import { CausalLM, paddingIdxFromConfig, type ForwardOptions, type ForwardResult, type LMConfig } from "./causal_lm.js";
import { ropeFromConfig } from "./rope_config.js";
import { runStack } from "./stack.js";
import { activationFromConfig } from "./activations.js";

export interface LlamaConfig extends LMConfig {
  attention: AttentionConfig;
  /** FFN width */
  F: number;
  eps: number;
  mlpBias: boolean;
  act: UnaryOp;
  /** nn.Embedding padding_idx (pad_token_id): the row that gets no gradient */
  paddingIdx: number | null;
}

export function parseLlamaConfig(raw: RawConfig): LlamaConfig {
  const V = raw.int("vocab_size");
  const C = raw.int("hidden_size");
  const H = raw.int("num_attention_heads");
  const G = raw.int("num_key_value_heads", H);
  raw.require(H % G === 0, `num_attention_heads ${H} must be a multiple of num_key_value_heads ${G}`);
  if (!raw.has("head_dim")) raw.require(C % H === 0, `hidden_size ${C} must be a multiple of num_attention_heads ${H}`);
  const K = raw.int("head_dim", C / H);
  raw.require(K % 2 === 0, `head_dim ${K} must be even for rotary embeddings`);
  const bias = raw.bool("attention_bias", false);
  const initStd = raw.num("initializer_range", 0.02);
  return {
    modelType: raw.str("model_type"),
    V,
    C,
    L: raw.int("num_hidden_layers"),
    tieWordEmbeddings: raw.bool("tie_word_embeddings", false),
    maxPositions: null,
    attention: { C, H, G, K, qkvBias: bias, oBias: bias, rope: ropeFromConfig(raw, K), initStd },
    F: raw.int("intermediate_size"),
    eps: raw.num("rms_norm_eps", 1e-6),
    mlpBias: raw.bool("mlp_bias", false),
    act: activationFromConfig(raw, "hidden_act", "silu"),
    paddingIdx: paddingIdxFromConfig(raw, V, null),
  };
}

export class LlamaDecoderLayer extends Module {
  input_layernorm: RMSNorm;
  self_attn: Attention;
  post_attention_layernorm: RMSNorm;
  mlp: GatedMLP;

  constructor(ctx: ModuleContext, cfg: LlamaConfig) {
    super();
    this.input_layernorm = new RMSNorm(ctx, cfg.C, cfg.eps);
    this.self_attn = new Attention(ctx, cfg.attention);
    this.post_attention_layernorm = new RMSNorm(ctx, cfg.C, cfg.eps);
    this.mlp = new GatedMLP(ctx, cfg.C, cfg.F, cfg.mlpBias, cfg.act, cfg.attention.initStd);
  }

  forward(x: Tensor, pos0: number, state?: LayerState): Tensor {
    const a = this.self_attn.forward(this.input_layernorm.forward(x), pos0, state as AttentionState | undefined);
    const h = ops.add(x, a); // (B, T, C)
    return ops.add(h, this.mlp.forward(this.post_attention_layernorm.forward(h))); // (B, T, C)
  }
}

export class LlamaModel extends Module {
  embed_tokens: Embedding;
  layers: LlamaDecoderLayer[];
  norm: RMSNorm;

  constructor(ctx: ModuleContext, cfg: LlamaConfig) {
    super();
    this.embed_tokens = new Embedding(ctx, cfg.V, cfg.C, normalInit(cfg.attention.initStd), cfg.paddingIdx);
    this.layers = Array.from({ length: cfg.L }, () => new LlamaDecoderLayer(ctx, cfg));
    this.norm = new RMSNorm(ctx, cfg.C, cfg.eps);
  }
}

export class LlamaForCausalLM extends CausalLM {
  readonly backend: Backend;
  model: LlamaModel;
  lm_head: Linear;

  constructor(
    ctx: ModuleContext,
    readonly config: LlamaConfig,
  ) {
    super();
    this.backend = ctx.backend;
    this.model = new LlamaModel(ctx, config);
    this.lm_head = new Linear(ctx, config.C, config.V, false, normalInit(config.attention.initStd));
    if (config.tieWordEmbeddings) this.lm_head.weight = this.model.embed_tokens.weight;
  }

  forward(ids: Tensor, opts: ForwardOptions = {}): ForwardResult {
    const h = this.model.embed_tokens.forward(ids); // (B, T, C)
    return runStack(h, this.model.layers, (x) => this.model.norm.forward(x), (x) => this.lm_head.forward(x), opts);
  }

  allocateState(batch: number, capacity = 256): InferenceState {
    return new InferenceState(
      batch,
      this.model.layers.map((l) => l.self_attn.allocateState(this.backend, batch, capacity)),
    );
  }

  /** Which attention kernel every layer runs (tiled, or naive for the memory comparison). */
  setAttentionImpl(impl: "tiled" | "naive"): void {
    for (const l of this.model.layers) l.self_attn.impl = impl;
  }
}
