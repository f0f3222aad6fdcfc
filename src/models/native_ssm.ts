/**
 * Native parts from the state-space mixers: "mamba" (selective SSM, or its time-invariant
 * ablation with `selective: false`, or Jamba's mixer with RMSNorms on dt, B and C with
 * `inner_norms: true`) and "mamba2" (SSD). Their config sections take the same keys as the HF
 * Mamba / Mamba2 configs (state_size, conv_kernel, expand, time_step_rank or dt_rank, use_bias,
 * use_conv_bias, head_dim, n_groups, chunk_size, time_step_limit ...).
 */
import { RawConfig } from "../io/config.js";
import { MambaMixer } from "../nn/mamba.js";
import { JambaMambaMixer } from "../nn/jamba_mamba.js";
import { Mamba2Mixer } from "../nn/mamba2.js";
import type { MambaState, Mamba2State } from "../nn/state.js";
import { parseMambaConfig } from "./mamba.js";
import { parseMamba2Config } from "./mamba2.js";
import { registerMixer, type PartContext } from "./native_parts.js";

/** The section seen as a one-layer HF config of width C, so the HF parsers (and their checks) apply. */
function asHfConfig(p: PartContext, extra: Record<string, unknown>): RawConfig {
  const j = p.section.json;
  return new RawConfig(p.section.source, {
    vocab_size: 1,
    num_hidden_layers: 1,
    initializer_range: p.initStd,
    layer_norm_epsilon: p.eps,
    ...j,
    time_step_rank: j.time_step_rank ?? j.dt_rank ?? "auto",
    hidden_size: p.C,
    ...extra,
  });
}

registerMixer("mamba", (p) => {
  const cfg = parseMambaConfig(asHfConfig(p, {})).mixer;
  const innerNorms = p.section.bool("inner_norms", false);
  if (innerNorms) p.section.require(cfg.selective, "inner_norms (Jamba's RMSNorms on dt, B and C) needs the selective mixer, not selective: false");
  const mixer = innerNorms ? new JambaMambaMixer(p.ctx, cfg, p.eps) : new MambaMixer(p.ctx, cfg);
  return {
    module: mixer,
    forward: (x, _pos0, state) => mixer.forward(x, state as MambaState | undefined),
    allocateState: (_be, batch) => mixer.allocateState(batch),
  };
});

registerMixer("mamba2", (p) => {
  const D = Math.floor((p.section.num("expand", 2) as number) * p.C);
  const P = p.section.int("head_dim", 16);
  p.section.require(D % P === 0, `inner width ${D} must be a multiple of head_dim ${P}`);
  const cfg = parseMamba2Config(asHfConfig(p, { num_heads: p.section.int("num_heads", D / P), n_groups: p.section.int("n_groups", 1) }));
  const mixer = new Mamba2Mixer(p.ctx, cfg.mixer);
  return {
    module: mixer,
    forward: (x, _pos0, state) => mixer.forward(x, state as Mamba2State | undefined),
    allocateState: (_be, batch) => mixer.allocateState(batch),
  };
});
