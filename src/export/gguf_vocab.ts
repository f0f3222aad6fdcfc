/**
 * The tokenizer.ggml.* metadata llama.cpp builds its vocabulary from (llama-vocab.cpp): a token
 * list exactly as long as the embedding table, token types, scores (SentencePiece) or merges
 * (BPE), and the special token ids. Taken from the model directory's tokenizer.json the way
 * llama.cpp's convert_hf_to_gguf.py does:
 *   byte-level BPE (GPT-2, GPT-NeoX, Llama 3)          -> "gpt2": tokens, types, merges
 *   BPE with byte_fallback (Llama 2 / TinyLlama: SentencePiece converted) -> "llama": tokens, types,
 *     scores (a merge's priority becomes its result's score: SentencePiece merges highest first)
 * A model without a tokenizer (random-weight models for benchmarks) gets a minimal "llama"
 * vocabulary: <unk>, <s>, </s>, "▁" (SentencePiece's space), the 256 byte tokens <0x00>..<0xFF>,
 * then unused fillers. With the byte tokens llama.cpp can tokenize any text (every character
 * falls back to its bytes). A vocabulary smaller than 260 keeps as many byte tokens as fit, ASCII
 * first: llama.cpp aborts when asked to tokenize a character whose byte token is missing, so such
 * a model must be fed token ids or ASCII text.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { arr, bool, str, u32, type GgufValue } from "../io/gguf.js";
import { readOptionalJson } from "../io/tokenizer_files.js";
import { SeqlabError } from "../util/errors.js";

/** llama_token_type in llama.cpp. */
const TokenType = { NORMAL: 1, UNKNOWN: 2, CONTROL: 3, USER_DEFINED: 4, UNUSED: 5, BYTE: 6 } as const;

type Metadata = [string, GgufValue][];

interface AddedToken {
  id: number;
  content: string;
  special?: boolean;
}

/** Vocabulary metadata for a model with V embedding rows. */
export function vocabMetadata(dir: string, V: number): Metadata {
  const file = path.join(dir, "tokenizer.json");
  if (!fs.existsSync(file)) return minimalVocab(V);
  const tj = readOptionalJson(file)!;
  const model = tj.model as { type?: string; vocab?: unknown; merges?: unknown; byte_fallback?: boolean; unk_token?: string } | undefined;
  if (!model || model.type !== "BPE" || typeof model.vocab !== "object" || model.vocab === null || Array.isArray(model.vocab)) {
    throw new SeqlabError(`${file}: GGUF export handles BPE tokenizers (byte-level or byte-fallback), not ${JSON.stringify(model?.type)}`);
  }
  const added = (Array.isArray(tj.added_tokens) ? tj.added_tokens : []) as AddedToken[];
  const tokens: (string | undefined)[] = new Array(V).fill(undefined);
  const place = (t: string, id: number) => {
    if (!Number.isSafeInteger(id) || id < 0) throw new SeqlabError(`${file}: token ${JSON.stringify(t)} has id ${id}`);
    if (id >= V) throw new SeqlabError(`${file}: token ${JSON.stringify(t)} has id ${id}, beyond the model's ${V} embeddings`);
    tokens[id] = t;
  };
  for (const [t, id] of Object.entries(model.vocab as Record<string, number>)) place(t, id);
  for (const a of added) place(a.content, a.id);
  const addedById = new Map(added.map((a) => [a.id, a]));
  const typeOf = (id: number, t: string | undefined): number => {
    if (t === undefined) return TokenType.UNUSED;
    const a = addedById.get(id);
    if (a) return a.special ? TokenType.CONTROL : TokenType.USER_DEFINED;
    if (model.byte_fallback && /^<0x[0-9A-F]{2}>$/.test(t)) return TokenType.BYTE;
    if (t === model.unk_token) return TokenType.UNKNOWN;
    return TokenType.NORMAL;
  };
  const list = tokens.map((t, id) => t ?? `[PAD${id}]`);
  const types = tokens.map((t, id) => typeOf(id, t));
  const merges = mergesOf(file, model.merges);
  const meta: Metadata = model.byte_fallback
    ? [
        ["tokenizer.ggml.model", str("llama")],
        ["tokenizer.ggml.tokens", arr("string", list)],
        ["tokenizer.ggml.scores", arr("float32", mergeScores(list, merges))],
        ["tokenizer.ggml.token_type", arr("int32", types)],
        ["tokenizer.ggml.add_space_prefix", bool(prependsSpace(tj))],
      ]
    : [
        ["tokenizer.ggml.model", str("gpt2")],
        ["tokenizer.ggml.pre", str((tj.pre_tokenizer as { type?: string } | null)?.type === "ByteLevel" ? "gpt-2" : "default")],
        ["tokenizer.ggml.tokens", arr("string", list)],
        ["tokenizer.ggml.token_type", arr("int32", types)],
        ["tokenizer.ggml.merges", arr("string", merges.map(([a, b]) => `${a} ${b}`))],
      ];
  return [...meta, ...specialIds(dir, list, model.unk_token)];
}

function mergesOf(file: string, merges: unknown): [string, string][] {
  if (!Array.isArray(merges)) throw new SeqlabError(`${file}: the BPE model has no merges list`);
  return merges.map((m) => {
    const pair = typeof m === "string" ? m.split(" ") : m;
    if (!Array.isArray(pair) || pair.length !== 2) throw new SeqlabError(`${file}: merge ${JSON.stringify(m)} is not a pair`);
    return [String(pair[0]), String(pair[1])];
  });
}

/** SentencePiece scores from BPE merge ranks: the result of merge r scores -r; other tokens 0. */
function mergeScores(tokens: string[], merges: [string, string][]): number[] {
  const score = new Map<string, number>();
  merges.forEach(([a, b], r) => {
    if (!score.has(a + b)) score.set(a + b, -r);
  });
  return tokens.map((t) => score.get(t) ?? 0);
}

/** SentencePiece-style tokenizers put "▁" before the text (a Prepend normalizer or Metaspace). */
function prependsSpace(tj: Record<string, unknown>): boolean {
  const s = JSON.stringify([tj.normalizer, tj.pre_tokenizer]);
  return /"Prepend","prepend":"▁"/.test(s) || /"Metaspace"[^}]*"prepend_scheme":"(first|always)"/.test(s);
}

/** bos/eos/unk ids from tokenizer_config.json, generation_config.json and config.json. */
function specialIds(dir: string, tokens: string[], unk: string | undefined): Metadata {
  const tc = readOptionalJson(path.join(dir, "tokenizer_config.json")) ?? {};
  const gc = readOptionalJson(path.join(dir, "generation_config.json")) ?? {};
  const cfg = readOptionalJson(path.join(dir, "config.json")) ?? {};
  const idOf = (v: unknown): number | null => {
    const s = typeof v === "string" ? v : (v as { content?: string } | null)?.content;
    const i = s === undefined ? -1 : tokens.indexOf(s);
    return i >= 0 ? i : null;
  };
  const firstId = (...vs: unknown[]): number | null => {
    for (const v of vs) {
      const x = Array.isArray(v) ? v[0] : v;
      if (Number.isSafeInteger(x) && (x as number) >= 0 && (x as number) < tokens.length) return x as number;
    }
    return null;
  };
  const bos = idOf(tc.bos_token) ?? firstId(gc.bos_token_id, cfg.bos_token_id);
  const eos = idOf(tc.eos_token) ?? firstId(gc.eos_token_id, cfg.eos_token_id);
  const unkId = unk === undefined ? null : tokens.indexOf(unk);
  const out: Metadata = [];
  if (bos !== null) out.push(["tokenizer.ggml.bos_token_id", u32(bos)]);
  if (eos !== null) out.push(["tokenizer.ggml.eos_token_id", u32(eos)]);
  if (unkId !== null && unkId >= 0) out.push(["tokenizer.ggml.unknown_token_id", u32(unkId)]);
  if (typeof tc.add_bos_token === "boolean") out.push(["tokenizer.ggml.add_bos_token", bool(tc.add_bos_token)]);
  return out;
}

/** <unk>, <s>, </s>, the byte tokens, unused fillers: enough for llama.cpp to load and tokenize. */
export function minimalVocab(V: number): Metadata {
  const tokens: string[] = [];
  const types: number[] = [];
  const add = (t: string, type: number) => {
    if (tokens.length < V) {
      tokens.push(t);
      types.push(type);
    }
  };
  add("<unk>", TokenType.UNKNOWN);
  add("<s>", TokenType.CONTROL);
  add("</s>", TokenType.CONTROL);
  add("\u2581", TokenType.NORMAL); // "▁": spaces without byte fallback
  for (let b = 0; b < 256; b++) add(`<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`, TokenType.BYTE);
  while (tokens.length < V) add(`[PAD${tokens.length}]`, TokenType.UNUSED);
  return [
    ["tokenizer.ggml.model", str("llama")],
    ["tokenizer.ggml.tokens", arr("string", tokens)],
    ["tokenizer.ggml.scores", arr("float32", tokens.map(() => 0))],
    ["tokenizer.ggml.token_type", arr("int32", types)],
    ["tokenizer.ggml.bos_token_id", u32(1)],
    ["tokenizer.ggml.eos_token_id", u32(2)],
    ["tokenizer.ggml.unknown_token_id", u32(0)],
    ["tokenizer.ggml.add_bos_token", bool(true)],
  ];
}
