/**
 * Jamba's Mamba mixer (Lieber et al. 2024, Sec. 3; HF JambaMambaMixer): the Mamba mixer with an
 * RMSNorm on each of the selection outputs before they are used,
 *
 *   dt, B, C = x_proj(u)     dt = dt_proj(dt_layernorm(dt))     B = b_layernorm(B)     C = c_layernorm(C)
 *
 * which the Jamba paper adds to stabilise training at scale (large activations inside the
 * Mamba layers). The output gate is silu(z) whatever hidden_act is (HF runs the selective scan
 * with z, which always gates with silu; hidden_act is the conv activation). Parameter names
 * are HF's: `dt_layernorm`, `b_layernorm`, `c_layernorm` beside the usual Mamba names.
 */
import type { Tensor } from "../tensor/tensor.js";
import * as ops from "../ops/index.js";
import { ModuleContext } from "./module.js";
import { RMSNorm } from "./layers.js";
import { MambaMixer, type MambaMixerConfig } from "./mamba.js";
import { assert } from "../util/errors.js";

export class JambaMambaMixer extends MambaMixer {
  dt_layernorm: RMSNorm; // (R)
  b_layernorm: RMSNorm; // (N)
  c_layernorm: RMSNorm; // (N)

  /** `eps`: the norms' epsilon (HF rms_norm_eps, shared with the model's other RMSNorms) */
  constructor(ctx: ModuleContext, cfg: MambaMixerConfig, eps: number) {
    assert(cfg.selective, "Jamba's Mamba mixer normalises the selection, so it has no time-invariant form");
    super(ctx, { ...cfg, gateAct: "silu" });
    this.dt_layernorm = new RMSNorm(ctx, cfg.R, eps);
    this.b_layernorm = new RMSNorm(ctx, cfg.N, eps);
    this.c_layernorm = new RMSNorm(ctx, cfg.N, eps);
  }

  protected override selection(u: Tensor): { dt: Tensor; Bmat: Tensor; Cmat: Tensor; dtBias: Tensor } {
    const { N, R } = this.cfg;
    const [dtLow, Bmat, Cmat] = ops.split(this.x_proj!.forward(u), [R, N, N]); // (..., R), (..., N), (..., N)
    const dt = ops.linear(this.dt_layernorm.forward(dtLow), this.dt_proj!.weight); // (..., D), before its bias
    return { dt, Bmat: this.b_layernorm.forward(Bmat), Cmat: this.c_layernorm.forward(Cmat), dtBias: this.dt_proj!.bias! };
  }
}
