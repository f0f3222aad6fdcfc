/**
 * Gated DeltaNet linear attention (Yang, Kautz & Hatamizadeh 2024) in the layout of HF's
 * Qwen3NextGatedDeltaNet: in_proj_qkvz and in_proj_ba project the input per key head, a causal
 * depthwise conv with SiLU mixes q, k, v over the last W tokens, q and k are l2-normalised, and
 * per value head the state follows the gated delta rule
 *   S_t = exp(g_t) (I - beta_t k_t k_t^T) S_{t-1} + beta_t k_t v_t^T,   o_t = S_t^T q_t / sqrt(Dk)
 * with beta = sigmoid(b) and g = -exp(A_log) * softplus(a + dt_bias). The output is RMS-normed,
 * gated by silu(z) and projected back. Inference keeps a fixed-size state: the conv window and
 * the (Dk x Dv) matrix of each value head; decoding one token runs the recurrent step.
 */
import type { Tensor } from "../tensor/tensor.js";
import { keep } from "../tensor/scope.js";
import * as ops from "../ops/index.js";
import type { UnaryOp } from "../backend/kernels.js";
import type { Backend } from "../backend/backend.js";
import { zeros } from "../backend/alloc.js";
import { Module, ModuleContext, normalInit, onesInit, type Init } from "./module.js";
import { Linear } from "./layers.js";
import type { DeltaNetState } from "./state.js";

export interface GatedDeltaNetConfig {
  /** model width C, value heads H, key heads G (G divides H), key and value head sizes */
  C: number;
  H: number;
  G: number;
  Dk: number;
  Dv: number;
  /** conv width W */
  W: number;
  /** activation after the conv (HF hidden_act) */
  act: UnaryOp;
  eps: number;
  /** tokens per chunk of the chunked delta rule (HF: 64) */
  chunk: number;
  initStd: number;
}

/** HF initialises A = uniform(0.01, 16) per value head and stores log(A). */
const aLogInit: Init = { kind: "fn", fn: (rng) => Math.log(0.01 + (16 - 0.01) * rng.uniform()) };

/** Depthwise nn.Conv1d without bias: weight (D, 1, W). */
export class DepthwiseConv1d extends Module {
  weight: Tensor; // (D, 1, W)

  constructor(ctx: ModuleContext, D: number, W: number, init: Init) {
    super();
    this.weight = ctx.param([D, 1, W], init);
  }
}

/** Qwen3NextRMSNormGated: rmsnorm(x) * weight * silu(z), weight starting at ones. */
export class GatedRMSNorm extends Module {
  weight: Tensor; // (Dv)

  constructor(
    ctx: ModuleContext,
    Dv: number,
    readonly eps: number,
  ) {
    super();
    this.weight = ctx.param([Dv], onesInit);
  }

  forward(x: Tensor, z: Tensor): Tensor {
    return ops.gatedRmsnorm(x, z, this.weight, this.eps);
  }
}

export class GatedDeltaNet extends Module {
  conv1d: DepthwiseConv1d;
  in_proj_qkvz: Linear;
  in_proj_ba: Linear;
  dt_bias: Tensor; // (H)
  A_log: Tensor; // (H)
  norm: GatedRMSNorm;
  out_proj: Linear;
  /** q and k widths (G * Dk), v width (H * Dv), conv channels */
  readonly keyDim: number;
  readonly valueDim: number;
  readonly convDim: number;

  constructor(
    ctx: ModuleContext,
    readonly cfg: GatedDeltaNetConfig,
  ) {
    super();
    const { C, H, G, Dk, Dv, W } = cfg;
    const init = normalInit(cfg.initStd);
    this.keyDim = G * Dk;
    this.valueDim = H * Dv;
    this.convDim = 2 * this.keyDim + this.valueDim;
    this.conv1d = new DepthwiseConv1d(ctx, this.convDim, W, init);
    this.in_proj_qkvz = new Linear(ctx, C, 2 * this.keyDim + 2 * this.valueDim, false, init);
    this.in_proj_ba = new Linear(ctx, C, 2 * H, false, init);
    this.dt_bias = ctx.param([H], onesInit);
    this.A_log = ctx.param([H], aLogInit);
    this.norm = new GatedRMSNorm(ctx, Dv, cfg.eps);
    this.out_proj = new Linear(ctx, this.valueDim, C, false, init);
  }

  /** x (B, T, C); with `state` continues from it and advances it (one token: the recurrent step) */
  forward(x: Tensor, state?: DeltaNetState): Tensor {
    const [B, T] = x.shape;
    const { H, G, Dk, Dv } = this.cfg;
    const { qkv, z, b, a } = this.project(x);
    const mixed = ops.unary(this.cfg.act, ops.deltanetConv(qkv, this.conv1d.weight, state?.conv)); // (B, T, convDim)
    const [q0, k0, v0] = ops.split(mixed, [this.keyDim, this.keyDim, this.valueDim]);
    const q = ops.l2norm(q0.reshape([B, T, G, Dk])); // (B, T, G, Dk)
    const k = ops.l2norm(k0.reshape([B, T, G, Dk])); // (B, T, G, Dk)
    const v = v0.reshape([B, T, H, Dv]); // (B, T, H, Dv)
    const beta = ops.sigmoid(b); // (B, T, H)
    const g = ops.mul(ops.softplus(ops.add(a, this.dt_bias)), ops.neg(ops.exp(this.A_log))); // (B, T, H), log decay <= 0
    const scale = 1 / Math.sqrt(Dk);
    const o =
      state && T === 1
        ? ops.deltaRuleStep(q, k, v, g, beta, state.ssm, scale)
        : ops.deltaRule(q, k, v, g, beta, { scale, chunk: this.cfg.chunk, state: state?.ssm }); // (B, T, H, Dv)
    const y = this.norm.forward(o, z); // (B, T, H, Dv)
    return this.out_proj.forward(y.reshape([B, T, this.valueDim])); // (B, T, C)
  }

  /**
   * The fused projections are laid out per key head: in_proj_qkvz gives [q (Dk), k (Dk),
   * v (r Dv), z (r Dv)] and in_proj_ba gives [b (r), a (r)] for each of the G key heads, r = H / G
   * value heads per key head (HF fix_query_key_value_ordering).
   */
  private project(x: Tensor): { qkv: Tensor; z: Tensor; b: Tensor; a: Tensor } {
    const [B, T] = x.shape;
    const { H, G, Dk, Dv } = this.cfg;
    const r = H / G;
    const perHead = this.in_proj_qkvz.forward(x).reshape([B * T * G, 2 * Dk + 2 * r * Dv]); // (B T G, 2Dk + 2rDv)
    const [q, k, v, z] = ops.split(perHead, [Dk, Dk, r * Dv, r * Dv]);
    const [b, a] = ops.split(this.in_proj_ba.forward(x).reshape([B * T * G, 2 * r]), [r, r]); // (B T G, r) each
    const qkv = ops.concat([q.reshape([B, T, this.keyDim]), k.reshape([B, T, this.keyDim]), v.reshape([B, T, this.valueDim])]); // (B, T, convDim)
    return { qkv, z: z.reshape([B, T, H, Dv]), b: b.reshape([B, T, H]), a: a.reshape([B, T, H]) };
  }

  allocateState(be: Backend, batch: number): DeltaNetState {
    const { H, Dk, Dv, W } = this.cfg;
    return {
      kind: "deltanet",
      conv: keep(zeros(be, [batch, W - 1, this.convDim])), // (B, W - 1, convDim)
      ssm: keep(zeros(be, [batch, H, Dk, Dv])), // (B, H, Dk, Dv)
    };
  }
}
