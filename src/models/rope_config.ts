/** RoPE settings from an HF config: `rope_parameters` (transformers 5), `rope_scaling` + `rope_theta` (older). */
import type { RawConfig } from "../io/config.js";
import { defaultRope, type RopeConfig } from "../nn/rope.js";

const TYPES = ["default", "linear", "llama3", "yarn"] as const;

/** `defaultPartial`: the architecture's partial_rotary_factor when the config has none. */
export function ropeFromConfig(raw: RawConfig, headDim: number, defaultPartial = 1): RopeConfig {
  const params = raw.object("rope_parameters") ?? raw.object("rope_scaling");
  const theta = params?.has("rope_theta") ? params.num("rope_theta") : raw.num("rope_theta", 10000);
  const partial = params?.has("partial_rotary_factor")
    ? params.num("partial_rotary_factor")
    : raw.num("partial_rotary_factor", defaultPartial);
  let rotDim = Math.floor(headDim * partial);
  rotDim -= rotDim % 2;
  raw.require(rotDim > 0 && rotDim <= headDim, `rotary dims ${rotDim} must be in (0, ${headDim}]`);
  const r = defaultRope(theta, rotDim);
  if (!params) return r;
  const typeKey = params.has("rope_type") ? "rope_type" : "type";
  r.type = params.oneOf(typeKey, TYPES, "default");
  r.factor = params.num("factor", 1);
  r.lowFreqFactor = params.num("low_freq_factor", 1);
  r.highFreqFactor = params.num("high_freq_factor", 4);
  r.originalMaxPositions = params.int(
    "original_max_position_embeddings",
    raw.has("max_position_embeddings") ? raw.int("max_position_embeddings") : 8192,
  );
  r.betaFast = params.num("beta_fast", 32);
  r.betaSlow = params.num("beta_slow", 1);
  r.attentionFactor = params.has("attention_factor") ? params.num("attention_factor") : null;
  r.mscale = params.has("mscale") ? params.num("mscale") : null;
  r.mscaleAllDim = params.has("mscale_all_dim") ? params.num("mscale_all_dim") : null;
  return r;
}
