/**
 * The marker a seqlab model carries when it was trained on one of seqlab's tasks rather than on
 * text with a tokenizer: the "seqlab_task" entry `seqlab train` writes into config.json, e.g.
 * {"name": "passkey", "length": 48, "seed": 0}. It tells the commands how to talk to the model:
 * the byte-level "text" task means the byte tokenizer; synthetic tasks (passkey ...) are spoken
 * in token ids.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { SeqlabError } from "../util/errors.js";

export const TASK_KEY = "seqlab_task";

export interface TaskMarker {
  /** the task's name, as Task.name ("passkey", "text", "mqar" ...) */
  name: string;
  /** the sequence length it was trained at, when recorded */
  length?: number;
  /** where it came from (for messages) */
  source: string;
}

/** The task marker in a model directory's config.json, or null when it has none. */
export function readTaskMarker(dir: string): TaskMarker | null {
  const file = path.join(dir, "config.json");
  if (!fs.existsSync(file)) return null;
  let config: unknown;
  try {
    config = JSON.parse(fs.readFileSync(file, "utf8"));
  } catch {
    throw new SeqlabError(`${file}: not valid JSON`);
  }
  const m = (config as Record<string, unknown> | null)?.[TASK_KEY];
  if (m === undefined || m === null) return null;
  const source = `${file} (${TASK_KEY})`;
  const { name, length } = m as { name?: unknown; length?: unknown };
  if (typeof name !== "string" || name === "") throw new SeqlabError(`${source}: "name" must name a task, got ${JSON.stringify(name)}`);
  if (length !== undefined && !(Number.isSafeInteger(length) && (length as number) > 0)) {
    throw new SeqlabError(`${source}: "length" must be a positive integer, got ${JSON.stringify(length)}`);
  }
  return { name, length: length as number | undefined, source };
}
