/**
 * Induction heads (Olsson et al. 2022): a random sequence followed by a repeat of itself; on the
 * repeat, predicting the next token needs "find the previous occurrence of this token, copy what
 * followed". The loss and accuracy are on the repeated half.
 */
import { batchRng, makeBatch, type Batch, type Split, type Task } from "./task.js";
import { SeqlabError } from "../util/errors.js";

export class InductionTask implements Task {
  readonly name = "induction";
  readonly scoring = "position" as const;

  constructor(
    readonly length: number,
    readonly seed: number,
    readonly vocabSize = 32,
  ) {
    if (length < 4 || length % 2 !== 0) throw new SeqlabError(`induction: length ${length} must be an even number >= 4`);
  }

  batch(split: Split, index: number, B: number): Batch {
    const rng = batchRng(this.seed, split, index);
    const T = this.length;
    const half = T / 2;
    return makeBatch(B, T, (ids, targets) => {
      for (let t = 0; t < half; t++) ids[t] = rng.int(0, this.vocabSize);
      for (let t = 0; t < half; t++) ids[half + t] = ids[t];
      const answers: number[] = [];
      for (let t = half; t < T - 1; t++) {
        targets[t] = ids[t + 1];
        answers.push(t);
      }
      return answers;
    });
  }
}
