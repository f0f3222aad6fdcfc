/**
 * Rotary embedding frequencies (Su et al. 2021) and the scaled variants HF configs name:
 * default, linear (position interpolation), llama3 and yarn (Peng et al. 2023), following
 * transformers' modeling_rope_utils.
 */
import type { Tensor } from "../tensor/tensor.js";
import * as ops from "../ops/index.js";
import { ModuleContext } from "./module.js";

export interface RopeConfig {
  type: "default" | "linear" | "llama3" | "yarn";
  theta: number;
  /** rotated dims per head (head size x partial_rotary_factor) */
  rotDim: number;
  factor: number;
  /** llama3 */
  lowFreqFactor: number;
  highFreqFactor: number;
  originalMaxPositions: number;
  /** yarn */
  betaFast: number;
  betaSlow: number;
  attentionFactor: number | null;
  mscale: number | null;
  mscaleAllDim: number | null;
}

export function defaultRope(theta: number, rotDim: number): RopeConfig {
  return {
    type: "default",
    theta,
    rotDim,
    factor: 1,
    lowFreqFactor: 1,
    highFreqFactor: 4,
    originalMaxPositions: 8192,
    betaFast: 32,
    betaSlow: 1,
    attentionFactor: null,
    mscale: null,
    mscaleAllDim: null,
  };
}

/** inverse frequencies (rotDim / 2) and the cos/sin multiplier */
export function ropeFrequencies(r: RopeConfig): { invFreq: Float32Array; attnScaling: number } {
  const half = r.rotDim / 2;
  const base = new Float32Array(half);
  for (let i = 0; i < half; i++) base[i] = 1 / Math.pow(r.theta, Math.fround((2 * i) / r.rotDim));
  switch (r.type) {
    case "default":
      return { invFreq: base, attnScaling: 1 };
    case "linear":
      return { invFreq: base.map((f) => f / r.factor), attnScaling: 1 };
    case "llama3":
      return { invFreq: llama3(base, r), attnScaling: 1 };
    case "yarn":
      return yarn(r);
  }
}

function llama3(inv: Float32Array, r: RopeConfig): Float32Array {
  const lowWavelen = r.originalMaxPositions / r.lowFreqFactor;
  const highWavelen = r.originalMaxPositions / r.highFreqFactor;
  return inv.map((f) => {
    const wavelen = (2 * Math.PI) / f;
    if (wavelen < highWavelen) return f;
    if (wavelen > lowWavelen) return f / r.factor;
    const smooth = (r.originalMaxPositions / wavelen - r.lowFreqFactor) / (r.highFreqFactor - r.lowFreqFactor);
    return (1 - smooth) * (f / r.factor) + smooth * f;
  });
}

function yarn(r: RopeConfig): { invFreq: Float32Array; attnScaling: number } {
  const dim = r.rotDim;
  const getMscale = (scale: number, m = 1) => (scale <= 1 ? 1 : 0.1 * m * Math.log(scale) + 1);
  let attnScaling = r.attentionFactor ?? getMscale(r.factor);
  if (r.attentionFactor === null && r.mscale !== null && r.mscaleAllDim !== null) {
    attnScaling = getMscale(r.factor, r.mscale) / getMscale(r.factor, r.mscaleAllDim);
  }
  const correctionDim = (rot: number) =>
    (dim * Math.log(r.originalMaxPositions / (rot * 2 * Math.PI))) / (2 * Math.log(r.theta));
  const low = Math.max(Math.floor(correctionDim(r.betaFast)), 0);
  let high = Math.min(Math.ceil(correctionDim(r.betaSlow)), dim - 1);
  if (low === high) high += 0.001;
  const half = dim / 2;
  const inv = new Float32Array(half);
  for (let i = 0; i < half; i++) {
    const posFreq = Math.pow(r.theta, (2 * i) / dim);
    const ramp = Math.min(1, Math.max(0, (i - low) / (high - low)));
    const extrapolationFactor = 1 - ramp;
    inv[i] = (1 / (r.factor * posFreq)) * (1 - extrapolationFactor) + (1 / posFreq) * extrapolationFactor;
  }
  return { invFreq: inv, attnScaling };
}

export class RotaryEmbedding {
  readonly invFreq: Tensor; // (rotDim / 2)
  readonly attnScaling: number;

  constructor(
    ctx: ModuleContext,
    readonly config: RopeConfig,
  ) {
    const { invFreq, attnScaling } = ropeFrequencies(config);
    this.invFreq = ctx.buffer(invFreq, [invFreq.length]);
    this.attnScaling = attnScaling;
  }

  /** x (B, T, H, K) at positions pos0 .. pos0 + T - 1 */
  forward(x: Tensor, pos0: number): Tensor {
    return ops.rope(x, this.invFreq, { pos0, rotDim: this.config.rotDim, attnScaling: this.attnScaling });
  }
}
