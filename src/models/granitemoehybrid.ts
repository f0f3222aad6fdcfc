/**
 * GraniteMoeHybridForCausalLM (IBM Granite 4.0; transformers models/granitemoehybrid): Mamba-2
 * layers ("linear_attention" in layer_types, "mamba" in older configs) and attention layers
 * ("full_attention" / "attention"), each followed by a top-k MoE plus an always-on shared MLP.
 *
 *   h = embed(ids) * embedding_multiplier
 *   h = h + residual_multiplier * mixer(input_layernorm(h))
 *   m = post_attention_layernorm(h);  h = h + residual_multiplier * (block_sparse_moe(m) + shared_mlp(m))
 *   logits = lm_head(norm(h)) / logits_scaling
 *
 * HF behaviour followed here:
 * - attention scores are scaled by attention_multiplier instead of 1 / sqrt(head_dim); queries and
 *   keys rotate (RoPE from rope_parameters) only when position_embedding_type is "rope";
 * - the router picks the top-k logits and softmaxes over those k alone, which is the top-k of the
 *   full softmax renormalised (norm_topk_prob) — the same choice and the same weights;
 * - the Mamba-2 mixer is HF's (BambaMixer): gated RMSNorm over the whole inner width, dt clamped to
 *   time_step_limit (HF's one-token decoding path skips that clamp; with the default (0, inf) the
 *   two agree, and seqlab clamps in both paths);
 * - num_local_experts 0 leaves only the shared MLP;
 * - output_hidden_states: the scaled embeddings, each block's output, the last one after `norm`.
 * The load-balancing loss is the Switch-Transformer loss over the routers' full softmax, weighted by
 * router_aux_loss_coef when training (transformers 5.17 declares that loss for this class, but its
 * _can_record_outputs records no router logits, so HF never computes it).
 * Module names are transformers' runtime names (`block_sparse_moe.router.weight`,
 * `block_sparse_moe.experts.gate_up_proj`); the file's older names are renamed on load
 * (checkpoint_names.ts, GRANITE_MOE_NAMES).
 */
import type { Tensor } from "../tensor/tensor.js";
import type { Backend } from "../backend/backend.js";
import type { UnaryOp } from "../backend/kernels.js";
import * as ops from "../ops/index.js";
import { Module, ModuleContext, normalInit } from "../nn/module.js";
import { Embedding, Linear, RMSNorm } from "../nn/layers.js";
import { Attention, type AttentionConfig } from "../nn/attention.js";
import { Experts, FusedGatedMLP, TopKRouter, sparseMoe, type MoeConfig, type RouterLog } from "../nn/moe.js";
import { Mamba2Mixer, type Mamba2MixerConfig } from "../nn/mamba2.js";
import { InferenceState, type AttentionState, type LayerState, type Mamba2State } from "../nn/state.js";
import type { RawConfig } from "../io/config.js";
import { CausalLM, paddingIdxFromConfig, type ForwardOptions, type ForwardResult, type LMConfig } from "./causal_lm.js";
import { activationFromConfig } from "./activations.js";
import { ropeFromConfig } from "./rope_config.js";
import { dtInitFromConfig } from "./mamba.js";
import { runStack } from "./stack.js";

export type GraniteLayerType = "linear_attention" | "full_attention";
const LAYER_TYPES: readonly GraniteLayerType[] = ["linear_attention", "full_attention"];
/** transformers' remap_legacy_layer_types */
const LEGACY_LAYER_TYPES: Record<string, GraniteLayerType> = { mamba: "linear_attention", attention: "full_attention" };

export interface GraniteMoeHybridConfig extends LMConfig {
  attention: AttentionConfig;
  mamba: Mamba2MixerConfig;
  /** routed experts (null: num_local_experts 0, the shared MLP alone) and the shared MLP's width */
  moe: MoeConfig | null;
  sharedF: number;
  layerTypes: GraniteLayerType[];
  embeddingMultiplier: number;
  residualMultiplier: number;
  logitsScaling: number;
  /** nn.Embedding padding_idx (pad_token_id): the row that gets no gradient */
  paddingIdx: number | null;
  eps: number;
  act: UnaryOp;
  initStd: number;
}

/** Defaults are GraniteMoeHybridConfig's (transformers 5.17). */
export function parseGraniteMoeHybridConfig(raw: RawConfig): GraniteMoeHybridConfig {
  const V = raw.int("vocab_size", 32000);
  const C = raw.int("hidden_size", 4096);
  const L = raw.int("num_hidden_layers", 32);
  const H = raw.int("num_attention_heads", 32);
  const G = raw.int("num_key_value_heads", H);
  raw.require(H % G === 0, `num_attention_heads ${H} must be a multiple of num_key_value_heads ${G}`);
  if (!raw.has("head_dim")) raw.require(C % H === 0, `hidden_size ${C} must be a multiple of num_attention_heads ${H}`);
  const K = raw.int("head_dim", C / H);
  const E = raw.int("num_local_experts", 8, 0);
  const k = raw.int("num_experts_per_tok", 2);
  raw.require(E === 0 || k <= E, `num_experts_per_tok ${k} exceeds num_local_experts ${E}`);
  const rope = raw.oneOf("position_embedding_type", ["rope", "nope"], "nope") === "rope";
  if (rope) raw.require(K % 2 === 0, `head_dim ${K} must be even for rotary embeddings`);
  const eps = raw.num("rms_norm_eps", 1e-6);
  const act = activationFromConfig(raw, "hidden_act", "silu");
  const initStd = raw.num("initializer_range", 0.02);
  const bias = raw.bool("attention_bias", false);
  return {
    modelType: "granitemoehybrid",
    V,
    C,
    L,
    tieWordEmbeddings: raw.bool("tie_word_embeddings", false),
    maxPositions: null,
    routerAuxLossCoef: E > 0 ? raw.num("router_aux_loss_coef", 0.001) : 0,
    attention: {
      C,
      H,
      G,
      K,
      qkvBias: bias,
      oBias: bias,
      rope: rope ? ropeFromConfig(raw, K) : null,
      scale: raw.num("attention_multiplier", 1),
      initStd,
    },
    mamba: parseMixer(raw, C, eps, act, initStd),
    moe: E > 0 ? { C, E, F: raw.int("intermediate_size", 11008), k, normalize: true, act, initStd } : null,
    sharedF: raw.int("shared_intermediate_size", 1024),
    layerTypes: parseLayerTypes(raw, L),
    embeddingMultiplier: raw.num("embedding_multiplier", 1),
    residualMultiplier: raw.num("residual_multiplier", 1),
    logitsScaling: raw.num("logits_scaling", 1),
    paddingIdx: paddingIdxFromConfig(raw, V, null),
    eps,
    act,
    initStd,
  };
}

/** The Mamba-2 mixer from the mamba_* keys; mamba_d_head "auto" is the inner width over the heads. */
function parseMixer(raw: RawConfig, C: number, eps: number, act: UnaryOp, initStd: number): Mamba2MixerConfig {
  const D = raw.int("mamba_expand", 2) * C;
  const H = raw.int("mamba_n_heads", 128);
  raw.require(D % H === 0, `mamba_n_heads ${H} must divide mamba_expand * hidden_size = ${D}`);
  const P = raw.json.mamba_d_head === "auto" || !raw.has("mamba_d_head") ? D / H : raw.int("mamba_d_head");
  raw.require(P * H === D, `mamba_d_head ${P} times mamba_n_heads ${H} must equal mamba_expand * hidden_size = ${D}`);
  const G = raw.int("mamba_n_groups", 1);
  raw.require(H % G === 0, `mamba_n_groups ${G} must divide mamba_n_heads ${H}`);
  const limit = raw.floats("time_step_limit", [0, Infinity]);
  raw.require(
    limit.length === 2 && !limit.some(Number.isNaN) && limit[0] <= limit[1],
    `time_step_limit ${JSON.stringify(raw.json.time_step_limit)} must be two numbers [min, max] with min <= max`,
  );
  return {
    C,
    D,
    H,
    P,
    N: raw.int("mamba_d_state", 256),
    G,
    W: raw.int("mamba_d_conv", 4),
    chunk: raw.int("mamba_chunk_size", 256),
    dtLimit: [limit[0], limit[1]],
    useBias: raw.bool("mamba_proj_bias", false),
    useConvBias: raw.bool("mamba_conv_bias", true),
    act,
    eps,
    normGroupSize: D,
    initStd,
    dtInit: dtInitFromConfig(raw),
  };
}

/** layer_types (legacy names remapped), or every layer Mamba-2 when absent (HF default). */
function parseLayerTypes(raw: RawConfig, L: number): GraniteLayerType[] {
  if (!raw.has("layer_types")) return new Array<GraniteLayerType>(L).fill("linear_attention");
  const types = raw.strings("layer_types").map((t) => LEGACY_LAYER_TYPES[t] ?? t);
  raw.require(types.length === L, `layer_types has ${types.length} entries for num_hidden_layers ${L}`);
  for (const t of types) raw.require(LAYER_TYPES.includes(t as GraniteLayerType), `layer type "${t}" must be one of ${LAYER_TYPES.join(", ")} (or mamba, attention)`);
  return types as GraniteLayerType[];
}

/** Top-k routed experts, weights renormalised over the k chosen (HF GraniteMoeHybridMoE). */
export class GraniteMoeHybridMoE extends Module {
  router: TopKRouter;
  experts: Experts;

  constructor(ctx: ModuleContext, cfg: MoeConfig) {
    super();
    this.router = new TopKRouter(ctx, cfg);
    this.experts = new Experts(ctx, cfg);
  }

  /** x (B, T, C) -> (B, T, C) */
  forward(x: Tensor, router?: RouterLog): Tensor {
    return sparseMoe(x, this.router, this.experts, router);
  }
}

export class GraniteMoeHybridDecoderLayer extends Module {
  input_layernorm: RMSNorm;
  post_attention_layernorm: RMSNorm;
  block_sparse_moe: GraniteMoeHybridMoE | undefined;
  shared_mlp: FusedGatedMLP;
  mamba: Mamba2Mixer | undefined;
  self_attn: Attention | undefined;
  private readonly residualMultiplier: number;

  constructor(ctx: ModuleContext, cfg: GraniteMoeHybridConfig, i: number) {
    super();
    const mamba = cfg.layerTypes[i] === "linear_attention";
    this.input_layernorm = new RMSNorm(ctx, cfg.C, cfg.eps);
    this.post_attention_layernorm = new RMSNorm(ctx, cfg.C, cfg.eps);
    this.block_sparse_moe = cfg.moe ? new GraniteMoeHybridMoE(ctx, cfg.moe) : undefined;
    this.shared_mlp = new FusedGatedMLP(ctx, cfg.C, cfg.sharedF, cfg.act, cfg.initStd);
    this.mamba = mamba ? new Mamba2Mixer(ctx, cfg.mamba) : undefined;
    this.self_attn = mamba ? undefined : new Attention(ctx, cfg.attention);
    this.residualMultiplier = cfg.residualMultiplier;
  }

  forward(x: Tensor, pos0: number, state?: LayerState, router?: RouterLog): Tensor {
    const n = this.input_layernorm.forward(x); // (B, T, C)
    const mixed = this.mamba
      ? this.mamba.forward(n, state as Mamba2State | undefined)
      : this.self_attn!.forward(n, pos0, state as AttentionState | undefined); // (B, T, C)
    const h = ops.add(x, ops.scale(mixed, this.residualMultiplier)); // (B, T, C)
    const m = this.post_attention_layernorm.forward(h); // (B, T, C)
    const shared = this.shared_mlp.forward(m); // (B, T, C)
    const ffn = this.block_sparse_moe ? ops.add(this.block_sparse_moe.forward(m, router), shared) : shared; // (B, T, C)
    return ops.add(h, ops.scale(ffn, this.residualMultiplier)); // (B, T, C)
  }

  allocateState(be: Backend, batch: number, capacity: number): LayerState {
    return this.mamba ? this.mamba.allocateState(batch) : this.self_attn!.allocateState(be, batch, capacity);
  }
}

export class GraniteMoeHybridModel extends Module {
  embed_tokens: Embedding;
  layers: GraniteMoeHybridDecoderLayer[];
  norm: RMSNorm;

  constructor(ctx: ModuleContext, cfg: GraniteMoeHybridConfig) {
    super();
    this.embed_tokens = new Embedding(ctx, cfg.V, cfg.C, normalInit(cfg.initStd), cfg.paddingIdx);
    this.layers = Array.from({ length: cfg.L }, (_, i) => new GraniteMoeHybridDecoderLayer(ctx, cfg, i));
    this.norm = new RMSNorm(ctx, cfg.C, cfg.eps);
  }
}

export class GraniteMoeHybridForCausalLM extends CausalLM {
  readonly backend: Backend;
  model: GraniteMoeHybridModel;
  lm_head: Linear;

  constructor(
    ctx: ModuleContext,
    readonly config: GraniteMoeHybridConfig,
  ) {
    super();
    this.backend = ctx.backend;
    this.model = new GraniteMoeHybridModel(ctx, config);
    this.lm_head = new Linear(ctx, config.C, config.V, false, normalInit(config.initStd));
    if (config.tieWordEmbeddings) this.lm_head.weight = this.model.embed_tokens.weight;
  }

  forward(ids: Tensor, opts: ForwardOptions = {}): ForwardResult {
    const { model: m, config: c } = this;
    const h = ops.scale(m.embed_tokens.forward(ids), c.embeddingMultiplier); // (B, T, C)
    const head = (x: Tensor) => ops.scale(this.lm_head.forward(x), 1 / c.logitsScaling); // (B, T, V)
    return runStack(h, m.layers, (x) => m.norm.forward(x), head, opts);
  }

  /** Mamba-2 layers get a fixed-size state, attention layers a KV cache of `capacity` rows (it grows). */
  allocateState(batch: number, capacity = 256): InferenceState {
    return new InferenceState(
      batch,
      this.model.layers.map((l) => l.allocateState(this.backend, batch, capacity)),
    );
  }

  setAttentionImpl(impl: "tiled" | "naive"): void {
    for (const l of this.model.layers) if (l.self_attn) l.self_attn.impl = impl;
  }
}
