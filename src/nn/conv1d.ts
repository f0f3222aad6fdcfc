/**
 * The short causal depthwise convolution in front of every Mamba / Mamba-2 SSM: HF's
 * nn.Conv1d(D, D, W, groups=D, padding=W-1) with the output cut to the first T steps, which
 * is a causal filter of the last W inputs per channel. Its inference state is the window of
 * the last W - 1 inputs (channel-last (B, W-1, D)).
 */
import type { Tensor } from "../tensor/tensor.js";
import * as ops from "../ops/index.js";
import type { UnaryOp } from "../backend/kernels.js";
import { Module, ModuleContext, zerosInit } from "./module.js";

export class CausalConv1d extends Module {
  weight: Tensor; // (D, 1, W), as nn.Conv1d stores a depthwise filter
  bias: Tensor | null; // (D)

  constructor(
    ctx: ModuleContext,
    readonly D: number,
    readonly W: number,
    bias: boolean,
  ) {
    super();
    // kaiming_uniform(a = sqrt(5)) with fan_in = W, PyTorch's Conv1d default that HF re-applies
    const bound = 1 / Math.sqrt(W);
    this.weight = ctx.param([D, 1, W], { kind: "uniform", low: -bound, high: bound });
    this.bias = bias ? ctx.param([D], zerosInit) : null;
  }

  /** x (B, T, D); continues from and updates the window `state` (B, W-1, D) when given. */
  forward(x: Tensor, state?: Tensor): Tensor {
    const w = this.weight.reshape([this.D, this.W]); // (D, W)
    return ops.causalConv1d(x, w, this.bias, { initial: state, final: state }); // (B, T, D)
  }

  /** One token x (B, D) through the window state, updated in place. */
  step(x: Tensor, state: Tensor, act?: UnaryOp): Tensor {
    return ops.causalConv1dStep(x, this.weight.reshape([this.D, this.W]), this.bias, state, act); // (B, D)
  }
}
