/**
 * Training over several lengths of one task: batch i comes from length i mod n, so a model sees
 * every trained length equally often (recall is then compared at trained lengths, and length
 * extrapolation is a separate measurement).
 */
import type { Batch, Split, Task } from "./task.js";

export class MixedLengthTask implements Task {
  readonly name: string;
  readonly vocabSize: number;
  readonly length: number;
  readonly scoring: "example" | "position";

  constructor(readonly tasks: Task[]) {
    this.name = tasks[0].name;
    this.vocabSize = Math.max(...tasks.map((t) => t.vocabSize));
    this.length = Math.max(...tasks.map((t) => t.length));
    this.scoring = tasks[0].scoring;
  }

  batch(split: Split, index: number, B: number): Batch {
    return this.tasks[index % this.tasks.length].batch(split, Math.floor(index / this.tasks.length), B);
  }
}
