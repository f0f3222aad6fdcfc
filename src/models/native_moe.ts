/**
 * The native "moe" FFN: a softmax router choosing top_k of num_experts SwiGLU experts per token
 * (Shazeer et al. 2017; Switch / Mixtral / Jamba style), optionally beside an always-on shared
 * SwiGLU expert (Granite / DeepSeek style). Section keys:
 *
 *   num_experts, top_k (or num_experts_per_tok), intermediate_size (each expert's width),
 *   norm_topk_prob (renormalise the k chosen probabilities; default false, as Jamba),
 *   shared_expert_intermediate_size (0 or absent: no shared expert), hidden_act (default silu),
 *   aux_loss_coef (weight of the load-balancing loss in training; read by the native config)
 *
 * The router records its routing in the forward's RouterLog, so training adds aux_loss_coef times
 * HF's load-balancing loss over every MoE layer.
 */
import type { Tensor } from "../tensor/tensor.js";
import * as ops from "../ops/index.js";
import { Module, type ModuleContext } from "../nn/module.js";
import { GatedMLP } from "../nn/mlp.js";
import { Experts, TopKRouter, sparseMoe, type MoeConfig, type RouterLog } from "../nn/moe.js";
import { activationFromConfig } from "./activations.js";
import { registerFfn } from "./native_parts.js";

export class NativeMoe extends Module {
  router: TopKRouter;
  experts: Experts;
  shared_expert: GatedMLP | null;

  constructor(ctx: ModuleContext, readonly cfg: MoeConfig, sharedF: number) {
    super();
    this.router = new TopKRouter(ctx, cfg);
    this.experts = new Experts(ctx, cfg);
    this.shared_expert = sharedF > 0 ? new GatedMLP(ctx, cfg.C, sharedF, false, cfg.act, cfg.initStd) : null;
  }

  /** x (B, T, C) -> (B, T, C) */
  forward(x: Tensor, router?: RouterLog): Tensor {
    const routed = sparseMoe(x, this.router, this.experts, router); // (B, T, C)
    return this.shared_expert ? ops.add(routed, this.shared_expert.forward(x)) : routed; // (B, T, C)
  }
}

registerFfn("moe", ({ ctx, C, initStd, section }) => {
  const E = section.int("num_experts", 8);
  const k = section.has("top_k") ? section.int("top_k") : section.int("num_experts_per_tok", 2);
  section.require(k <= E, `top_k ${k} exceeds num_experts ${E}`);
  const cfg: MoeConfig = {
    C,
    E,
    F: section.int("intermediate_size", 4 * C),
    k,
    normalize: section.bool("norm_topk_prob", false),
    act: activationFromConfig(section, "hidden_act", "silu"),
    initStd,
  };
  const moe = new NativeMoe(ctx, cfg, section.int("shared_expert_intermediate_size", 0, 0));
  return { module: moe, forward: (x, router) => moe.forward(x, router) };
});
