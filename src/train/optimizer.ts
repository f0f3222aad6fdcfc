/**
 * AdamW (Loshchilov & Hutter 2019) with PyTorch's semantics, global-norm gradient clipping, and
 * the usual exemptions from weight decay: norms, biases, and the state-space / RWKV parameters
 * that encode time constants (A_log, D, dt_bias, RWKV time_* and x_* mixes), whose decay would
 * pull them towards meaningless values rather than regularise.
 */
import type { Tensor } from "../tensor/tensor.js";
import { keep } from "../tensor/scope.js";
import type { Backend } from "../backend/backend.js";
import { empty, toFloat32, zeros } from "../backend/alloc.js";
import type { Kernels } from "../backend/kernels.js";
import type { AdamwHyper } from "../backend/kernels_train.js";
import { SeqlabError } from "../util/errors.js";

export interface AdamwOptions {
  lr: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  weightDecay?: number;
  /** clip the global gradient norm to this (0: off) */
  clipNorm?: number;
}

const NO_DECAY_NAMES = /(^|\.)(A_log|D|Dskip|dt_bias|time_\w+|x_[a-z]|w0|a0|v0|k_k|k_a|r_k)$|norm|(^|\.)ln\w*\./;

/** True when weight decay applies: matrices, except the named exemptions. */
export function decays(name: string, t: Tensor): boolean {
  return t.rank >= 2 && !NO_DECAY_NAMES.test(name);
}

export interface StepReport {
  /** global gradient norm before clipping */
  gradNorm: number;
  /** name of the first parameter whose gradient is NaN or infinite, if any */
  nonFinite: string | null;
  /** each parameter's gradient norm, in the order of `params` (0 without a gradient) */
  norms: number[];
}

export class AdamW {
  readonly m: Tensor[];
  readonly v: Tensor[];
  step = 0;
  private readonly norms: Tensor; // (P) per-parameter sum of squared gradients
  private readonly kernels: Kernels<unknown>;

  constructor(
    readonly backend: Backend,
    readonly params: [string, Tensor][],
    readonly opts: AdamwOptions,
  ) {
    const half = params.find(([, p]) => p.dtype !== "f32");
    if (half) {
      throw new SeqlabError(
        `parameter "${half[0]}" is stored as ${half[1].dtype}: half-precision weights are inference-only (load the model with --dtype f32 to train it)`,
      );
    }
    this.m = params.map(([, p]) => keep(zeros(backend, p.shape)));
    this.v = params.map(([, p]) => keep(zeros(backend, p.shape)));
    this.norms = keep(empty(backend, [params.length]));
    this.kernels = backend.kernels as Kernels<unknown>;
  }

  /** Gradient norm and a non-finite check, with one read back for all parameters. */
  async inspect(): Promise<StepReport> {
    this.params.forEach(([, p], i) => {
      if (p.grad) this.kernels.sumSquares(this.norms.handle, p.grad.handle, p.size, i);
    });
    const sq = await toFloat32(this.norms);
    let total = 0;
    let nonFinite: string | null = null;
    const norms = this.params.map(([name, p], i) => {
      const s = p.grad ? sq[i] : 0;
      if (!Number.isFinite(s) && nonFinite === null) nonFinite = name;
      total += s;
      return Math.sqrt(s);
    });
    return { gradNorm: Math.sqrt(total), nonFinite, norms };
  }

  /**
   * One update with learning rate `lr` (the schedule's value), scaling gradients by
   * `gradScale` (1 / accumulation steps) and clipping the global norm.
   */
  update(lr: number, gradNorm: number, gradScale = 1): void {
    this.step++;
    const clip = this.opts.clipNorm ?? 0;
    const norm = gradNorm * gradScale;
    const clipScale = clip > 0 && norm > clip ? clip / (norm + 1e-6) : 1;
    this.params.forEach(([name, p], i) => {
      if (!p.grad) return;
      const h: AdamwHyper = {
        lr,
        beta1: this.opts.beta1 ?? 0.9,
        beta2: this.opts.beta2 ?? 0.999,
        eps: this.opts.eps ?? 1e-8,
        weightDecay: decays(name, p) ? (this.opts.weightDecay ?? 0.01) : 0,
        step: this.step,
        gradScale: gradScale * clipScale,
      };
      this.kernels.adamwStep(p.handle, this.m[i].handle, this.v[i].handle, p.grad.handle, p.size, h);
    });
  }

  zeroGrad(): void {
    for (const [, p] of this.params) {
      p.grad?.dispose();
      p.grad = null;
    }
  }

  dispose(): void {
    for (const t of [...this.m, ...this.v, this.norms]) t.dispose();
  }
}
