/**
 * Output-gated attention with q/k RMSNorm, as Qwen3NextAttention: q_proj yields, per head, a
 * query and a gate of the head size; queries and keys are RMS-normed over the head dim with
 * zero-centred (1 + w) weights, rotated (partial rotary: the leading rotDim dims of a head),
 * attend causally over grouped KV heads, and the attention output is multiplied by
 * sigmoid(gate) before o_proj (Qiu et al. 2025, "Gated Attention for LLMs").
 */
import type { Tensor } from "../tensor/tensor.js";
import * as ops from "../ops/index.js";
import type { AttentionImpl } from "../ops/attention.js";
import type { Backend } from "../backend/backend.js";
import { Module, ModuleContext, normalInit } from "./module.js";
import { Linear, RMSNorm } from "./layers.js";
import { RotaryEmbedding, type RopeConfig } from "./rope.js";
import { attendCached } from "./attention.js";
import { allocateAttentionState, type AttentionState } from "./state.js";

export interface GatedAttentionConfig {
  /** model width C, query heads H, KV heads G, head size K */
  C: number;
  H: number;
  G: number;
  K: number;
  bias: boolean;
  rope: RopeConfig;
  /** eps of q_norm / k_norm */
  eps: number;
  initStd: number;
}

export class GatedAttention extends Module {
  q_proj: Linear;
  k_proj: Linear;
  v_proj: Linear;
  o_proj: Linear;
  q_norm: RMSNorm;
  k_norm: RMSNorm;
  readonly rotary: RotaryEmbedding;
  impl: AttentionImpl = "tiled";

  constructor(
    ctx: ModuleContext,
    readonly cfg: GatedAttentionConfig,
  ) {
    super();
    const { C, H, G, K, bias } = cfg;
    const init = normalInit(cfg.initStd);
    this.q_proj = new Linear(ctx, C, H * K * 2, bias, init);
    this.k_proj = new Linear(ctx, C, G * K, bias, init);
    this.v_proj = new Linear(ctx, C, G * K, bias, init);
    this.o_proj = new Linear(ctx, H * K, C, bias, init);
    this.q_norm = new RMSNorm(ctx, K, cfg.eps, 1);
    this.k_norm = new RMSNorm(ctx, K, cfg.eps, 1);
    this.rotary = new RotaryEmbedding(ctx, cfg.rope);
  }

  /** x (B, T, C) at positions pos0.. ; appends to `state` when given */
  forward(x: Tensor, pos0 = 0, state?: AttentionState): Tensor {
    const [B, T] = x.shape;
    const { H, G, K } = this.cfg;
    const [q0, gate] = ops.split(this.q_proj.forward(x).reshape([B, T, H, 2 * K]), [K, K]); // (B, T, H, K) each
    const q = this.rotary.forward(this.q_norm.forward(q0), pos0); // (B, T, H, K)
    const k = this.rotary.forward(this.k_norm.forward(this.k_proj.forward(x).reshape([B, T, G, K])), pos0); // (B, T, G, K)
    const v = this.v_proj.forward(x).reshape([B, T, G, K]); // (B, T, G, K)
    const y = attendCached(q, k, v, state, this.impl); // (B, T, H, K)
    const gated = ops.mul(y, ops.sigmoid(gate)).reshape([B, T, H * K]); // (B, T, H K)
    return this.o_proj.forward(gated); // (B, T, C)
  }

  allocateState(be: Backend, batch: number, capacity: number): AttentionState {
    return allocateAttentionState(be, batch, this.cfg.G, this.cfg.K, capacity);
  }
}
