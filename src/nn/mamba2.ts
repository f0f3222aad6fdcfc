/**
 * The Mamba-2 mixer (Dao & Gu 2024, Fig. 6 "parallel Mamba block"; HF Mamba2Mixer): one input
 * projection produces the gate z, the conv input (x, B, C) and dt per head; the SSM is SSD
 * with a scalar decay per head; a gated RMSNorm replaces Mamba's output gate.
 *
 *   z, xBC, dt = in_proj(h)          x, B, C = act(conv1d(xBC))      (B, C shared by groups)
 *   y = SSD(A, B, C, dt)(x) + Dskip * x                              (heads of size P)
 *   out = out_proj(norm(y, z))       norm(y, z) = w * rmsnorm(y * silu(z))
 *
 * dt = clamp(softplus(dt + dt_bias), time_step_limit) and A = -exp(A_log) per head.
 */
import type { Tensor } from "../tensor/tensor.js";
import * as ops from "../ops/index.js";
import type { UnaryOp } from "../backend/kernels.js";
import type { Backend } from "../backend/backend.js";
import { zeros } from "../backend/alloc.js";
import { keep } from "../tensor/scope.js";
import { isGradEnabled } from "../autograd/tape.js";
import { Module, ModuleContext, normalInit, onesInit } from "./module.js";
import { Linear } from "./layers.js";
import { CausalConv1d } from "./conv1d.js";
import { dtBiasInit, kaimingLinearInit, type DtInit } from "./mamba.js";
import type { Mamba2State } from "./state.js";

export interface Mamba2MixerConfig {
  /** model width C, inner width D = H * P, heads H, head size P, state size N, groups G, conv width W */
  C: number;
  D: number;
  H: number;
  P: number;
  N: number;
  G: number;
  W: number;
  /** SSD chunk length (HF chunk_size) */
  chunk: number;
  /** HF time_step_limit: dt is clamped to [lo, hi] */
  dtLimit: readonly [number, number];
  useBias: boolean;
  useConvBias: boolean;
  /** HF hidden_act, applied after the conv */
  act: UnaryOp;
  /** gated RMSNorm epsilon and group size (HF Mamba2 normalises over all of D) */
  eps: number;
  normGroupSize: number;
  initStd: number;
  dtInit: DtInit;
}

/**
 * Gated RMSNorm (HF MambaRMSNormGated, norm_before_gate = False): the gate multiplies first,
 * then each group of `groupSize` channels is normalised, then the weight scales.
 */
export class MambaRMSNormGated extends Module {
  weight: Tensor; // (D)
  private readonly groupOnes: Tensor | null;

  constructor(
    ctx: ModuleContext,
    readonly D: number,
    readonly eps: number,
    readonly groupSize = D,
  ) {
    super();
    this.weight = ctx.param([D], onesInit);
    this.groupOnes = groupSize === D ? null : ctx.buffer(new Float32Array(groupSize).fill(1), [groupSize]);
  }

  /** y, z (..., D) */
  forward(y: Tensor, z: Tensor): Tensor {
    const gated = ops.swiglu(z, y); // (..., D): y * silu(z)
    if (!this.groupOnes) return ops.rmsnorm(gated, this.weight, this.eps); // (..., D)
    const normed = ops.rmsnorm(gated.reshape([-1, this.groupSize]), this.groupOnes, this.eps); // (rows * D / group, group)
    return ops.mul(normed.reshape(y.shape), this.weight); // (..., D)
  }
}

export class Mamba2Mixer extends Module {
  in_proj: Linear;
  conv1d: CausalConv1d;
  dt_bias: Tensor; // (H)
  A_log: Tensor; // (H)
  D: Tensor; // (H): the skip Dskip per head
  norm: MambaRMSNormGated;
  out_proj: Linear;
  private readonly backend: Backend;

  constructor(
    ctx: ModuleContext,
    readonly cfg: Mamba2MixerConfig,
  ) {
    super();
    const { C, D, H, W } = cfg;
    this.backend = ctx.backend;
    this.in_proj = new Linear(ctx, C, D + this.convDim + H, cfg.useBias, normalInit(cfg.initStd));
    this.conv1d = new CausalConv1d(ctx, this.convDim, W, cfg.useConvBias);
    this.dt_bias = ctx.param([H], dtBiasInit(cfg.dtInit));
    // A = -(1, 2, ..., H): one decay rate per head (HF init_mamba2_weights)
    this.A_log = ctx.param([H], { kind: "fn", fn: (_rng, i) => Math.log(i + 1) });
    this.D = ctx.param([H], onesInit);
    this.norm = new MambaRMSNormGated(ctx, D, cfg.eps, cfg.normGroupSize);
    this.out_proj = new Linear(ctx, D, C, cfg.useBias, kaimingLinearInit(D));
  }

  /** channels through the conv: x (D), B and C (G * N each) */
  get convDim(): number {
    return this.cfg.D + 2 * this.cfg.G * this.cfg.N;
  }

  /**
   * h (B, T, C) -> (B, T, C); continues from and updates `state` when given. One token in
   * inference (no gradient) is decoding and goes through `step`.
   */
  forward(h: Tensor, state?: Mamba2State): Tensor {
    const [Bn, T, C] = h.shape;
    if (state && T === 1 && !isGradEnabled()) return this.step(h.reshape([Bn, C]), state).reshape([Bn, 1, C]);
    const { D, H, P, N, G } = this.cfg;
    const [z, xBC, dt] = ops.split(this.in_proj.forward(h), [D, this.convDim, H]); // (B, T, D), (B, T, convDim), (B, T, H)
    const conv = ops.unary(this.cfg.act, this.conv1d.forward(xBC, state?.conv)); // (B, T, convDim)
    const [x, Bmat, Cmat] = ops.split(conv, [D, G * N, G * N]); // (B, T, D), (B, T, G*N), (B, T, G*N)
    const y = ops.ssd(x.reshape([Bn, T, H, P]), dt, this.A(), Bmat.reshape([Bn, T, G, N]), Cmat.reshape([Bn, T, G, N]), {
      ...this.ssdOptions(),
      initial: state?.ssm,
      final: state?.ssm,
    }); // (B, T, H, P)
    return this.out_proj.forward(this.norm.forward(y.reshape([Bn, T, D]), z)); // (B, T, C)
  }

  /** One token h (B, C) -> (B, C), advancing the fixed-size state in place. */
  step(h: Tensor, state: Mamba2State): Tensor {
    const [Bn] = h.shape;
    const { D, H, P, N, G } = this.cfg;
    const [z, xBC, dt] = ops.split(this.in_proj.forward(h), [D, this.convDim, H]); // (B, D), (B, convDim), (B, H)
    const conv = this.conv1d.step(xBC, state.conv, this.cfg.act); // (B, convDim), activated
    const [x, Bmat, Cmat] = ops.split(conv, [D, G * N, G * N]); // (B, D), (B, G*N), (B, G*N)
    const y = ops.ssdStep(x.reshape([Bn, H, P]), dt, this.A(), Bmat.reshape([Bn, G, N]), Cmat.reshape([Bn, G, N]), state.ssm, this.ssdOptions()); // (B, H, P)
    return this.out_proj.forward(this.norm.forward(y.reshape([Bn, D]), z)); // (B, C)
  }

  allocateState(batch: number): Mamba2State {
    const { H, P, N, W } = this.cfg;
    return {
      kind: "mamba2",
      conv: keep(zeros(this.backend, [batch, W - 1, this.convDim])), // (B, W-1, D + 2GN)
      ssm: keep(zeros(this.backend, [batch, H, P, N])), // (B, H, P, N)
    };
  }

  /** A = -exp(A_log) (H) */
  private A(): Tensor {
    return ops.neg(ops.exp(this.A_log));
  }

  private ssdOptions(): ops.SsdOptions {
    return { chunk: this.cfg.chunk, Dskip: this.D, dtBias: this.dt_bias, dtLimit: this.cfg.dtLimit };
  }
}
