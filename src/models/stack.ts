/**
 * The decoder-only stack shared by every architecture: embeddings, residual blocks, a final
 * norm and the LM head, with hidden states collected as HF's output_hidden_states reports
 * them (embedding output first, each block's output, the last one after the final norm).
 */
import type { Tensor } from "../tensor/tensor.js";
import type { InferenceState, LayerState } from "../nn/state.js";
import { RouterLog } from "../nn/moe.js";
import type { ForwardOptions, ForwardResult } from "./causal_lm.js";

export interface Block {
  /**
   * h (B, T, C) at positions pos0.. -> (B, T, C); updates `state` when given; MoE blocks record
   * their routing in `router` when given
   */
  forward(h: Tensor, pos0: number, state?: LayerState, router?: RouterLog): Tensor;
}

export function runStack(
  h: Tensor,
  blocks: readonly Block[],
  finalNorm: (h: Tensor) => Tensor,
  head: (h: Tensor) => Tensor,
  opts: ForwardOptions,
): ForwardResult {
  const state: InferenceState | undefined = opts.state;
  const pos0 = state?.position ?? 0;
  const T = h.shape[1];
  const hidden: Tensor[] = opts.outputHidden ? [h] : [];
  const router = opts.auxLoss ? new RouterLog() : undefined;
  blocks.forEach((block, i) => {
    h = block.forward(h, pos0, state?.layers[i], router); // (B, T, C)
    if (opts.outputHidden && i < blocks.length - 1) hidden.push(h);
  });
  h = finalNorm(h); // (B, T, C)
  if (opts.outputHidden) hidden.push(h);
  const logits = head(h); // (B, T, V)
  if (state) state.position += T;
  const auxLoss = router?.loadBalancingLoss() ?? undefined;
  return auxLoss ? { logits, hidden, auxLoss } : { logits, hidden };
}
