/**
 * Training over several lengths of one task: batch i comes from length i mod n, so a model sees
 * every trained length equally often (recall is then compared at trained lengths, and length
 * extrapolation is a separate measurement). Batches hold the same number of tokens whatever
 * their length: B sequences of the shortest length, proportionally fewer of the longer ones.
 */
import type { Batch, Split, Task } from "./task.js";

export class MixedLengthTask implements Task {
  readonly name: string;
  readonly vocabSize: number;
  readonly length: number;
  readonly scoring: "example" | "position";
  private readonly shortest: number;

  constructor(readonly tasks: Task[]) {
    this.name = tasks[0].name;
    this.vocabSize = Math.max(...tasks.map((t) => t.vocabSize));
    this.length = Math.max(...tasks.map((t) => t.length));
    this.shortest = Math.min(...tasks.map((t) => t.length));
    this.scoring = tasks[0].scoring;
  }

  batch(split: Split, index: number, B: number): Batch {
    const task = this.tasks[index % this.tasks.length];
    const rows = Math.max(1, Math.round((B * this.shortest) / task.length));
    return task.batch(split, Math.floor(index / this.tasks.length), rows);
  }
}
