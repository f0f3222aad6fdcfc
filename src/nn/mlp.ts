/** Feed-forward blocks: the gated SwiGLU MLP of Llama and the GELU MLP of GPT-2. */
import type { Tensor } from "../tensor/tensor.js";
import * as ops from "../ops/index.js";
import type { UnaryOp } from "../backend/kernels.js";
import { Module, ModuleContext, normalInit } from "./module.js";
import { Linear } from "./layers.js";

/** down(act(gate(x)) * up(x)); with act = silu this is SwiGLU (Shazeer 2020). */
export class GatedMLP extends Module {
  gate_proj: Linear;
  up_proj: Linear;
  down_proj: Linear;

  constructor(
    ctx: ModuleContext,
    C: number,
    F: number,
    bias: boolean,
    readonly act: UnaryOp = "silu",
    initStd = 0.02,
  ) {
    super();
    this.gate_proj = new Linear(ctx, C, F, bias, normalInit(initStd));
    this.up_proj = new Linear(ctx, C, F, bias, normalInit(initStd));
    this.down_proj = new Linear(ctx, F, C, bias, normalInit(initStd));
  }

  forward(x: Tensor): Tensor {
    const g = this.gate_proj.forward(x); // (B, T, F)
    const u = this.up_proj.forward(x); // (B, T, F)
    const h = this.act === "silu" ? ops.swiglu(g, u) : ops.mul(ops.unary(this.act, g), u); // (B, T, F)
    return this.down_proj.forward(h); // (B, T, C)
  }
}
