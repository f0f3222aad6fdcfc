/** Held-out evaluation: mean loss and task accuracy from argmax predictions. */
import { tidyAsync } from "../tensor/scope.js";
import { fromArray, scalar, toFloat32 } from "../backend/alloc.js";
import { noGradAsync } from "../autograd/tape.js";
import * as ops from "../ops/index.js";
import type { CausalLM } from "../models/causal_lm.js";
import { score, type Batch, type Task } from "../tasks/task.js";

export interface EvalResult {
  loss: number;
  accuracy: number;
  correct: number;
  total: number;
}

/** argmax over the last dim of logits (B * T * V) */
export function argmaxRows(logits: Float32Array, V: number): Int32Array {
  const n = logits.length / V;
  const out = new Int32Array(n);
  for (let r = 0; r < n; r++) {
    let best = 0;
    for (let j = 1; j < V; j++) if (logits[r * V + j] > logits[r * V + best]) best = j;
    out[r] = best;
  }
  return out;
}

/** Predictions and loss for one batch. */
export async function predict(model: CausalLM, b: Batch): Promise<{ loss: number; predictions: Int32Array }> {
  return noGradAsync(() =>
    tidyAsync(async () => {
      const { logits } = model.forward(model.tokens(b.ids, b.B, b.T)); // (B, T, V)
      const loss = ops.crossEntropy(logits, fromArray(model.backend, b.targets, [b.B * b.T], "i32"));
      return { loss: await scalar(loss), predictions: argmaxRows(await toFloat32(logits), model.config.V) };
    }),
  );
}

export async function evaluate(model: CausalLM, task: Task, o: { batches: number; batch: number; split?: "heldout" | "train" }): Promise<EvalResult> {
  let loss = 0;
  let correct = 0;
  let total = 0;
  for (let i = 0; i < o.batches; i++) {
    const b = task.batch(o.split ?? "heldout", i, o.batch);
    const r = await predict(model, b);
    loss += r.loss;
    const s = score(task, b, r.predictions);
    correct += s.correct;
    total += s.total;
  }
  return { loss: loss / o.batches, accuracy: total ? correct / total : 0, correct, total };
}
