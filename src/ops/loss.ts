/** Mean next-token cross-entropy, as HF causal LMs compute it. */
import { Tensor } from "../tensor/tensor.js";
import { lastDim, rows } from "../tensor/shape.js";
import { backendOf, empty, kernelsOf } from "../backend/alloc.js";
import { needsGrad, record } from "../autograd/tape.js";
import { assert } from "../util/errors.js";

/** logits (N, V) or (B, T, V), targets i32 of N (negative = ignored) -> scalar (1) */
export function crossEntropy(logits: Tensor, targets: Tensor): Tensor {
  const V = lastDim(logits.shape);
  const N = rows(logits.shape);
  assert(targets.size === N, () => `crossEntropy: ${targets.size} targets for ${N} rows`);
  const be = backendOf(logits);
  const k = kernelsOf(logits);
  const loss = empty(be, [1]);
  const lse = empty(be, [N]);
  k.crossEntropyForward(loss.handle, lse.handle, logits.handle, targets.handle, N, V);
  if (needsGrad(logits)) {
    record("cross_entropy", [logits], [loss], ([dloss]) => {
      const dlogits = empty(be, logits.shape);
      k.crossEntropyBackward(dlogits.handle, dloss!.handle, logits.handle, lse.handle, targets.handle, N, V);
      return [dlogits];
    });
  } else {
    lse.dispose();
  }
  return loss;
}
