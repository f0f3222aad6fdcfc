/**
 * The decoder-only stack shared by every architecture: embeddings, residual blocks, a final
 * norm and the LM head, with hidden states collected as HF's output_hidden_states reports
 * them. Most HF models report the embedding output first, then each block's output, the last
 * one after the final norm ("embeddings"); HF Mamba and Mamba-2 report every block's output
 * and then the final-normed one, without the embeddings ("blocks").
 */
import type { Tensor } from "../tensor/tensor.js";
import type { InferenceState, LayerState } from "../nn/state.js";
import { RouterLog } from "../nn/moe.js";
import type { ForwardOptions, ForwardResult } from "./causal_lm.js";
import { tidy } from "../tensor/scope.js";
import { isGradEnabled } from "../autograd/tape.js";
import * as ops from "../ops/index.js";

export interface Block {
  /**
   * h (B, T, C) at positions pos0.. -> (B, T, C); updates `state` when given; MoE blocks record
   * their routing in `router` when given
   */
  forward(h: Tensor, pos0: number, state?: LayerState, router?: RouterLog): Tensor;
}

export type HiddenStyle = "embeddings" | "blocks";

export function runStack(
  h: Tensor,
  blocks: readonly Block[],
  finalNorm: (h: Tensor) => Tensor,
  head: (h: Tensor) => Tensor,
  opts: ForwardOptions,
  style: HiddenStyle = "embeddings",
): ForwardResult {
  const state: InferenceState | undefined = opts.state;
  const pos0 = state?.position ?? 0;
  const T = h.shape[1];
  const hidden: Tensor[] = opts.outputHidden && style === "embeddings" ? [h] : [];
  const router = opts.auxLoss ? new RouterLog() : undefined;
  blocks.forEach((block, i) => {
    const x = h;
    // the router log holds tensors across blocks, so blocks keep their intermediates when it is on
    const run = () => block.forward(x, pos0, state?.layers[i], router);
    h = router ? run() : blockScope(run); // (B, T, C)
    if (opts.outputHidden && (style === "blocks" || i < blocks.length - 1)) hidden.push(h);
  });
  h = finalNorm(h); // (B, T, C)
  if (opts.outputHidden) hidden.push(h);
  const logits = head(opts.lastOnly && T > 1 ? ops.lastStep(h) : h); // (B, T, V), or (B, 1, V) with lastOnly
  if (state) state.position += T;
  const auxLoss = router?.loadBalancingLoss() ?? undefined;
  return auxLoss ? { logits, hidden, auxLoss } : { logits, hidden };
}

/**
 * Run one block's forward so that, without gradients, the tensors it made and does not return
 * are freed when it returns instead of when the caller's scope ends: inference memory is then
 * one block's intermediates, not all of them. With gradients everything must stay for backward.
 */
export function blockScope<T>(fn: () => T): T {
  return isGradEnabled() ? fn() : tidy(fn);
}
