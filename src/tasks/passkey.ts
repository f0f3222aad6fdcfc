/**
 * Passkey retrieval (Mohtashami & Jaggi 2023, "Landmark Attention"): a 5-digit key hidden at a
 * chosen depth in filler, asked for at the end. Token layout as in ../shared/calibration:
 * vocabulary 64 with digits 0-9, filler 10-61, KEY = 62, QUERY = 63; the needle is
 * `KEY d1..d5` at depth x span; the sequence ends `QUERY d1..d5`; the loss is on the five
 * answer digits; an example is right when all five are.
 */
import { batchRng, makeBatch, type Batch, type Split, type Task } from "./task.js";
import { SeqlabError } from "../util/errors.js";

export const PASSKEY_VOCAB = 64;
const KEY = 62;
const QUERY = 63;
const DIGITS = 5;

export class PasskeyTask implements Task {
  readonly name = "passkey";
  readonly vocabSize = PASSKEY_VOCAB;
  readonly scoring = "example" as const;

  /** depth: fixed needle depth in [0, 1], or null for a uniform random depth per example */
  constructor(
    readonly length: number,
    readonly seed: number,
    readonly depth: number | null = null,
  ) {
    if (length < 4 * (DIGITS + 1)) throw new SeqlabError(`passkey: length ${length} is too short (at least ${4 * (DIGITS + 1)})`);
    if (depth !== null && !(depth >= 0 && depth <= 1)) throw new SeqlabError(`passkey: depth ${depth} must be in [0, 1]`);
  }

  batch(split: Split, index: number, B: number): Batch {
    const rng = batchRng(this.seed, split, index);
    const T = this.length;
    return makeBatch(B, T, (ids, targets) => {
      for (let t = 0; t < T; t++) ids[t] = rng.int(10, KEY);
      const digits = Array.from({ length: DIGITS }, () => rng.int(0, 10));
      const span = T - 2 * (DIGITS + 1);
      const p = Math.floor((this.depth ?? rng.uniform()) * (span - 1));
      ids[p] = KEY;
      digits.forEach((d, i) => (ids[p + 1 + i] = d));
      ids[T - DIGITS - 1] = QUERY;
      digits.forEach((d, i) => (ids[T - DIGITS + i] = d));
      const answers: number[] = [];
      for (let i = 0; i < DIGITS; i++) {
        targets[T - DIGITS - 1 + i] = digits[i]; // position before each answer digit predicts it
        answers.push(T - DIGITS - 1 + i);
      }
      return answers;
    });
  }
}
