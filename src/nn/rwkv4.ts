/**
 * RWKV-4 blocks (Peng et al. 2023, "RWKV: Reinventing RNNs for the Transformer Era") in the
 * layout of HF transformers models/rwkv (RwkvSelfAttention, RwkvFeedForward, RwkvBlock), with
 * the HF checkpoint names. Time mixing interpolates each input with the previous token's
 * (token shift) before the key, value and receptance projections, then runs the WKV
 * recurrence; channel mixing is a token-shifted squared-ReLU MLP gated by a receptance.
 */
import type { Tensor } from "../tensor/tensor.js";
import type { Backend } from "../backend/backend.js";
import * as ops from "../ops/index.js";
import { Module, ModuleContext, normalInit, type Init } from "./module.js";
import { LayerNorm, Linear } from "./layers.js";
import type { Rwkv4State } from "./state.js";
import { allocateRwkv4State, overwrite, storeLastStep } from "./rwkv_state.js";

export interface Rwkv4LayerConfig {
  /** model width C, attention width D (attention_hidden_size), FFN width F, layers L */
  C: number;
  D: number;
  F: number;
  L: number;
  eps: number;
  initStd: number;
}

/** x * m + x_prev * (1 - m), per channel: HF's time_mix interpolation (m stored as (1, 1, C)). */
function timeMix(x: Tensor, prev: Tensor, m: Tensor): Tensor {
  return ops.add(prev, ops.mul(ops.sub(x, prev), m.reshape([m.size]))); // (..., C)
}

/** A per-channel initial value from HF RwkvPreTrainedModel._init_weights. */
function perChannel(fn: (i: number) => number): Init {
  return { kind: "fn", fn: (_rng, i) => fn(i) };
}

export class RwkvSelfAttention extends Module {
  time_decay: Tensor; // (D): per-step log decay is -exp(time_decay)
  time_first: Tensor; // (D): the bonus u of the current token
  time_mix_key: Tensor; // (1, 1, C)
  time_mix_value: Tensor; // (1, 1, C)
  time_mix_receptance: Tensor; // (1, 1, C)
  key: Linear;
  value: Linear;
  receptance: Linear;
  output: Linear;
  private readonly backend: Backend;

  constructor(
    ctx: ModuleContext,
    private readonly cfg: Rwkv4LayerConfig,
    layer: number,
  ) {
    super();
    const { C, D, L } = cfg;
    this.backend = ctx.backend;
    const ratio0to1 = L > 1 ? layer / (L - 1) : 0;
    const ratio1toAlmost0 = 1 - layer / L;
    const ramp = (i: number) => i / C;
    this.time_decay = ctx.param([D], perChannel((h) => -5 + 8 * (h / Math.max(D - 1, 1)) ** (0.7 + 1.3 * ratio0to1)));
    this.time_first = ctx.param([D], perChannel(() => 1)); // HF's init evaluates to ones
    this.time_mix_key = ctx.param([1, 1, C], perChannel((i) => ramp(i) ** ratio1toAlmost0));
    this.time_mix_value = ctx.param([1, 1, C], perChannel((i) => ramp(i) ** ratio1toAlmost0 + 0.3 * ratio0to1));
    this.time_mix_receptance = ctx.param([1, 1, C], perChannel((i) => ramp(i) ** (0.5 * ratio1toAlmost0)));
    const init = normalInit(cfg.initStd);
    this.key = new Linear(ctx, C, D, false, init);
    this.value = new Linear(ctx, C, D, false, init);
    this.receptance = new Linear(ctx, C, D, false, init);
    this.output = new Linear(ctx, D, C, false, init, { halfCapable: false }); // rescaled in place (rescale_every)
  }

  /** x (B, T, C), the ln1 output; continues from and updates `state` when given. */
  forward(x: Tensor, state?: Rwkv4State): Tensor {
    const prev = ops.tokenShift(x, state?.attShift ?? null); // (B, T, C)
    const { r, k, v } = this.project(x, prev);
    const wkv = ops.wkv4(this.logDecay(), this.time_first, k, v, state?.wkv ?? null); // (B, T, D)
    if (state) {
      overwrite(state.wkv, wkv.state);
      storeLastStep(state.attShift, x);
    }
    return this.output.forward(ops.mul(r, wkv.y)); // (B, T, C)
  }

  /** One token: x (B, C); reads and updates `state` in place. */
  step(x: Tensor, state: Rwkv4State): Tensor {
    const { r, k, v } = this.project(x, state.attShift);
    const y = ops.wkv4Step(this.logDecay(), this.time_first, k, v, state.wkv); // (B, D)
    overwrite(state.attShift, x);
    return this.output.forward(ops.mul(r, y)); // (B, C)
  }

  /** The whole layer's state: both token shifts and the WKV state. */
  allocateState(batch: number): Rwkv4State {
    return allocateRwkv4State(this.backend, batch, this.cfg.C, this.cfg.D);
  }

  private project(x: Tensor, prev: Tensor): { r: Tensor; k: Tensor; v: Tensor } {
    const k = this.key.forward(timeMix(x, prev, this.time_mix_key)); // (..., D)
    const v = this.value.forward(timeMix(x, prev, this.time_mix_value)); // (..., D)
    const r = ops.sigmoid(this.receptance.forward(timeMix(x, prev, this.time_mix_receptance))); // (..., D)
    return { r, k, v };
  }

  private logDecay(): Tensor {
    return ops.neg(ops.exp(this.time_decay)); // (D)
  }
}

export class RwkvFeedForward extends Module {
  time_mix_key: Tensor; // (1, 1, C)
  time_mix_receptance: Tensor; // (1, 1, C)
  key: Linear; // C -> F
  receptance: Linear; // C -> C
  value: Linear; // F -> C

  constructor(ctx: ModuleContext, cfg: Rwkv4LayerConfig, layer: number) {
    super();
    const { C, F, L } = cfg;
    const ratio1toAlmost0 = 1 - layer / L;
    this.time_mix_key = ctx.param([1, 1, C], perChannel((i) => (i / C) ** ratio1toAlmost0));
    this.time_mix_receptance = ctx.param([1, 1, C], perChannel((i) => (i / C) ** ratio1toAlmost0));
    const init = normalInit(cfg.initStd);
    this.key = new Linear(ctx, C, F, false, init);
    this.receptance = new Linear(ctx, C, C, false, init);
    this.value = new Linear(ctx, F, C, false, init, { halfCapable: false }); // rescaled in place (rescale_every)
  }

  /** x (B, T, C), the ln2 output. */
  forward(x: Tensor, state?: Rwkv4State): Tensor {
    const prev = ops.tokenShift(x, state?.ffnShift ?? null); // (B, T, C)
    if (state) storeLastStep(state.ffnShift, x);
    return this.mix(x, prev);
  }

  step(x: Tensor, state: Rwkv4State): Tensor {
    const y = this.mix(x, state.ffnShift);
    overwrite(state.ffnShift, x);
    return y;
  }

  /** sigmoid(receptance(x_r)) * value(relu(key(x_k))^2) */
  private mix(x: Tensor, prev: Tensor): Tensor {
    const k = ops.unary("relu_sq", this.key.forward(timeMix(x, prev, this.time_mix_key))); // (..., F)
    const r = ops.sigmoid(this.receptance.forward(timeMix(x, prev, this.time_mix_receptance))); // (..., C)
    return ops.mul(r, this.value.forward(k)); // (..., C)
  }
}

export class RwkvBlock extends Module {
  /** layer 0 only: a LayerNorm on the embeddings */
  pre_ln: LayerNorm | null;
  ln1: LayerNorm;
  ln2: LayerNorm;
  attention: RwkvSelfAttention;
  feed_forward: RwkvFeedForward;

  constructor(ctx: ModuleContext, cfg: Rwkv4LayerConfig, layer: number) {
    super();
    this.pre_ln = layer === 0 ? new LayerNorm(ctx, cfg.C, cfg.eps) : null;
    this.ln1 = new LayerNorm(ctx, cfg.C, cfg.eps);
    this.ln2 = new LayerNorm(ctx, cfg.C, cfg.eps);
    this.attention = new RwkvSelfAttention(ctx, cfg, layer);
    this.feed_forward = new RwkvFeedForward(ctx, cfg, layer);
  }

  /** h (B, T, C) -> (B, T, C) */
  forward(h: Tensor, state?: Rwkv4State): Tensor {
    if (this.pre_ln) h = this.pre_ln.forward(h);
    h = ops.add(h, this.attention.forward(this.ln1.forward(h), state)); // (B, T, C)
    return ops.add(h, this.feed_forward.forward(this.ln2.forward(h), state)); // (B, T, C)
  }

  /** h (B, C) -> (B, C), one token through the recurrent state */
  step(h: Tensor, state: Rwkv4State): Tensor {
    if (this.pre_ln) h = this.pre_ln.forward(h);
    h = ops.add(h, this.attention.step(this.ln1.forward(h), state)); // (B, C)
    return ops.add(h, this.feed_forward.step(this.ln2.forward(h), state)); // (B, C)
  }

  allocateState(batch: number): Rwkv4State {
    return this.attention.allocateState(batch);
  }
}
