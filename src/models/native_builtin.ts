/**
 * Native parts built from the core modules: grouped-KV attention (RoPE or no positional
 * encoding) and the SwiGLU MLP. Other architectures register theirs beside their modules.
 */
import { Attention } from "../nn/attention.js";
import { GatedMLP } from "../nn/mlp.js";
import { defaultRope } from "../nn/rope.js";
import type { AttentionState } from "../nn/state.js";
import { registerFfn, registerMixer } from "./native_parts.js";

registerMixer("attention", ({ ctx, C, initStd, section }) => {
  const H = section.int("num_heads", 4);
  const G = section.int("num_kv_heads", H);
  section.require(H % G === 0, `num_heads ${H} must be a multiple of num_kv_heads ${G}`);
  if (!section.has("head_dim")) section.require(C % H === 0, `hidden_size ${C} must be a multiple of num_heads ${H}`);
  const K = section.int("head_dim", C / H);
  const position = section.oneOf("position", ["rope", "none"], "rope");
  const attn = new Attention(ctx, {
    C,
    H,
    G,
    K,
    qkvBias: false,
    oBias: false,
    rope: position === "rope" ? defaultRope(section.num("rope_theta", 10000), K) : null,
    initStd,
  });
  attn.impl = section.oneOf("impl", ["tiled", "naive"], "tiled");
  return {
    module: attn,
    forward: (x, pos0, state) => attn.forward(x, pos0, state as AttentionState | undefined),
    allocateState: (be, batch, capacity) => attn.allocateState(be, batch, capacity),
  };
});

registerFfn("mlp", ({ ctx, C, initStd, section }) => {
  const mlp = new GatedMLP(ctx, C, section.int("intermediate_size", 4 * C), false, "silu", initStd);
  return { module: mlp, forward: (x) => mlp.forward(x) };
});
