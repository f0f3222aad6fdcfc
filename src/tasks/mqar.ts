/**
 * Multi-query associative recall (Arora et al. 2023, "Zoology"): `pairs` key-value pairs first,
 * then each key queried once at a random later position; the model must emit its value.
 * Keys, values and filler come from disjoint ranges of the vocabulary. Accuracy per query.
 */
import { batchRng, makeBatch, type Batch, type Split, type Task } from "./task.js";
import { SeqlabError } from "../util/errors.js";

export interface MqarOptions {
  length: number;
  pairs: number;
  seed: number;
  /** size of the key and of the value alphabet */
  alphabet?: number;
}

export class MqarTask implements Task {
  readonly name = "mqar";
  readonly scoring = "position" as const;
  readonly vocabSize: number;
  readonly length: number;
  private readonly alphabet: number;

  constructor(readonly opts: MqarOptions) {
    this.alphabet = opts.alphabet ?? 32;
    this.length = opts.length;
    this.vocabSize = 2 * this.alphabet + 16; // keys, values, 16 filler tokens
    if (opts.pairs > this.alphabet) throw new SeqlabError(`mqar: ${opts.pairs} pairs need at least as many keys (alphabet ${this.alphabet})`);
    if (opts.length < 4 * opts.pairs + 2) throw new SeqlabError(`mqar: length ${opts.length} is too short for ${opts.pairs} pairs`);
  }

  batch(split: Split, index: number, B: number): Batch {
    const rng = batchRng(this.opts.seed, split, index);
    const { pairs } = this.opts;
    const A = this.alphabet;
    const T = this.length;
    return makeBatch(B, T, (ids, targets) => {
      for (let t = 0; t < T; t++) ids[t] = 2 * A + rng.int(0, 16);
      const keys = rng.shuffle(Array.from({ length: A }, (_, i) => i)).slice(0, pairs);
      const values = keys.map(() => A + rng.int(0, A));
      keys.forEach((k, i) => {
        ids[2 * i] = k;
        ids[2 * i + 1] = values[i];
      });
      // query slots are (key, value) pairs at even offsets after the context
      const slots = Math.floor((T - 2 * pairs) / 2);
      const chosen = rng.shuffle(Array.from({ length: slots }, (_, i) => i)).slice(0, pairs);
      const answers: number[] = [];
      rng.shuffle(keys.map((_, i) => i)).forEach((pairIndex, q) => {
        const pos = 2 * pairs + 2 * chosen[q];
        ids[pos] = keys[pairIndex];
        ids[pos + 1] = values[pairIndex];
        targets[pos] = values[pairIndex];
        answers.push(pos);
      });
      return answers;
    });
  }

  /**
   * The accuracy of recalling nothing: answering each query with one of the context's values
   * that no earlier query has asked for, uniformly (the strategy a model finds before it binds
   * keys to values; its loss is the mean of ln(values left)). With p distinct values it is
   * (1 + 1/2 + ... + 1/p) / p, 52.1% for 4 pairs; computed exactly over held-out batches, where
   * values may repeat.
   */
  guessAccuracy(batches: number, B: number): number {
    let sum = 0;
    let count = 0;
    for (let i = 0; i < batches; i++) {
      const { ids, targets, answers } = this.batch("heldout", i, B);
      answers.forEach((positions, b) => {
        const left = Array.from({ length: this.opts.pairs }, (_, j) => ids[b * this.length + 2 * j + 1]);
        for (const pos of [...positions].sort((x, y) => x - y)) {
          const want = targets[pos];
          sum += left.filter((v) => v === want).length / left.length;
          count++;
          left.splice(left.indexOf(want), 1);
        }
      });
    }
    return sum / count;
  }
}
