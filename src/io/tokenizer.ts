/**
 * Tokenizers: text <-> token ids, one interface for the three kinds a model directory can hold,
 * chosen by what it contains (in this order):
 *   tokenizer.json            Hugging Face tokenizers (BPE, Unigram, WordPiece ...) via
 *                             @huggingface/tokenizers, with tokenizer_config.json
 *   rwkv_vocab*.txt           the RWKV World tokenizer (greedy longest match over bytes)
 *   config.json seqlab_task   the byte tokenizer (vocabulary 256) of seqlab models trained on
 *     named "text"            the byte-level text task
 * Special tokens come from tokenizer_config.json and generation_config.json; a chat template from
 * tokenizer_config.json's chat_template or chat_template.jinja.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { SeqlabError } from "../util/errors.js";
import { readTaskMarker, TASK_KEY } from "./task_marker.js";
import { readChatTemplate, RWKV_VOCAB } from "./tokenizer_files.js";
import { loadHfTokenizer } from "./tokenizer_hf.js";
import { RwkvWorldTokenizer } from "./tokenizer_rwkv.js";
import { ByteTokenizer } from "./tokenizer_byte.js";

export interface EncodeOptions {
  /** add what the tokenizer adds around a text (BOS for Llama tokenizers); default true */
  addSpecialTokens?: boolean;
}

export interface DecodeOptions {
  /** leave out special tokens (BOS, EOS, chat markers); default false */
  skipSpecialTokens?: boolean;
}

export interface Tokenizer {
  readonly kind: "hf" | "rwkv-world" | "byte";
  /** the file it was read from (for messages) */
  readonly source: string;
  /** ids it can produce are below this */
  readonly vocabSize: number;
  readonly bosId: number | null;
  /** generation stops at any of these */
  readonly eosIds: readonly number[];
  /** special token strings a chat template may use (bos_token, eos_token ...) */
  readonly specialTokens: Readonly<Record<string, string>>;
  /** Jinja chat template, or null */
  readonly chatTemplate: string | null;
  encode(text: string, opts?: EncodeOptions): number[];
  /** Incomplete UTF-8 at the end decodes to U+FFFD (see generate/stream.ts). */
  decode(ids: readonly number[], opts?: DecodeOptions): string;
}

/** The tokenizer of a model directory, or a one-line error saying what was looked for. */
export function loadTokenizer(dir: string): Tokenizer {
  if (fs.existsSync(path.join(dir, "tokenizer.json"))) return loadHfTokenizer(dir);
  const rwkv = fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => RWKV_VOCAB.test(f)).sort() : [];
  if (rwkv.length > 0) return RwkvWorldTokenizer.fromFile(path.join(dir, rwkv[0]), readChatTemplate(dir));
  const marker = readTaskMarker(dir);
  if (marker?.name === "text") return new ByteTokenizer(marker.source, readChatTemplate(dir));
  throw new SeqlabError(
    `${dir}: no tokenizer found (looked for tokenizer.json, rwkv_vocab*.txt, or a config.json "${TASK_KEY}" naming the byte-level "text" task)`,
  );
}

/** True when loadTokenizer would find one (without loading it). */
export function hasTokenizer(dir: string): boolean {
  if (fs.existsSync(path.join(dir, "tokenizer.json"))) return true;
  if (fs.existsSync(dir) && fs.readdirSync(dir).some((f) => RWKV_VOCAB.test(f))) return true;
  return readTaskMarker(dir)?.name === "text";
}

