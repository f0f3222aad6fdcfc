/**
 * The training objective of one batch, free of any file I/O so that the trainer (Node) and the
 * browser playground's in-tab training compute the same loss.
 */
import { fromArray } from "../backend/alloc.js";
import * as ops from "../ops/index.js";
import type { CausalLM } from "../models/causal_lm.js";

/**
 * Loss of one batch: cross-entropy over the task's target positions, plus, for MoE models,
 * router_aux_loss_coef times the router load-balancing loss (as HF's MoE causal LMs add it).
 */
export function batchLoss(model: CausalLM, ids: Int32Array, targets: Int32Array, B: number, T: number) {
  const x = model.tokens(ids, B, T); // (B, T)
  const coef = model.config.routerAuxLossCoef ?? 0;
  const { logits, auxLoss } = model.forward(x, { auxLoss: coef > 0 }); // (B, T, V)
  const y = fromArray(model.backend, targets, [B * T], "i32");
  const ce = ops.crossEntropy(logits, y); // (1)
  return auxLoss ? ops.add(ce, ops.scale(auxLoss, coef)) : ce; // (1)
}
