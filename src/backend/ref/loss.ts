/**
 * Reference softmax cross-entropy over rows of logits (N, V). Rows whose target is negative
 * (HF's ignore index -100) are skipped; the loss is the mean over the counted rows, as
 * torch.nn.functional.cross_entropy(reduction="mean") computes it.
 */
import type { HostArray } from "../../tensor/dtype.js";

export function crossEntropyForward(
  loss: HostArray,
  lse: HostArray,
  logits: HostArray,
  targets: HostArray,
  N: number,
  V: number,
): void {
  let total = 0;
  let count = 0;
  for (let r = 0; r < N; r++) {
    let m = -Infinity;
    for (let j = 0; j < V; j++) m = Math.max(m, logits[r * V + j]);
    let s = 0;
    for (let j = 0; j < V; j++) s += Math.exp(logits[r * V + j] - m);
    lse[r] = m + Math.log(s);
    if (targets[r] < 0) continue;
    total += lse[r] - logits[r * V + targets[r]];
    count++;
  }
  loss[0] = count > 0 ? total / count : 0;
}

export function crossEntropyBackward(
  dlogits: HostArray,
  dloss: HostArray,
  logits: HostArray,
  lse: HostArray,
  targets: HostArray,
  N: number,
  V: number,
): void {
  let count = 0;
  for (let r = 0; r < N; r++) if (targets[r] >= 0) count++;
  const g = count > 0 ? dloss[0] / count : 0;
  for (let r = 0; r < N; r++) {
    for (let j = 0; j < V; j++) {
      const p = Math.exp(logits[r * V + j] - lse[r]);
      dlogits[r * V + j] = targets[r] < 0 ? 0 : g * (p - (j === targets[r] ? 1 : 0));
    }
  }
}
