/**
 * Synthetic and text tasks for training and evaluation. A task draws batch `index` of a split
 * from a generator seeded by (seed, split, index): batches are reproducible, resuming a run
 * replays the same stream, and the held-out split never repeats a training example's stream.
 */
import { Rng } from "../util/rng.js";

export interface Batch {
  B: number;
  T: number;
  /** inputs (B * T) */
  ids: Int32Array;
  /** what each position's logits should predict (B * T); -100 where no loss is taken */
  targets: Int32Array;
  /** example-level groups for scoring: each example's answer positions (indices into targets) */
  answers: number[][];
}

export type Split = "train" | "heldout";

export interface Task {
  readonly name: string;
  readonly vocabSize: number;
  /** the sequence length batches have */
  readonly length: number;
  batch(split: Split, index: number, B: number): Batch;
  /**
   * How examples are scored from argmax predictions: "example" counts an example right when all
   * its answer positions are (passkey), "position" counts each answer position (MQAR, copying).
   */
  readonly scoring: "example" | "position";
}

const SPLIT_SALT: Record<Split, number> = { train: 0x1234567, heldout: 0x7654321 };

export function batchRng(seed: number, split: Split, index: number): Rng {
  return new Rng((seed * 0x9e3779b1) ^ SPLIT_SALT[split] ^ Math.imul(index + 1, 0x85ebca6b));
}

/** Accuracy of argmax predictions (B * T) on a batch. */
export function score(task: Task, batch: Batch, predictions: ArrayLike<number>): { correct: number; total: number } {
  let correct = 0;
  let total = 0;
  for (const positions of batch.answers) {
    const right = positions.map((p) => predictions[p] === batch.targets[p]);
    if (task.scoring === "example") {
      total++;
      if (right.every(Boolean)) correct++;
    } else {
      total += right.length;
      correct += right.filter(Boolean).length;
    }
  }
  return { correct, total };
}

/** Builds a batch example by example; `fill` writes one row and returns its answer positions (row-relative). */
export function makeBatch(B: number, T: number, fill: (ids: Int32Array, targets: Int32Array) => number[]): Batch {
  const ids = new Int32Array(B * T);
  const targets = new Int32Array(B * T).fill(-100);
  const answers: number[][] = [];
  for (let b = 0; b < B; b++) {
    const rowIds = ids.subarray(b * T, (b + 1) * T);
    const rowTargets = targets.subarray(b * T, (b + 1) * T);
    answers.push(fill(rowIds, rowTargets).map((p) => b * T + p));
  }
  return { B, T, ids, targets, answers };
}
