/**
 * Qwen3NextForCausalLM (transformers models/qwen3_next): a hybrid of Gated DeltaNet layers
 * ("linear_attention") and output-gated full attention layers ("full_attention"), each followed
 * by a sparse MoE FFN with a sigmoid-gated shared expert (or a dense MLP on mlp_only_layers and
 * off the decoder_sparse_step grid). Every RMSNorm outside the DeltaNet output norm is
 * zero-centred, (1 + w). Parameter names follow transformers' runtime names; the checkpoint's
 * per-expert tensors are stacked on load (checkpoint_names.ts, QWEN2_MOE_NAMES).
 */
import type { Tensor } from "../tensor/tensor.js";
import type { Backend } from "../backend/backend.js";
import type { UnaryOp } from "../backend/kernels.js";
import * as ops from "../ops/index.js";
import { Module, ModuleContext, normalInit } from "../nn/module.js";
import { Embedding, Linear, RMSNorm } from "../nn/layers.js";
import { GatedMLP } from "../nn/mlp.js";
import { Experts, TopKRouter, sparseMoe, type MoeConfig, type RouterLog } from "../nn/moe.js";
import { GatedDeltaNet, type GatedDeltaNetConfig } from "../nn/deltanet.js";
import { GatedAttention, type GatedAttentionConfig } from "../nn/gated_attention.js";
import { InferenceState, type AttentionState, type DeltaNetState, type LayerState } from "../nn/state.js";
import type { RawConfig } from "../io/config.js";
import { CausalLM, paddingIdxFromConfig, type ForwardOptions, type ForwardResult, type LMConfig } from "./causal_lm.js";
import { ropeFromConfig } from "./rope_config.js";
import { activationFromConfig } from "./activations.js";
import { runStack } from "./stack.js";

export type Qwen3NextLayerType = "linear_attention" | "full_attention";
const LAYER_TYPES: readonly Qwen3NextLayerType[] = ["linear_attention", "full_attention"];
/** transformers' remap_legacy_layer_types */
const LEGACY_LAYER_TYPES: Record<string, Qwen3NextLayerType> = { mamba: "linear_attention", attention: "full_attention" };

export interface Qwen3NextConfig extends LMConfig {
  attention: GatedAttentionConfig;
  deltanet: GatedDeltaNetConfig;
  /** experts, their width and routing (E = 0: no MoE layer) */
  moe: MoeConfig;
  /** shared expert width and dense MLP width */
  sharedF: number;
  F: number;
  layerTypes: Qwen3NextLayerType[];
  /** per layer: a sparse MoE block (true) or a dense MLP */
  sparse: boolean[];
  /** nn.Embedding padding_idx (pad_token_id): the row that gets no gradient */
  paddingIdx: number | null;
  eps: number;
  act: UnaryOp;
  initStd: number;
}

/** Defaults are Qwen3NextConfig's (transformers 5.17). */
export function parseQwen3NextConfig(raw: RawConfig): Qwen3NextConfig {
  const V = raw.int("vocab_size", 151936);
  const C = raw.int("hidden_size", 2048);
  const L = raw.int("num_hidden_layers", 48);
  const H = raw.int("num_attention_heads", 16);
  const G = raw.int("num_key_value_heads", 2);
  raw.require(H % G === 0, `num_attention_heads ${H} must be a multiple of num_key_value_heads ${G}`);
  const K = raw.int("head_dim", 256);
  const Hk = raw.int("linear_num_key_heads", 16);
  const Hv = raw.int("linear_num_value_heads", 32);
  raw.require(Hv % Hk === 0, `linear_num_value_heads ${Hv} must be a multiple of linear_num_key_heads ${Hk}`);
  const E = raw.int("num_experts", 512, 0);
  const k = raw.int("num_experts_per_tok", 10);
  raw.require(E === 0 || k <= E, `num_experts_per_tok ${k} exceeds num_experts ${E}`);
  const eps = raw.num("rms_norm_eps", 1e-6);
  const act = activationFromConfig(raw, "hidden_act", "silu");
  const initStd = raw.num("initializer_range", 0.02);
  const layerTypes = parseLayerTypes(raw, L);
  return {
    modelType: "qwen3_next",
    V,
    C,
    L,
    tieWordEmbeddings: raw.bool("tie_word_embeddings", false),
    maxPositions: null,
    routerAuxLossCoef: E > 0 ? raw.num("router_aux_loss_coef", 0.001) : 0,
    attention: { C, H, G, K, bias: raw.bool("attention_bias", false), rope: ropeFromConfig(raw, K, 0.25), eps, initStd },
    deltanet: {
      C,
      H: Hv,
      G: Hk,
      Dk: raw.int("linear_key_head_dim", 128),
      Dv: raw.int("linear_value_head_dim", 128),
      W: raw.int("linear_conv_kernel_dim", 4),
      act,
      eps,
      chunk: 64,
      initStd,
    },
    moe: { C, E, F: raw.int("moe_intermediate_size", 512), k, normalize: raw.bool("norm_topk_prob", true), act, initStd },
    sharedF: raw.int("shared_expert_intermediate_size", 512),
    F: raw.int("intermediate_size", 5632),
    layerTypes,
    sparse: sparseLayers(raw, L, E),
    paddingIdx: paddingIdxFromConfig(raw, V, null),
    eps,
    act,
    initStd,
  };
}

/** layer_types, or every full_attention_interval-th layer full attention (HF default 4). */
function parseLayerTypes(raw: RawConfig, L: number): Qwen3NextLayerType[] {
  if (!raw.has("layer_types")) {
    const interval = raw.int("full_attention_interval", 4);
    return Array.from({ length: L }, (_, i) => ((i + 1) % interval === 0 ? "full_attention" : "linear_attention"));
  }
  const types = raw.strings("layer_types").map((t) => LEGACY_LAYER_TYPES[t] ?? t);
  raw.require(types.length === L, `layer_types has ${types.length} entries for num_hidden_layers ${L}`);
  for (const t of types) raw.require(LAYER_TYPES.includes(t as Qwen3NextLayerType), `layer type "${t}" must be one of ${LAYER_TYPES.join(", ")}`);
  return types as Qwen3NextLayerType[];
}

/** HF: a layer is sparse unless listed in mlp_only_layers, when experts exist and (i + 1) % decoder_sparse_step == 0. */
function sparseLayers(raw: RawConfig, L: number, E: number): boolean[] {
  const mlpOnly = raw.ints("mlp_only_layers", []);
  for (const i of mlpOnly) raw.require(i >= 0 && i < L, `mlp_only_layers entry ${i} is not a layer index in [0, ${L})`);
  const step = raw.int("decoder_sparse_step", 1);
  return Array.from({ length: L }, (_, i) => !mlpOnly.includes(i) && E > 0 && (i + 1) % step === 0);
}

/** Routed experts plus a shared expert scaled by sigmoid(shared_expert_gate(x)). */
export class Qwen3NextSparseMoeBlock extends Module {
  gate: TopKRouter;
  experts: Experts;
  shared_expert: GatedMLP;
  shared_expert_gate: Linear;

  constructor(ctx: ModuleContext, cfg: Qwen3NextConfig) {
    super();
    this.gate = new TopKRouter(ctx, cfg.moe);
    this.experts = new Experts(ctx, cfg.moe);
    this.shared_expert = new GatedMLP(ctx, cfg.C, cfg.sharedF, false, cfg.act, cfg.initStd);
    this.shared_expert_gate = new Linear(ctx, cfg.C, 1, false, normalInit(cfg.initStd));
  }

  /** x (B, T, C) -> (B, T, C) */
  forward(x: Tensor, router?: RouterLog): Tensor {
    const routed = sparseMoe(x, this.gate, this.experts, router); // (B, T, C)
    const flat = x.reshape([-1, x.dim(-1)]); // (N, C)
    const shared = ops.scaleRows(this.shared_expert.forward(flat), ops.sigmoid(this.shared_expert_gate.forward(flat))); // (N, C)
    return ops.add(routed, shared.reshape(x.shape)); // (B, T, C)
  }
}

export class Qwen3NextDecoderLayer extends Module {
  linear_attn: GatedDeltaNet | undefined;
  self_attn: GatedAttention | undefined;
  mlp: Qwen3NextSparseMoeBlock | GatedMLP;
  input_layernorm: RMSNorm;
  post_attention_layernorm: RMSNorm;

  constructor(ctx: ModuleContext, cfg: Qwen3NextConfig, i: number) {
    super();
    const linear = cfg.layerTypes[i] === "linear_attention";
    this.linear_attn = linear ? new GatedDeltaNet(ctx, cfg.deltanet) : undefined;
    this.self_attn = linear ? undefined : new GatedAttention(ctx, cfg.attention);
    this.mlp = cfg.sparse[i] ? new Qwen3NextSparseMoeBlock(ctx, cfg) : new GatedMLP(ctx, cfg.C, cfg.F, false, cfg.act, cfg.initStd);
    this.input_layernorm = new RMSNorm(ctx, cfg.C, cfg.eps, 1);
    this.post_attention_layernorm = new RMSNorm(ctx, cfg.C, cfg.eps, 1);
  }

  forward(x: Tensor, pos0: number, state?: LayerState, router?: RouterLog): Tensor {
    const n = this.input_layernorm.forward(x); // (B, T, C)
    const mixed = this.linear_attn
      ? this.linear_attn.forward(n, state as DeltaNetState | undefined)
      : this.self_attn!.forward(n, pos0, state as AttentionState | undefined); // (B, T, C)
    const h = ops.add(x, mixed); // (B, T, C)
    const m = this.post_attention_layernorm.forward(h); // (B, T, C)
    const ffn = this.mlp instanceof Qwen3NextSparseMoeBlock ? this.mlp.forward(m, router) : this.mlp.forward(m); // (B, T, C)
    return ops.add(h, ffn); // (B, T, C)
  }

  allocateState(be: Backend, batch: number, capacity: number): LayerState {
    return this.linear_attn ? this.linear_attn.allocateState(be, batch) : this.self_attn!.allocateState(be, batch, capacity);
  }
}

export class Qwen3NextModel extends Module {
  embed_tokens: Embedding;
  layers: Qwen3NextDecoderLayer[];
  norm: RMSNorm;

  constructor(ctx: ModuleContext, cfg: Qwen3NextConfig) {
    super();
    this.embed_tokens = new Embedding(ctx, cfg.V, cfg.C, normalInit(cfg.initStd), cfg.paddingIdx);
    this.layers = Array.from({ length: cfg.L }, (_, i) => new Qwen3NextDecoderLayer(ctx, cfg, i));
    this.norm = new RMSNorm(ctx, cfg.C, cfg.eps, 1);
  }
}

export class Qwen3NextForCausalLM extends CausalLM {
  readonly backend: Backend;
  model: Qwen3NextModel;
  lm_head: Linear;

  constructor(
    ctx: ModuleContext,
    readonly config: Qwen3NextConfig,
  ) {
    super();
    this.backend = ctx.backend;
    this.model = new Qwen3NextModel(ctx, config);
    this.lm_head = new Linear(ctx, config.C, config.V, false, normalInit(config.initStd));
    if (config.tieWordEmbeddings) this.lm_head.weight = this.model.embed_tokens.weight;
  }

  forward(ids: Tensor, opts: ForwardOptions = {}): ForwardResult {
    const h = this.model.embed_tokens.forward(ids); // (B, T, C)
    return runStack(h, this.model.layers, (x) => this.model.norm.forward(x), (x) => this.lm_head.forward(x), opts);
  }

  /** DeltaNet layers get a fixed-size state, attention layers a KV cache of `capacity` rows (it grows). */
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
