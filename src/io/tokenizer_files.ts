/** Reading the JSON and template files beside a tokenizer. */
import * as fs from "node:fs";
import * as path from "node:path";
import { SeqlabError } from "../util/errors.js";

/** The RWKV World vocabulary file (rwkv_vocab_v20230424.txt and its successors). */
export const RWKV_VOCAB = /^rwkv_vocab.*\.txt$/;

/** A JSON object from `file`, or null when the file does not exist. */
export function readOptionalJson(file: string): Record<string, unknown> | null {
  if (!fs.existsSync(file)) return null;
  let j: unknown;
  try {
    j = JSON.parse(fs.readFileSync(file, "utf8"));
  } catch {
    throw new SeqlabError(`${file}: not valid JSON`);
  }
  if (typeof j !== "object" || j === null || Array.isArray(j)) throw new SeqlabError(`${file}: not a JSON object`);
  return j as Record<string, unknown>;
}

/**
 * The chat template: chat_template.jinja, else tokenizer_config.json's chat_template (a string,
 * or a list of {name, template} from which "default" is taken), else null.
 */
export function readChatTemplate(dir: string, tokenizerConfig = readOptionalJson(path.join(dir, "tokenizer_config.json"))): string | null {
  const jinja = path.join(dir, "chat_template.jinja");
  if (fs.existsSync(jinja)) return fs.readFileSync(jinja, "utf8");
  const t = tokenizerConfig?.chat_template;
  if (typeof t === "string") return t;
  if (Array.isArray(t)) {
    const named = t as { name?: unknown; template?: unknown }[];
    const d = named.find((x) => x.name === "default") ?? named[0];
    if (d && typeof d.template === "string") return d.template;
  }
  return null;
}
