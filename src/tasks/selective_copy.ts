/**
 * Selective copying (Gu & Dao 2023, "Mamba", section 4.1; Arjovsky et al. 2016 for the plain
 * copy task): `count` data tokens scattered at random positions among noise tokens, then
 * `count` marker tokens at which the model must emit the data tokens in order. Solving it
 * requires content-dependent selection (what to remember depends on the token), which a
 * time-invariant SSM cannot do.
 */
import { batchRng, makeBatch, type Batch, type Split, type Task } from "./task.js";
import { SeqlabError } from "../util/errors.js";

export interface SelectiveCopyOptions {
  length: number;
  count: number;
  seed: number;
  /** distinct data tokens (default 8) */
  alphabet?: number;
}

export class SelectiveCopyTask implements Task {
  readonly name = "selective-copy";
  readonly scoring = "position" as const;
  readonly vocabSize: number;
  readonly length: number;
  private readonly noise: number;
  private readonly marker: number;

  constructor(readonly opts: SelectiveCopyOptions) {
    const alphabet = opts.alphabet ?? 8;
    this.noise = alphabet;
    this.marker = alphabet + 1;
    this.vocabSize = alphabet + 2;
    this.length = opts.length;
    if (opts.length < 3 * opts.count) throw new SeqlabError(`selective-copy: length ${opts.length} is too short for ${opts.count} tokens`);
  }

  batch(split: Split, index: number, B: number): Batch {
    const rng = batchRng(this.opts.seed, split, index);
    const { count } = this.opts;
    const T = this.length;
    const prefix = T - count;
    const alphabet = this.noise;
    return makeBatch(B, T, (ids, targets) => {
      ids.fill(this.noise, 0, prefix);
      const positions = rng
        .shuffle(Array.from({ length: prefix }, (_, i) => i))
        .slice(0, count)
        .sort((a, b) => a - b);
      const data = positions.map(() => rng.int(0, alphabet));
      positions.forEach((p, i) => (ids[p] = data[i]));
      const answers: number[] = [];
      for (let i = 0; i < count; i++) {
        ids[prefix + i] = this.marker;
        targets[prefix + i] = data[i];
        answers.push(prefix + i);
      }
      return answers;
    });
  }
}
