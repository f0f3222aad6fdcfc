/**
 * Causal multi-head self-attention with grouped KV heads (Ainslie et al. 2023), in the Llama
 * layout of Hugging Face (q_proj, k_proj, v_proj, o_proj). With an AttentionState the new
 * keys and values are appended to the KV cache and queries attend over everything cached:
 * prefill and one-token decoding are the same code.
 */
import type { Tensor } from "../tensor/tensor.js";
import * as ops from "../ops/index.js";
import type { AttentionImpl } from "../ops/attention.js";
import type { Backend } from "../backend/backend.js";
import { Module, ModuleContext, normalInit } from "./module.js";
import { Linear } from "./layers.js";
import { RotaryEmbedding, type RopeConfig } from "./rope.js";
import { allocateAttentionState, appendKV, type AttentionState } from "./state.js";

export interface AttentionConfig {
  /** model width C, query heads H, KV heads G, head size K */
  C: number;
  H: number;
  G: number;
  K: number;
  /** bias on q/k/v projections, and on o_proj */
  qkvBias: boolean;
  oBias: boolean;
  /** null: no positional encoding in attention (Jamba, NoPE) */
  rope: RopeConfig | null;
  /** softmax scale; absent: 1 / sqrt(K) (Granite sets it from attention_multiplier) */
  scale?: number;
  initStd: number;
}

/** Attention over fresh k, v, or over a KV cache after appending them. */
export function attendCached(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  state: AttentionState | undefined,
  impl: AttentionImpl,
  scale?: number,
): Tensor {
  if (!state) return ops.attention(q, k, v, { impl, scale }); // (B, T, H, K)
  const past = state.length;
  appendKV(state, k, v);
  return ops.attention(q, state.k, state.v, { impl, scale, S: past + q.shape[1], qOffset: past }); // (B, T, H, K)
}

export class Attention extends Module {
  q_proj: Linear;
  k_proj: Linear;
  v_proj: Linear;
  o_proj: Linear;
  readonly rotary: RotaryEmbedding | null;
  /** which attention kernel runs: tiled (default) or naive, for the memory experiments */
  impl: AttentionImpl = "tiled";

  constructor(
    ctx: ModuleContext,
    readonly cfg: AttentionConfig,
  ) {
    super();
    const { C, H, G, K } = cfg;
    const init = normalInit(cfg.initStd);
    this.q_proj = new Linear(ctx, C, H * K, cfg.qkvBias, init);
    this.k_proj = new Linear(ctx, C, G * K, cfg.qkvBias, init);
    this.v_proj = new Linear(ctx, C, G * K, cfg.qkvBias, init);
    this.o_proj = new Linear(ctx, H * K, C, cfg.oBias, init);
    this.rotary = cfg.rope ? new RotaryEmbedding(ctx, cfg.rope) : null;
  }

  /** x (B, T, C) at positions pos0.. ; appends to `state` when given */
  forward(x: Tensor, pos0 = 0, state?: AttentionState): Tensor {
    const [B, T] = x.shape;
    const { H, G, K } = this.cfg;
    let q = this.q_proj.forward(x).reshape([B, T, H, K]); // (B, T, H, K)
    let k = this.k_proj.forward(x).reshape([B, T, G, K]); // (B, T, G, K)
    const v = this.v_proj.forward(x).reshape([B, T, G, K]); // (B, T, G, K)
    if (this.rotary) {
      q = this.rotary.forward(q, pos0);
      k = this.rotary.forward(k, pos0);
    }
    const y = attendCached(q, k, v, state, this.impl, this.cfg.scale); // (B, T, H, K)
    return this.o_proj.forward(y.reshape([B, T, H * K])); // (B, T, C)
  }

  allocateState(be: Backend, batch: number, capacity: number): AttentionState {
    return allocateAttentionState(be, batch, this.cfg.G, this.cfg.K, capacity);
  }
}
