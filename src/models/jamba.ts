/**
 * JambaForCausalLM (Lieber et al. 2024; transformers models/jamba): a hybrid that interleaves
 * attention and Mamba layers and puts a mixture-of-experts FFN on some of them.
 *
 *   layer i mixes with attention when i % attn_layer_period == attn_layer_offset, else Mamba
 *   layer i's FFN is a top-k MoE when i % expert_layer_period == expert_layer_offset, else a dense MLP
 *   block: h = h + mixer(input_layernorm(h));  h = h + feed_forward(pre_ff_layernorm(h))
 *
 * HF behaviour followed here:
 * - attention has no positional encoding (the Mamba layers carry order), scale 1 / sqrt(head_dim);
 * - the Mamba mixer normalises dt, B and C (nn/jamba_mamba.ts); mamba_dt_rank "auto" is
 *   ceil(hidden_size / 16);
 * - the router takes the softmax over all experts and keeps the top-k probabilities as they are
 *   (JambaSparseMoeBlock.route_tokens_to_experts: no renormalisation, unlike Mixtral);
 * - a layer is sparse only when its expert count (num_experts on the grid, else 1) exceeds 1;
 * - output_hidden_states: the embeddings, each block's output, the last one after final_layernorm;
 * - the load-balancing loss (MixtralForCausalLM's) covers the routers of the sparse layers.
 * Module names are transformers' runtime names; the file's per-expert tensors are stacked on load
 * (checkpoint_names.ts, JAMBA_NAMES).
 */
import type { Tensor } from "../tensor/tensor.js";
import type { Backend } from "../backend/backend.js";
import type { UnaryOp } from "../backend/kernels.js";
import * as ops from "../ops/index.js";
import { Module, ModuleContext, normalInit } from "../nn/module.js";
import { Embedding, Linear, RMSNorm } from "../nn/layers.js";
import { Attention, type AttentionConfig } from "../nn/attention.js";
import { GatedMLP } from "../nn/mlp.js";
import { Experts, TopKRouter, sparseMoe, type MoeConfig, type RouterLog } from "../nn/moe.js";
import type { MambaMixerConfig } from "../nn/mamba.js";
import { JambaMambaMixer } from "../nn/jamba_mamba.js";
import { InferenceState, type AttentionState, type LayerState, type MambaState } from "../nn/state.js";
import type { RawConfig } from "../io/config.js";
import { CausalLM, paddingIdxFromConfig, type ForwardOptions, type ForwardResult, type LMConfig } from "./causal_lm.js";
import { activationFromConfig } from "./activations.js";
import { dtInitFromConfig } from "./mamba.js";
import { runStack } from "./stack.js";

export type JambaLayerType = "attention" | "mamba";

/** A layer grid: layer i is on it when i % period == offset. */
export interface LayerGrid {
  period: number;
  offset: number;
}

export interface JambaConfig extends LMConfig {
  attention: AttentionConfig;
  mamba: MambaMixerConfig;
  /** the experts of the sparse layers (E, k, F = intermediate_size, no renormalisation) */
  moe: MoeConfig;
  /** dense MLP width (also each expert's) */
  F: number;
  attnGrid: LayerGrid;
  expertGrid: LayerGrid;
  /** per layer: the mixer (HF layers_block_type) and whether the FFN is sparse */
  layerTypes: JambaLayerType[];
  sparse: boolean[];
  /** nn.Embedding padding_idx (pad_token_id): the row that gets no gradient */
  paddingIdx: number | null;
  eps: number;
  act: UnaryOp;
  initStd: number;
}

/** Defaults are JambaConfig's (transformers 5.17). */
export function parseJambaConfig(raw: RawConfig): JambaConfig {
  const V = raw.int("vocab_size", 65536);
  const C = raw.int("hidden_size", 4096);
  const L = raw.int("num_hidden_layers", 32);
  const H = raw.int("num_attention_heads", 32);
  // HF: an explicit null means one KV head per query head
  const G = raw.json.num_key_value_heads === null ? H : raw.int("num_key_value_heads", 8);
  raw.require(H % G === 0, `num_attention_heads ${H} must be a multiple of num_key_value_heads ${G}`);
  if (!raw.has("head_dim")) raw.require(C % H === 0, `hidden_size ${C} must be a multiple of num_attention_heads ${H}`);
  const K = raw.int("head_dim", C / H);
  // attribute_map: num_local_experts is another name for num_experts
  const E = raw.has("num_experts") ? raw.int("num_experts") : raw.int("num_local_experts", 16);
  const k = raw.int("num_experts_per_tok", 2);
  const attnGrid = layerGrid(raw, "attn_layer", 8, 4);
  const expertGrid = layerGrid(raw, "expert_layer", 2, 1);
  const layerTypes = Array.from({ length: L }, (_, i): JambaLayerType => (onGrid(attnGrid, i) ? "attention" : "mamba"));
  const sparse = Array.from({ length: L }, (_, i) => E > 1 && onGrid(expertGrid, i));
  if (sparse.some(Boolean)) raw.require(k <= E, `num_experts_per_tok ${k} exceeds num_experts ${E}`);
  const eps = raw.num("rms_norm_eps", 1e-6);
  const act = activationFromConfig(raw, "hidden_act", "silu");
  const initStd = raw.num("initializer_range", 0.02);
  const F = raw.int("intermediate_size", 14336);
  return {
    modelType: "jamba",
    V,
    C,
    L,
    tieWordEmbeddings: raw.bool("tie_word_embeddings", false),
    maxPositions: null,
    routerAuxLossCoef: sparse.some(Boolean) ? raw.num("router_aux_loss_coef", 0.001) : 0,
    attention: { C, H, G, K, qkvBias: false, oBias: false, rope: null, initStd },
    mamba: {
      C,
      D: raw.int("mamba_expand", 2) * C,
      N: raw.int("mamba_d_state", 16),
      R: raw.json.mamba_dt_rank === "auto" || !raw.has("mamba_dt_rank") ? Math.ceil(C / 16) : raw.int("mamba_dt_rank"),
      W: raw.int("mamba_d_conv", 4),
      useBias: raw.bool("mamba_proj_bias", false),
      useConvBias: raw.bool("mamba_conv_bias", true),
      act,
      gateAct: "silu",
      selective: true,
      initStd,
      dtInit: dtInitFromConfig(raw),
    },
    moe: { C, E, F, k, normalize: false, act, initStd },
    F,
    attnGrid,
    expertGrid,
    layerTypes,
    sparse,
    paddingIdx: paddingIdxFromConfig(raw, V, 0),
    eps,
    act,
    initStd,
  };
}

function layerGrid(raw: RawConfig, prefix: string, period: number, offset: number): LayerGrid {
  const g = { period: raw.int(`${prefix}_period`, period), offset: raw.int(`${prefix}_offset`, offset, 0) };
  raw.require(g.offset < g.period, `${prefix}_offset ${g.offset} must be smaller than ${prefix}_period ${g.period}`);
  return g;
}

export function onGrid(g: LayerGrid, i: number): boolean {
  return i % g.period === g.offset;
}

/** Top-k routed experts, no shared expert (HF JambaSparseMoeBlock). */
export class JambaSparseMoeBlock extends Module {
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

/** HF JambaAttentionDecoderLayer and JambaMambaDecoderLayer: one of `self_attn`, `mamba`. */
export class JambaDecoderLayer extends Module {
  self_attn: Attention | undefined;
  mamba: JambaMambaMixer | undefined;
  feed_forward: JambaSparseMoeBlock | GatedMLP;
  input_layernorm: RMSNorm;
  pre_ff_layernorm: RMSNorm;

  constructor(ctx: ModuleContext, cfg: JambaConfig, i: number) {
    super();
    const attention = cfg.layerTypes[i] === "attention";
    this.self_attn = attention ? new Attention(ctx, cfg.attention) : undefined;
    this.mamba = attention ? undefined : new JambaMambaMixer(ctx, cfg.mamba, cfg.eps);
    this.feed_forward = cfg.sparse[i] ? new JambaSparseMoeBlock(ctx, cfg.moe) : new GatedMLP(ctx, cfg.C, cfg.F, false, cfg.act, cfg.initStd);
    this.input_layernorm = new RMSNorm(ctx, cfg.C, cfg.eps);
    this.pre_ff_layernorm = new RMSNorm(ctx, cfg.C, cfg.eps);
  }

  forward(x: Tensor, pos0: number, state?: LayerState, router?: RouterLog): Tensor {
    const n = this.input_layernorm.forward(x); // (B, T, C)
    const mixed = this.mamba
      ? this.mamba.forward(n, state as MambaState | undefined)
      : this.self_attn!.forward(n, pos0, state as AttentionState | undefined); // (B, T, C)
    const h = ops.add(x, mixed); // (B, T, C)
    const m = this.pre_ff_layernorm.forward(h); // (B, T, C)
    const ffn = this.feed_forward instanceof JambaSparseMoeBlock ? this.feed_forward.forward(m, router) : this.feed_forward.forward(m); // (B, T, C)
    return ops.add(h, ffn); // (B, T, C)
  }

  allocateState(be: Backend, batch: number, capacity: number): LayerState {
    return this.mamba ? this.mamba.allocateState(batch) : this.self_attn!.allocateState(be, batch, capacity);
  }
}

export class JambaModel extends Module {
  embed_tokens: Embedding;
  layers: JambaDecoderLayer[];
  final_layernorm: RMSNorm;

  constructor(ctx: ModuleContext, cfg: JambaConfig) {
    super();
    this.embed_tokens = new Embedding(ctx, cfg.V, cfg.C, normalInit(cfg.initStd), cfg.paddingIdx);
    this.layers = Array.from({ length: cfg.L }, (_, i) => new JambaDecoderLayer(ctx, cfg, i));
    this.final_layernorm = new RMSNorm(ctx, cfg.C, cfg.eps);
  }
}

export class JambaForCausalLM extends CausalLM {
  readonly backend: Backend;
  model: JambaModel;
  lm_head: Linear;

  constructor(
    ctx: ModuleContext,
    readonly config: JambaConfig,
  ) {
    super();
    this.backend = ctx.backend;
    this.model = new JambaModel(ctx, config);
    this.lm_head = new Linear(ctx, config.C, config.V, false, normalInit(config.initStd));
    if (config.tieWordEmbeddings) this.lm_head.weight = this.model.embed_tokens.weight;
  }

  forward(ids: Tensor, opts: ForwardOptions = {}): ForwardResult {
    const m = this.model;
    const h = m.embed_tokens.forward(ids); // (B, T, C)
    return runStack(h, m.layers, (x) => m.final_layernorm.forward(x), (x) => this.lm_head.forward(x), opts);
  }

  /** Mamba layers get a fixed-size state, attention layers a KV cache of `capacity` rows (it grows). */
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
