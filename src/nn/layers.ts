/** The basic parameterised layers: Linear, Embedding, RMSNorm, LayerNorm. */
import type { Tensor } from "../tensor/tensor.js";
import * as ops from "../ops/index.js";
import { Module, ModuleContext, normalInit, onesInit, zerosInit, type Init, type ParamOptions } from "./module.js";

export class Linear extends Module {
  weight: Tensor; // (out, in), as nn.Linear
  bias: Tensor | null;

  /**
   * The weight may be kept in half precision (it is read only by ops.linear); a module that
   * touches it otherwise (an in-place rescale) passes { halfCapable: false }.
   */
  constructor(
    ctx: ModuleContext,
    inFeatures: number,
    outFeatures: number,
    bias: boolean,
    init: Init = normalInit(0.02),
    opts: ParamOptions = { halfCapable: true },
  ) {
    super();
    this.weight = ctx.param([outFeatures, inFeatures], init, opts);
    this.bias = bias ? ctx.param([outFeatures], zerosInit) : null;
  }

  forward(x: Tensor): Tensor {
    return ops.linear(x, this.weight, this.bias); // (..., out)
  }
}

export class Embedding extends Module {
  weight: Tensor; // (V, C)

  /** `paddingIdx`: nn.Embedding's padding_idx, the row that gets no gradient from lookups (HF pad_token_id) */
  constructor(
    ctx: ModuleContext,
    V: number,
    C: number,
    init: Init = normalInit(0.02),
    readonly paddingIdx: number | null = null,
  ) {
    super();
    this.weight = ctx.param([V, C], init, { halfCapable: true });
  }

  forward(ids: Tensor): Tensor {
    return ops.embedding(ids, this.weight, this.paddingIdx); // (..., C)
  }
}

export class RMSNorm extends Module {
  weight: Tensor; // (C)

  /** offset 1: the (1 + w) zero-centred form, whose weights start at 0. */
  constructor(
    ctx: ModuleContext,
    C: number,
    readonly eps: number,
    readonly offset = 0,
  ) {
    super();
    this.weight = ctx.param([C], offset === 0 ? onesInit : zerosInit);
  }

  forward(x: Tensor): Tensor {
    return ops.rmsnorm(x, this.weight, this.eps, this.offset);
  }
}

export class LayerNorm extends Module {
  weight: Tensor; // (C)
  bias: Tensor | null;

  constructor(
    ctx: ModuleContext,
    C: number,
    readonly eps: number,
    bias = true,
  ) {
    super();
    this.weight = ctx.param([C], onesInit);
    this.bias = bias ? ctx.param([C], zerosInit) : null;
  }

  forward(x: Tensor): Tensor {
    return ops.layernorm(x, this.weight, this.bias, this.eps);
  }
}
