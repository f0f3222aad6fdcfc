/**
 * The Mamba mixer (Gu & Dao 2023, Fig. 3; HF MambaMixer): a gated block around a selective SSM.
 *
 *   x, z = in_proj(h)                      u = act(conv1d(x))            (causal, width W)
 *   dt, B, C = x_proj(u)  (selection)      dt = dt_proj(dt)              (rank R -> D)
 *   y = SSM(A, B, C, dt)(u) + Dskip * u    out = out_proj(y * act(z))
 *
 * with A = -exp(A_log) (D, N) and dt = softplus(dt + dt_proj.bias), both inside the scan.
 * Parameters keep the HF checkpoint names. `selective: false` is the time-invariant ablation
 * of the paper (Sec. 3.5 / Table 7, S4D-like): dt, B and C become learned parameters that do
 * not depend on the input (dt_bias (D), B (N), C (N)); x_proj and dt_proj do not exist.
 */
import type { Tensor } from "../tensor/tensor.js";
import * as ops from "../ops/index.js";
import type { UnaryOp } from "../backend/kernels.js";
import type { Backend } from "../backend/backend.js";
import { zeros } from "../backend/alloc.js";
import { keep } from "../tensor/scope.js";
import { isGradEnabled } from "../autograd/tape.js";
import { Module, ModuleContext, normalInit, onesInit, type Init } from "./module.js";
import { Linear } from "./layers.js";
import { CausalConv1d } from "./conv1d.js";
import { derived, type MambaState } from "./state.js";
import type { Rng } from "../util/rng.js";

/** How dt is initialised (HF time_step_* settings; Mamba paper Sec. 3.6 / Appendix). */
export interface DtInit {
  min: number;
  max: number;
  floor: number;
  /** dt_proj.weight ~ U(-s, s) ("random") or = s ("constant"), s = scale / sqrt(R) */
  scale: number;
  scheme: "random" | "constant";
}

export interface MambaMixerConfig {
  /** model width C, inner width D, state size N, dt rank R, conv width W */
  C: number;
  D: number;
  N: number;
  R: number;
  W: number;
  /** bias on in_proj and out_proj; bias on conv1d */
  useBias: boolean;
  useConvBias: boolean;
  /** HF hidden_act: applied after the conv and, unless `gateAct` says otherwise, to the gate z */
  act: UnaryOp;
  /** the gate's activation when it differs from `act` (Jamba gates with silu whatever hidden_act is) */
  gateAct?: UnaryOp;
  /** input-dependent dt, B, C (Mamba); false gives the time-invariant ablation */
  selective: boolean;
  initStd: number;
  dtInit: DtInit;
}

/** dt drawn log-uniformly in [min, max], stored through the inverse of softplus (HF init). */
export function dtBiasInit(d: DtInit): Init {
  return {
    kind: "fn",
    fn: (rng: Rng) => {
      const dt = Math.max(d.floor, Math.exp(rng.uniform() * (Math.log(d.max) - Math.log(d.min)) + Math.log(d.min)));
      return dt + Math.log(-Math.expm1(-dt));
    },
  };
}

/** out_proj: kaiming_uniform(a = sqrt(5)), PyTorch's Linear default that HF re-applies */
export function kaimingLinearInit(fanIn: number): Init {
  const bound = 1 / Math.sqrt(fanIn);
  return { kind: "uniform", low: -bound, high: bound };
}

export class MambaMixer extends Module {
  in_proj: Linear;
  conv1d: CausalConv1d;
  x_proj: Linear | null;
  dt_proj: Linear | null;
  A_log: Tensor; // (D, N)
  D: Tensor; // (D): the skip Dskip
  out_proj: Linear;
  /** time-invariant ablation only: dt before softplus (D), B (N), C (N) */
  dt_bias: Tensor | null = null;
  B: Tensor | null = null;
  C: Tensor | null = null;
  private readonly backend: Backend;

  constructor(
    ctx: ModuleContext,
    readonly cfg: MambaMixerConfig,
  ) {
    super();
    const { C, D, N, R, W } = cfg;
    this.backend = ctx.backend;
    this.in_proj = new Linear(ctx, C, 2 * D, cfg.useBias, normalInit(cfg.initStd));
    this.conv1d = new CausalConv1d(ctx, D, W, cfg.useConvBias);
    if (cfg.selective) {
      this.x_proj = new Linear(ctx, D, R + 2 * N, false, normalInit(cfg.initStd));
      this.dt_proj = new Linear(ctx, R, D, false, dtWeightInit(cfg));
      this.dt_proj.bias = ctx.param([D], dtBiasInit(cfg.dtInit));
    } else {
      this.x_proj = null;
      this.dt_proj = null;
      this.dt_bias = ctx.param([D], dtBiasInit(cfg.dtInit));
      this.B = ctx.param([N], normalInit(1 / Math.sqrt(N)));
      this.C = ctx.param([N], normalInit(1 / Math.sqrt(N)));
    }
    // S4D-real initialisation A = -(1, 2, ..., N) for every channel
    this.A_log = ctx.param([D, N], { kind: "fn", fn: (_rng, i) => Math.log((i % N) + 1) });
    this.D = ctx.param([D], onesInit);
    this.out_proj = new Linear(ctx, D, C, cfg.useBias, kaimingLinearInit(D));
  }

  /**
   * h (B, T, C) -> (B, T, C); continues from and updates `state` when given. One token in
   * inference (no gradient) is decoding and goes through `step`.
   */
  forward(h: Tensor, state?: MambaState): Tensor {
    const [Bn, T, C] = h.shape;
    if (state && T === 1 && !isGradEnabled()) return this.step(h.reshape([Bn, C]), state).reshape([Bn, 1, C]);
    const [x, z] = ops.split(this.in_proj.forward(h), [this.cfg.D, this.cfg.D]); // (B, T, D) each
    const u = ops.unary(this.cfg.act, this.conv1d.forward(x, state?.conv)); // (B, T, D)
    const { dt, Bmat, Cmat, dtBias } = this.selection(u); // (B, T, D), (B, T, N), (B, T, N)
    const y = ops.selectiveScan(u, dt, this.A(), Bmat, Cmat, {
      Dskip: this.D,
      z: this.fusedGate ? z : null,
      dtBias,
      initial: state?.ssm,
      final: state?.ssm,
    }); // (B, T, D)
    return this.out_proj.forward(this.gate(y, z)); // (B, T, C)
  }

  /** One token h (B, C) -> (B, C), advancing the fixed-size state in place. */
  step(h: Tensor, state: MambaState): Tensor {
    const [x, z] = ops.split(this.in_proj.forward(h), [this.cfg.D, this.cfg.D]); // (B, D) each
    const u = this.conv1d.step(x, state.conv, this.cfg.act); // (B, D), activated
    const { dt, Bmat, Cmat, dtBias } = this.selection(u); // (B, D), (B, N), (B, N)
    const A = derived(state, "A", () => this.A()); // (D, N), once per state
    const y = ops.selectiveScanStep(u, dt, A, Bmat, Cmat, state.ssm, {
      Dskip: this.D,
      z: this.fusedGate ? z : null,
      dtBias,
    }); // (B, D)
    return this.out_proj.forward(this.gate(y, z)); // (B, C)
  }

  allocateState(batch: number): MambaState {
    const { D, N, W } = this.cfg;
    return {
      kind: "mamba",
      conv: keep(zeros(this.backend, [batch, W - 1, D])), // (B, W-1, D)
      ssm: keep(zeros(this.backend, [batch, D, N])), // (B, D, N)
    };
  }

  /** A = -exp(A_log) (D, N): negative real, so every mode decays. */
  private A(): Tensor {
    return ops.neg(ops.exp(this.A_log));
  }

  private get gateAct(): UnaryOp {
    return this.cfg.gateAct ?? this.cfg.act;
  }

  /** The scan gates with silu(z) itself; any other activation gates here. */
  private get fusedGate(): boolean {
    return this.gateAct === "silu";
  }

  private gate(y: Tensor, z: Tensor): Tensor {
    return this.fusedGate ? y : ops.mul(y, ops.unary(this.gateAct, z));
  }

  /**
   * Selection (S6): dt (before its bias), B and C from u (..., D). dt_proj's bias is handed to
   * the scan, which adds it before the softplus. The ablation broadcasts fixed parameters.
   * Variants that transform dt, B, C (Jamba's layernorms) override this.
   */
  protected selection(u: Tensor): { dt: Tensor; Bmat: Tensor; Cmat: Tensor; dtBias: Tensor } {
    const { D, N, R } = this.cfg;
    const lead = u.shape.slice(0, -1);
    if (this.x_proj && this.dt_proj) {
      const [dtLow, Bmat, Cmat] = ops.split(this.x_proj.forward(u), [R, N, N]); // (..., R), (..., N), (..., N)
      const dt = ops.linear(dtLow, this.dt_proj.weight); // (..., D)
      return { dt, Bmat, Cmat, dtBias: this.dt_proj.bias! };
    }
    return {
      dt: zeros(this.backend, [...lead, D]), // (..., D): dt is dt_bias alone
      Bmat: ops.add(zeros(this.backend, [...lead, N]), this.B!), // (..., N)
      Cmat: ops.add(zeros(this.backend, [...lead, N]), this.C!), // (..., N)
      dtBias: this.dt_bias!,
    };
  }
}

function dtWeightInit(cfg: MambaMixerConfig): Init {
  const s = cfg.dtInit.scale / Math.sqrt(cfg.R);
  return cfg.dtInit.scheme === "constant" ? { kind: "const", value: s } : { kind: "uniform", low: -s, high: s };
}
