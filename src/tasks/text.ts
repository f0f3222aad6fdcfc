/**
 * Language modelling on a text file the user gives, byte-level (vocabulary 256): the first 90%
 * of the bytes train, the last 10% are held out. Batch rows are windows at seeded offsets.
 */
import * as fs from "node:fs";
import { batchRng, makeBatch, type Batch, type Split, type Task } from "./task.js";
import { SeqlabError } from "../util/errors.js";

export class TextTask implements Task {
  readonly name = "text";
  readonly vocabSize = 256;
  readonly scoring = "position" as const;
  private readonly bytes: Uint8Array;
  private readonly cut: number;

  constructor(
    readonly path: string,
    readonly length: number,
    readonly seed: number,
  ) {
    let buf: Buffer;
    try {
      buf = fs.readFileSync(path);
    } catch (e) {
      throw new SeqlabError(`${path}: cannot read (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
    }
    this.bytes = new Uint8Array(buf);
    this.cut = Math.floor(this.bytes.length * 0.9);
    const shortest = Math.min(this.cut, this.bytes.length - this.cut);
    if (shortest < length + 1) {
      throw new SeqlabError(`${path}: ${this.bytes.length} bytes is too little text for length ${length} (each split needs ${length + 1})`);
    }
  }

  batch(split: Split, index: number, B: number): Batch {
    const rng = batchRng(this.seed, split, index);
    const [lo, hi] = split === "train" ? [0, this.cut] : [this.cut, this.bytes.length];
    const T = this.length;
    return makeBatch(B, T, (ids, targets) => {
      const start = lo + rng.int(0, hi - lo - T);
      const answers: number[] = [];
      for (let t = 0; t < T; t++) {
        ids[t] = this.bytes[start + t];
        targets[t] = this.bytes[start + t + 1];
        answers.push(t);
      }
      return answers;
    });
  }
}
