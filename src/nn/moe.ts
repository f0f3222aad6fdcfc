/**
 * Mixture-of-experts FFN pieces (Shazeer et al. 2017; Fedus et al. 2021, Switch Transformer), in
 * the runtime layout of transformers 5.x: a router weight (E, C) and the experts kept fused as
 * `experts.gate_up_proj` (E, 2F, C) (gate rows first, then up) and `experts.down_proj` (E, C, F).
 * Checkpoint files that store experts one by one are converted on load (models/checkpoint_names.ts).
 *
 * Each architecture names its block's fields after its own checkpoint (Qwen3-Next `gate`,
 * Jamba `router`, Granite `router` + `shared_mlp`), so blocks live with their models and are built
 * from these parts.
 */
import type { Tensor } from "../tensor/tensor.js";
import * as ops from "../ops/index.js";
import type { Routing } from "../ops/moe.js";
import type { UnaryOp } from "../backend/kernels.js";
import { Module, ModuleContext, normalInit } from "./module.js";
import { Linear } from "./layers.js";

export interface MoeConfig {
  /** width C, experts E, expert FFN width F, experts per token k */
  C: number;
  E: number;
  F: number;
  k: number;
  /** divide the k chosen probabilities by their sum (HF norm_topk_prob) */
  normalize: boolean;
  act: UnaryOp;
  initStd: number;
}

/** Every MoE layer's routing of one forward, for the load-balancing loss. */
export class RouterLog {
  readonly routings: Routing[] = [];

  record(r: Routing): void {
    this.routings.push(r);
  }

  /** HF's aux_loss over all layers recorded (see ops.loadBalancingLoss); null when none were. */
  loadBalancingLoss(): Tensor | null {
    if (this.routings.length === 0) return null;
    return ops.loadBalancingLoss(
      this.routings.map((r) => r.probs),
      this.routings.map((r) => r.indices),
    );
  }
}

/** Softmax router: logits = x W^T, then the top-k experts of each token. */
export class TopKRouter extends Module {
  weight: Tensor; // (E, C)

  constructor(
    ctx: ModuleContext,
    readonly cfg: MoeConfig,
  ) {
    super();
    this.weight = ctx.param([cfg.E, cfg.C], normalInit(cfg.initStd));
  }

  /** x (N, C) -> routing of each token */
  forward(x: Tensor): Routing {
    const logits = ops.linear(x, this.weight); // (N, E)
    return ops.routeTopK(logits, this.cfg.k, this.cfg.normalize);
  }
}

/** E gated MLPs; each runs only on the tokens routed to it. */
export class Experts extends Module {
  gate_up_proj: Tensor; // (E, 2F, C)
  down_proj: Tensor; // (E, C, F)

  constructor(
    ctx: ModuleContext,
    readonly cfg: MoeConfig,
  ) {
    super();
    const { E, F, C } = cfg;
    this.gate_up_proj = ctx.param([E, 2 * F, C], normalInit(cfg.initStd));
    this.down_proj = ctx.param([E, C, F], normalInit(cfg.initStd));
  }

  /** x (N, C) -> sum over each token's experts of weight * down(act(gate(x)) * up(x)) (N, C) */
  forward(x: Tensor, r: Routing): Tensor {
    const { E, F, act } = this.cfg;
    const groups = ops.groupByExpert(r.indices, E);
    const xs = ops.gatherToExperts(x, groups); // (N * k, C), grouped by expert
    const [g, u] = ops.split(ops.groupedLinear(xs, this.gate_up_proj, groups), [F, F]); // (N * k, F) each
    const h = act === "silu" ? ops.swiglu(g, u) : ops.mul(ops.unary(act, g), u); // (N * k, F)
    const ys = ops.groupedLinear(h, this.down_proj, groups); // (N * k, C)
    return ops.combineFromExperts(ys, r.weights, groups); // (N, C)
  }
}

/**
 * A gated MLP with its gate and up projections fused in one Linear, gate rows first: Granite's
 * shared expert (GraniteMoeHybridMLP, `shared_mlp.input_linear` / `output_linear`).
 */
export class FusedGatedMLP extends Module {
  input_linear: Linear; // (2F, C)
  output_linear: Linear; // (C, F)

  constructor(
    ctx: ModuleContext,
    C: number,
    readonly F: number,
    readonly act: UnaryOp,
    initStd: number,
  ) {
    super();
    this.input_linear = new Linear(ctx, C, 2 * F, false, normalInit(initStd));
    this.output_linear = new Linear(ctx, F, C, false, normalInit(initStd));
  }

  forward(x: Tensor): Tensor {
    const [g, u] = ops.split(this.input_linear.forward(x), [this.F, this.F]); // (..., F) each
    const h = this.act === "silu" ? ops.swiglu(g, u) : ops.mul(ops.unary(this.act, g), u); // (..., F)
    return this.output_linear.forward(h); // (..., C)
  }
}

/** Route x (B, T, C) through `router` and `experts`, logging the routing when asked. */
export function sparseMoe(x: Tensor, router: TopKRouter, experts: Experts, log?: RouterLog): Tensor {
  const flat = x.reshape([-1, x.dim(-1)]); // (N, C)
  const routing = router.forward(flat);
  log?.record(routing);
  return experts.forward(flat, routing).reshape(x.shape); // (B, T, C)
}
