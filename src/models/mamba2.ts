/**
 * Mamba2ForCausalLM (transformers models/mamba2): the Mamba backbone (backbone.embeddings,
 * backbone.layers.i.{norm, mixer}, backbone.norm_f, lm_head) around Mamba-2 mixers.
 *
 * HF behaviour followed here:
 * - the inner width is int(expand * hidden_size) and must equal num_heads * head_dim;
 *   n_groups must divide num_heads (B and C are repeated across the heads of a group).
 * - time_step_limit clamps dt after the softplus (default (0, inf): no clamp).
 * - HF pads T to a multiple of chunk_size with zeros; the padded steps neither decay nor add
 *   input, so SSD runs a shorter last chunk instead (see backend/ref/ssd.ts).
 * - the gated RMSNorm normalises over the whole inner width and gates before normalising:
 *   HF's MambaRMSNormGated has no group size and reads neither `rms_norm` nor
 *   `norm_before_gate`, so those keys are accepted and have no effect.
 * - residual_in_fp32 changes nothing in float32 compute; output_hidden_states as in Mamba.
 */
import type { RawConfig } from "../io/config.js";
import type { ModuleContext } from "../nn/module.js";
import { Mamba2Mixer, type Mamba2MixerConfig } from "../nn/mamba2.js";
import { activationFromConfig } from "./activations.js";
import { dtInitFromConfig, SsmForCausalLM, type SsmLMConfig } from "./mamba.js";

export interface Mamba2Config extends SsmLMConfig {
  mixer: Mamba2MixerConfig;
}

/** Defaults from transformers' Mamba2Config. */
export function parseMamba2Config(raw: RawConfig): Mamba2Config {
  const C = raw.int("hidden_size", 4096);
  const expand = raw.num("expand", 2);
  const D = Math.floor(expand * C);
  const H = raw.int("num_heads", 128);
  const P = raw.int("head_dim", 64);
  raw.require(D === H * P, `hidden_size * expand (${C} * ${expand}) must equal num_heads * head_dim (${H} * ${P})`);
  const G = raw.int("n_groups", 8);
  raw.require(H % G === 0, `n_groups ${G} must divide num_heads ${H}`);
  const limit = raw.floats("time_step_limit", [0, Infinity]);
  raw.require(
    limit.length === 2 && !limit.some(Number.isNaN) && limit[0] <= limit[1],
    `time_step_limit ${JSON.stringify(raw.json.time_step_limit)} must be two numbers [min, max] with min <= max`,
  );
  const eps = raw.num("layer_norm_epsilon", 1e-5);
  const initStd = raw.num("initializer_range", 0.1);
  raw.bool("residual_in_fp32", true);
  raw.bool("rms_norm", true);
  return {
    modelType: "mamba2",
    V: raw.int("vocab_size", 32768),
    C,
    L: raw.int("num_hidden_layers", 64),
    tieWordEmbeddings: raw.bool("tie_word_embeddings", false),
    maxPositions: null,
    eps,
    initStd,
    mixer: {
      C,
      D,
      H,
      P,
      N: raw.int("state_size", 128),
      G,
      W: raw.int("conv_kernel", 4),
      chunk: raw.int("chunk_size", 256),
      dtLimit: [limit[0], limit[1]],
      useBias: raw.bool("use_bias", false),
      useConvBias: raw.bool("use_conv_bias", true),
      act: activationFromConfig(raw, "hidden_act", "silu"),
      eps,
      normGroupSize: D,
      initStd,
      dtInit: dtInitFromConfig(raw),
    },
  };
}

export class Mamba2ForCausalLM extends SsmForCausalLM<Mamba2Mixer> {
  constructor(
    ctx: ModuleContext,
    readonly config: Mamba2Config,
  ) {
    super(ctx, config, () => new Mamba2Mixer(ctx, config.mixer));
  }
}
