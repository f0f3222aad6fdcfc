/** Tasks by name, from a plain spec (what the CLI parses and checkpoints store). */
import type { Task } from "./task.js";
import { PasskeyTask } from "./passkey.js";
import { MqarTask } from "./mqar.js";
import { SelectiveCopyTask } from "./selective_copy.js";
import { InductionTask } from "./induction.js";
import { TextTask } from "./text.js";
import { SeqlabError } from "../util/errors.js";

export interface TaskSpec {
  name: string;
  length: number;
  seed: number;
  /** passkey: needle depth in [0, 1] (random when absent) */
  depth?: number;
  /** mqar: key-value pairs */
  pairs?: number;
  /** mqar: how many distinct keys (and values) there are to draw from */
  alphabet?: number;
  /** selective-copy: tokens to copy */
  count?: number;
  /** induction: vocabulary size */
  vocab?: number;
  /** text: the file */
  data?: string;
}

export const TASK_NAMES = ["passkey", "mqar", "selective-copy", "induction", "text"] as const;

export function makeTask(s: TaskSpec): Task {
  switch (s.name) {
    case "passkey":
      return new PasskeyTask(s.length, s.seed, s.depth ?? null);
    case "mqar":
      return new MqarTask({ length: s.length, pairs: s.pairs ?? 8, seed: s.seed, alphabet: s.alphabet });
    case "selective-copy":
      return new SelectiveCopyTask({ length: s.length, count: s.count ?? 16, seed: s.seed });
    case "induction":
      return new InductionTask(s.length, s.seed, s.vocab ?? 32);
    case "text":
      if (!s.data) throw new SeqlabError("task text needs --data FILE (a text file to model)");
      return new TextTask(s.data, s.length, s.seed);
  }
  throw new SeqlabError(`task "${s.name}" is unknown (tasks: ${TASK_NAMES.join(", ")})`);
}
