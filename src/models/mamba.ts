/**
 * MambaForCausalLM (transformers models/mamba): embeddings, pre-norm residual blocks around a
 * Mamba mixer, a final RMSNorm and the LM head (tied to the embeddings by default). Names
 * follow the HF checkpoint: backbone.embeddings, backbone.layers.i.{norm, mixer},
 * backbone.norm_f, lm_head. The backbone and block are shared with Mamba-2 (models/mamba2.ts).
 *
 * HF behaviour followed here:
 * - residual_in_fp32: the residual stream is kept in float32; seqlab computes in float32
 *   throughout, so the flag changes nothing and is only validated.
 * - output_hidden_states reports each block's output and then norm_f's, with no embeddings.
 * - the config's intermediate_size, when present, wins over expand * hidden_size (HF stores
 *   extra config keys as attributes after computing intermediate_size).
 * A seqlab-only key `selective` (default true) switches the mixers to the time-invariant
 * ablation of nn/mamba.ts; HF configs never carry it.
 */
import type { Tensor } from "../tensor/tensor.js";
import type { Backend } from "../backend/backend.js";
import * as ops from "../ops/index.js";
import { Module, ModuleContext, normalInit } from "../nn/module.js";
import { Embedding, Linear, RMSNorm } from "../nn/layers.js";
import { MambaMixer, type DtInit, type MambaMixerConfig } from "../nn/mamba.js";
import { InferenceState, type LayerState, type RecurrentState } from "../nn/state.js";
import type { RawConfig } from "../io/config.js";
import { CausalLM, type ForwardOptions, type ForwardResult, type LMConfig } from "./causal_lm.js";
import { activationFromConfig } from "./activations.js";
import { runStack } from "./stack.js";

/** What the shared backbone reads from a Mamba or Mamba-2 config. */
export interface SsmLMConfig extends LMConfig {
  /** RMSNorm epsilon (layer_norm_epsilon) */
  eps: number;
  initStd: number;
}

export interface MambaConfig extends SsmLMConfig {
  mixer: MambaMixerConfig;
}

/** HF time_step_rank: an integer, or "auto" = ceil(hidden_size / 16). */
export function timeStepRank(raw: RawConfig, C: number): number {
  return raw.json.time_step_rank === "auto" || !raw.has("time_step_rank") ? Math.ceil(C / 16) : raw.int("time_step_rank");
}

/** The dt initialisation settings shared by Mamba and Mamba-2 configs. */
export function dtInitFromConfig(raw: RawConfig): DtInit {
  const min = raw.num("time_step_min", 0.001);
  const max = raw.num("time_step_max", 0.1);
  raw.require(min > 0 && max >= min, `time_step_min ${min} and time_step_max ${max} must satisfy 0 < min <= max`);
  return {
    min,
    max,
    floor: raw.num("time_step_floor", 1e-4),
    scale: raw.num("time_step_scale", 1),
    scheme: raw.oneOf("time_step_init_scheme", ["random", "constant"], "random"),
  };
}

/** Defaults from transformers' MambaConfig. */
export function parseMambaConfig(raw: RawConfig): MambaConfig {
  const C = raw.int("hidden_size", 768);
  const expand = raw.num("expand", 2);
  raw.require(expand > 0, `expand ${expand} must be positive`);
  const D = raw.int("intermediate_size", Math.floor(expand * C));
  const initStd = raw.num("initializer_range", 0.1);
  raw.bool("residual_in_fp32", true);
  return {
    modelType: "mamba",
    V: raw.int("vocab_size", 50280),
    C,
    L: raw.int("num_hidden_layers", 32),
    tieWordEmbeddings: raw.bool("tie_word_embeddings", true),
    maxPositions: null,
    eps: raw.num("layer_norm_epsilon", 1e-5),
    initStd,
    mixer: {
      C,
      D,
      N: raw.int("state_size", 16),
      R: timeStepRank(raw, C),
      W: raw.int("conv_kernel", 4),
      useBias: raw.bool("use_bias", false),
      useConvBias: raw.bool("use_conv_bias", true),
      act: activationFromConfig(raw, "hidden_act", "silu"),
      // seqlab's own key (HF has none): false builds the time-invariant ablation for experiments
      selective: raw.bool("selective", true),
      initStd,
      dtInit: dtInitFromConfig(raw),
    },
  };
}

/** What a block needs from its mixer: a forward that continues from a fixed-size state. */
export interface SsmMixer extends Module {
  forward(h: Tensor, state?: RecurrentState): Tensor;
  allocateState(batch: number): RecurrentState;
}

/** h + mixer(norm(h)) (HF MambaBlock / Mamba2Block). */
export class MambaBlock<M extends SsmMixer> extends Module {
  norm: RMSNorm;
  mixer: M;

  constructor(ctx: ModuleContext, C: number, eps: number, mixer: M) {
    super();
    this.norm = new RMSNorm(ctx, C, eps);
    this.mixer = mixer;
  }

  forward(h: Tensor, _pos0: number, state?: LayerState): Tensor {
    return ops.add(h, this.mixer.forward(this.norm.forward(h), state as RecurrentState | undefined)); // (B, T, C)
  }
}

export class MambaBackbone<M extends SsmMixer> extends Module {
  embeddings: Embedding;
  layers: MambaBlock<M>[];
  norm_f: RMSNorm;

  constructor(ctx: ModuleContext, cfg: SsmLMConfig, mixer: (i: number) => M) {
    super();
    this.embeddings = new Embedding(ctx, cfg.V, cfg.C, normalInit(cfg.initStd));
    this.layers = Array.from({ length: cfg.L }, (_, i) => new MambaBlock(ctx, cfg.C, cfg.eps, mixer(i)));
    this.norm_f = new RMSNorm(ctx, cfg.C, cfg.eps);
  }
}

/** A pure-SSM causal LM: prefill and decoding both run through a fixed-size recurrent state. */
export abstract class SsmForCausalLM<M extends SsmMixer> extends CausalLM {
  readonly backend: Backend;
  backbone: MambaBackbone<M>;
  lm_head: Linear;

  constructor(ctx: ModuleContext, cfg: SsmLMConfig, mixer: (i: number) => M) {
    super();
    this.backend = ctx.backend;
    this.backbone = new MambaBackbone(ctx, cfg, mixer);
    this.lm_head = new Linear(ctx, cfg.C, cfg.V, false, normalInit(cfg.initStd));
    if (cfg.tieWordEmbeddings) this.lm_head.weight = this.backbone.embeddings.weight;
  }

  forward(ids: Tensor, opts: ForwardOptions = {}): ForwardResult {
    const b = this.backbone;
    const h = b.embeddings.forward(ids); // (B, T, C)
    return runStack(h, b.layers, (x) => b.norm_f.forward(x), (x) => this.lm_head.forward(x), opts, "blocks");
  }

  /** One fixed-size state per layer; `capacity` is irrelevant (nothing grows with length). */
  allocateState(batch: number): InferenceState {
    return new InferenceState(
      batch,
      this.backbone.layers.map((l) => l.mixer.allocateState(batch)),
    );
  }
}

export class MambaForCausalLM extends SsmForCausalLM<MambaMixer> {
  constructor(
    ctx: ModuleContext,
    readonly config: MambaConfig,
  ) {
    super(ctx, config, () => new MambaMixer(ctx, config.mixer));
  }
}
