/**
 * RWKV-7 "Goose" blocks (BlinkDL RWKV-LM x070: RWKV-v7/rwkv_v7_demo.py in GPT mode,
 * rwkv_v7_numpy.py in RNN mode) with the official checkpoint names (att.*, ffn.*, ln0/1/2).
 *
 * Time mixing: six token-shift interpolations feed the receptance r, a data-dependent decay w
 * (LoRA), key k, value v (mixed with layer 0's value in later layers: the value residual), an
 * in-context learning rate a (LoRA) and an output gate g (LoRA). The normalised key kk is
 * removed from the state at rate a and k (rescaled by a) written in its place: the
 * generalized delta rule S <- S (diag(w) - kk (a * kk)^T) + v k^T, y = S r (ops.wkv7). The
 * read-out is group-normalised per head, gets a per-head bonus (r . (k * r_k)) v and the gate.
 * Channel mixing is a token-shifted squared-ReLU MLP.
 *
 * forward() and step() run the same time-mix code; only the token shift and the recurrence
 * (whole sequence or one token through the state) differ.
 */
import type { Tensor } from "../tensor/tensor.js";
import type { Backend } from "../backend/backend.js";
import * as ops from "../ops/index.js";
import { Module, ModuleContext, onesInit, zerosInit, type Init } from "./module.js";
import { LayerNorm, Linear } from "./layers.js";
import type { Rwkv7State } from "./state.js";
import { allocateRwkv7State, overwrite, storeLastStep } from "./rwkv_state.js";

export interface Rwkv7LayerConfig {
  /** width C = H heads x head size N; FFN width F; layers L */
  C: number;
  H: number;
  N: number;
  F: number;
  L: number;
  /** low-rank (LoRA) widths of the decay, in-context rate, value residual and gate */
  Dw: number;
  Da: number;
  Dv: number;
  Dg: number;
  eps: number;
  /** ln_x GroupNorm eps (64e-5 in RWKV-LM whatever the head size) */
  groupNormEps: number;
  /** WKV-7 checkpoint interval for training (ops.wkv7) */
  chunk: number;
}

/** sigmoid's upper bound on the decay exponent: w = exp(-e^-0.5 sigmoid(.)) lies in (0.545, 1). */
const DECAY_SCALE = Math.exp(-0.5);

const constInit = (value: number): Init => ({ kind: "const", value });
const fnInit = (fn: (i: number) => number): Init => ({ kind: "fn", fn: (_rng, i) => fn(i) });
const uniformInit = (bound: number): Init => ({ kind: "uniform", low: -bound, high: bound });
const normal = (std: number): Init => ({ kind: "normal", std });

/** nn.GroupNorm(H, C): per-head normalisation with a per-channel affine (the ln_x of RWKV-7). */
export class GroupNorm extends Module {
  weight: Tensor; // (C)
  bias: Tensor; // (C)

  constructor(
    ctx: ModuleContext,
    C: number,
    readonly groups: number,
    readonly eps: number,
    weightInit: Init = onesInit,
  ) {
    super();
    this.weight = ctx.param([C], weightInit);
    this.bias = ctx.param([C], zerosInit);
  }

  forward(x: Tensor): Tensor {
    return ops.groupNorm(x, this.weight, this.bias, this.groups, this.eps); // (..., C)
  }
}

/** The recurrence a time mix runs: over a sequence (forward) or one token (step). */
type Recurrence = (r: Tensor, w: Tensor, k: Tensor, v: Tensor, a: Tensor, b: Tensor) => Tensor;

export class Rwkv7TimeMix extends Module {
  x_r: Tensor; // (1, 1, C) token-shift interpolation weights
  x_w: Tensor;
  x_k: Tensor;
  x_v: Tensor;
  x_a: Tensor;
  x_g: Tensor;
  w0: Tensor; // (1, 1, C) decay LoRA: w0 + tanh(x w1) w2
  w1: Tensor; // (C, Dw)
  w2: Tensor; // (Dw, C)
  a0: Tensor; // (1, 1, C) in-context rate LoRA: a0 + x a1 a2
  a1: Tensor; // (C, Da)
  a2: Tensor; // (Da, C)
  /** value residual LoRA, layers >= 1 only */
  v0: Tensor | null; // (1, 1, C)
  v1: Tensor | null; // (C, Dv)
  v2: Tensor | null; // (Dv, C)
  g1: Tensor; // (C, Dg) gate: sigmoid(x g1) g2
  g2: Tensor; // (Dg, C)
  k_k: Tensor; // (1, 1, C) key scale for the removal key kk
  k_a: Tensor; // (1, 1, C) how much a rescales the written key
  r_k: Tensor; // (H, N) per-head bonus weights
  receptance: Linear;
  key: Linear;
  value: Linear;
  output: Linear;
  ln_x: GroupNorm;
  /** steps between WKV-7 state checkpoints when training (ops.wkv7) */
  chunk: number;
  private readonly backend: Backend;

  /** RWKV-LM x070 initialisation (train_temp/src/model.py), orthogonal LoRA matrices as scaled normals. */
  constructor(
    ctx: ModuleContext,
    private readonly cfg: Rwkv7LayerConfig,
    readonly layer: number,
  ) {
    super();
    const { C, H, N, L } = cfg;
    this.backend = ctx.backend;
    this.chunk = cfg.chunk;
    const r01 = L > 1 ? layer / (L - 1) : 0;
    const r1 = 1 - layer / L;
    const mixInit = (p: number) => fnInit((i) => 1 - (i / C) ** (p * r1));
    const linear = (i: number) => i / (C - 1 || 1) - 0.5;
    const zigzag = (i: number) => {
      const z = ((i % N) - (N - 1) / 2) / ((N - 1) / 2 || 1);
      return z * Math.abs(z);
    };
    const loraOut = normal(0.1 / Math.sqrt(C));
    this.x_r = ctx.param([1, 1, C], mixInit(0.2));
    this.x_w = ctx.param([1, 1, C], mixInit(0.9));
    this.x_k = ctx.param([1, 1, C], mixInit(0.7));
    this.x_v = ctx.param([1, 1, C], mixInit(0.7));
    this.x_a = ctx.param([1, 1, C], mixInit(0.9));
    this.x_g = ctx.param([1, 1, C], mixInit(0.2));
    const decaySpeed = (i: number) => -6 + 6 * (i / (C - 1 || 1)) ** (1 + r01 ** 0.3);
    this.w0 = ctx.param([1, 1, C], fnInit((i) => decaySpeed(i) + 0.5 + zigzag(i) * 2.5));
    this.w1 = ctx.param([C, cfg.Dw], zerosInit);
    this.w2 = ctx.param([cfg.Dw, C], loraOut);
    this.a0 = ctx.param([1, 1, C], fnInit((i) => -0.19 + zigzag(i) * 0.3 + linear(i) * 0.4));
    this.a1 = ctx.param([C, cfg.Da], zerosInit);
    this.a2 = ctx.param([cfg.Da, C], loraOut);
    const residual = layer > 0;
    this.v0 = residual ? ctx.param([1, 1, C], fnInit((i) => 0.73 - linear(i) * 0.4)) : null;
    this.v1 = residual ? ctx.param([C, cfg.Dv], zerosInit) : null;
    this.v2 = residual ? ctx.param([cfg.Dv, C], loraOut) : null;
    this.g1 = ctx.param([C, cfg.Dg], zerosInit);
    this.g2 = ctx.param([cfg.Dg, C], loraOut);
    this.k_k = ctx.param([1, 1, C], fnInit((i) => 0.71 - linear(i) * 0.1));
    this.k_a = ctx.param([1, 1, C], constInit(1.02));
    this.r_k = ctx.param([H, N], constInit(-0.04));
    const s = 1 / Math.sqrt(C);
    this.receptance = new Linear(ctx, C, C, false, uniformInit(0.5 * s));
    this.key = new Linear(ctx, C, C, false, uniformInit(0.05 * s));
    this.value = new Linear(ctx, C, C, false, uniformInit(0.5 * s));
    this.output = new Linear(ctx, C, C, false, zerosInit);
    this.ln_x = new GroupNorm(ctx, C, H, cfg.groupNormEps, constInit(((1 + layer) / L) ** 0.7));
  }

  /**
   * x (B, T, C), the ln1 output; vFirst is layer 0's value (null in layer 0). Returns the
   * layer's output and this layer's value (layer 0's becomes vFirst for the others).
   */
  forward(x: Tensor, vFirst: Tensor | null, state?: Rwkv7State): { out: Tensor; v: Tensor } {
    const [B, T] = x.shape;
    const { H, N } = this.cfg;
    const chunk = this.chunk;
    const dx = ops.sub(ops.tokenShift(x, state?.attShift ?? null), x); // (B, T, C): x_(t-1) - x_t
    const heads = (t: Tensor) => t.reshape([B, T, H, N]);
    const out = this.mix(x, dx, vFirst, (r, w, k, v, a, b) => {
      const wkv = ops.wkv7(heads(r), heads(w), heads(k), heads(v), heads(a), heads(b), state?.wkv ?? null, { chunk });
      if (state) overwrite(state.wkv, wkv.state);
      return wkv.y.reshape(x.shape); // (B, T, C)
    });
    if (state) storeLastStep(state.attShift, x);
    return out;
  }

  /** One token: x (B, C); reads and updates `state` in place. */
  step(x: Tensor, vFirst: Tensor | null, state: Rwkv7State): { out: Tensor; v: Tensor } {
    const [B] = x.shape;
    const { H, N } = this.cfg;
    const dx = ops.sub(state.attShift, x); // (B, C)
    const heads = (t: Tensor) => t.reshape([B, H, N]);
    const out = this.mix(x, dx, vFirst, (r, w, k, v, a, b) =>
      ops.wkv7Step(heads(r), heads(w), heads(k), heads(v), heads(a), heads(b), state.wkv).reshape(x.shape),
    );
    overwrite(state.attShift, x);
    return out;
  }

  /** The whole layer's state: both token shifts and the WKV state. */
  allocateState(batch: number): Rwkv7State {
    const { C, H, N } = this.cfg;
    return allocateRwkv7State(this.backend, batch, C, H, N);
  }

  /** Time mixing on x (..., C) given dx = x_prev - x, with the recurrence supplied by the caller. */
  private mix(x: Tensor, dx: Tensor, vFirst: Tensor | null, recur: Recurrence): { out: Tensor; v: Tensor } {
    const { N, H } = this.cfg;
    const lerp = (m: Tensor) => ops.add(x, ops.mul(dx, flat(m))); // (..., C)
    const xv = lerp(this.x_v);
    const r = this.receptance.forward(lerp(this.x_r)); // (..., C)
    const w = ops.exp(ops.scale(ops.sigmoid(lora(lerp(this.x_w), this.w1, this.w2, this.w0, true)), -DECAY_SCALE)); // (..., C) decay
    let k = this.key.forward(lerp(this.x_k)); // (..., C)
    let v = this.value.forward(xv); // (..., C)
    if (vFirst) {
      const mixFirst = ops.sigmoid(lora(xv, this.v1!, this.v2!, this.v0!, false)); // (..., C)
      v = ops.add(v, ops.mul(ops.sub(vFirst, v), mixFirst));
    }
    const a = ops.sigmoid(lora(lerp(this.x_a), this.a1, this.a2, this.a0, false)); // (..., C) in-context rate
    const g = ops.matmulKN(ops.sigmoid(ops.matmulKN(lerp(this.x_g), this.g1)), this.g2); // (..., C) gate
    const kk = ops.l2normalize(ops.mul(k, flat(this.k_k)), N); // (..., C) unit removal key per head
    k = ops.add(k, ops.mul(ops.sub(ops.mul(k, a), k), flat(this.k_a))); // k (1 + (a - 1) k_a)
    let y = recur(r, w, k, v, ops.neg(kk), ops.mul(kk, a)); // (..., C)
    y = this.ln_x.forward(y);
    const bonus = ops.groupSum(ops.mul(ops.mul(r, k), this.r_k.reshape([H * N])), N); // (..., H): r . (k * r_k)
    y = ops.add(y, ops.mul(ops.groupRepeat(bonus, N), v)); // (..., C)
    return { out: this.output.forward(ops.mul(y, g)), v }; // (..., C)
  }
}

/** A (1, 1, C) parameter as a (C) row that broadcasts over (..., C). */
function flat(p: Tensor): Tensor {
  return p.reshape([p.size]);
}

/** x W1 W2 + b, or tanh(x W1) W2 + b: RWKV-7's low-rank projections (W1 (C, D), W2 (D, C)). */
function lora(x: Tensor, W1: Tensor, W2: Tensor, b: Tensor, tanh: boolean): Tensor {
  const h = ops.matmulKN(x, W1); // (..., D)
  return ops.add(ops.matmulKN(tanh ? ops.tanh(h) : h, W2), flat(b)); // (..., C)
}

export class Rwkv7ChannelMix extends Module {
  x_k: Tensor; // (1, 1, C)
  key: Linear; // C -> F
  value: Linear; // F -> C

  constructor(ctx: ModuleContext, cfg: Rwkv7LayerConfig, layer: number) {
    super();
    const { C, F, L } = cfg;
    const r1 = 1 - layer / L;
    this.x_k = ctx.param([1, 1, C], fnInit((i) => 1 - (i / C) ** (r1 ** 4)));
    this.key = new Linear(ctx, C, F, false, uniformInit(0.5 / Math.sqrt(C)));
    this.value = new Linear(ctx, F, C, false, zerosInit);
  }

  /** x (B, T, C), the ln2 output. */
  forward(x: Tensor, state?: Rwkv7State): Tensor {
    const dx = ops.sub(ops.tokenShift(x, state?.ffnShift ?? null), x); // (B, T, C)
    if (state) storeLastStep(state.ffnShift, x);
    return this.mix(x, dx);
  }

  step(x: Tensor, state: Rwkv7State): Tensor {
    const y = this.mix(x, ops.sub(state.ffnShift, x));
    overwrite(state.ffnShift, x);
    return y;
  }

  /** value(relu(key(x + dx * x_k))^2) */
  private mix(x: Tensor, dx: Tensor): Tensor {
    const k = ops.unary("relu_sq", this.key.forward(ops.add(x, ops.mul(dx, flat(this.x_k))))); // (..., F)
    return this.value.forward(k); // (..., C)
  }
}

export class Rwkv7Block extends Module {
  /** layer 0 only: a LayerNorm on the embeddings */
  ln0: LayerNorm | null;
  ln1: LayerNorm;
  ln2: LayerNorm;
  att: Rwkv7TimeMix;
  ffn: Rwkv7ChannelMix;

  constructor(ctx: ModuleContext, cfg: Rwkv7LayerConfig, layer: number) {
    super();
    this.ln0 = layer === 0 ? new LayerNorm(ctx, cfg.C, cfg.eps) : null;
    this.ln1 = new LayerNorm(ctx, cfg.C, cfg.eps);
    this.ln2 = new LayerNorm(ctx, cfg.C, cfg.eps);
    this.att = new Rwkv7TimeMix(ctx, cfg, layer);
    this.ffn = new Rwkv7ChannelMix(ctx, cfg, layer);
  }

  /** h (B, T, C) -> (B, T, C); vFirst is layer 0's value, set by layer 0 itself. */
  forward(h: Tensor, vFirst: Tensor | null, state?: Rwkv7State): { h: Tensor; vFirst: Tensor } {
    if (this.ln0) h = this.ln0.forward(h);
    const att = this.att.forward(this.ln1.forward(h), vFirst, state);
    h = ops.add(h, att.out); // (B, T, C)
    h = ops.add(h, this.ffn.forward(this.ln2.forward(h), state)); // (B, T, C)
    return { h, vFirst: vFirst ?? att.v };
  }

  /** h (B, C) -> (B, C), one token through the recurrent state. */
  step(h: Tensor, vFirst: Tensor | null, state: Rwkv7State): { h: Tensor; vFirst: Tensor } {
    if (this.ln0) h = this.ln0.forward(h);
    const att = this.att.step(this.ln1.forward(h), vFirst, state);
    h = ops.add(h, att.out); // (B, C)
    h = ops.add(h, this.ffn.step(this.ln2.forward(h), state)); // (B, C)
    return { h, vFirst: vFirst ?? att.v };
  }

  allocateState(batch: number): Rwkv7State {
    return this.att.allocateState(batch);
  }
}
