/**
 * Hugging Face `tokenizer.json` tokenizers through @huggingface/tokenizers (the maintained JS
 * port of the tokenizers library: normalizers, pre-tokenizers, BPE / Unigram / WordPiece models,
 * post-processors and decoders as the file describes them). Special tokens and EOS ids follow
 * transformers: tokenizer_config.json's bos_token / eos_token, generation_config.json's
 * eos_token_id (an id or a list of ids).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { Tokenizer as HfTokenizer } from "@huggingface/tokenizers";
import { SeqlabError } from "../util/errors.js";
import type { DecodeOptions, EncodeOptions, Tokenizer } from "./tokenizer.js";
import { readChatTemplate, readOptionalJson } from "./tokenizer_files.js";

/** tokenizer_config.json keys that name special tokens, as transformers' SPECIAL_TOKENS_ATTRIBUTES. */
const SPECIAL_KEYS = ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"];

export class HfTokenizerAdapter implements Tokenizer {
  readonly kind = "hf" as const;
  readonly vocabSize: number;
  readonly bosId: number | null;
  readonly eosIds: readonly number[];

  constructor(
    readonly source: string,
    private readonly tok: HfTokenizer,
    readonly specialTokens: Readonly<Record<string, string>>,
    generationEos: number[],
    readonly chatTemplate: string | null,
  ) {
    let max = -1;
    for (const id of tok.get_vocab(true).values()) max = Math.max(max, id);
    this.vocabSize = max + 1;
    const idOf = (key: string) => (specialTokens[key] !== undefined ? (tok.token_to_id(specialTokens[key]) ?? null) : null);
    this.bosId = idOf("bos_token");
    const eos = idOf("eos_token");
    this.eosIds = [...new Set([...generationEos, ...(eos === null ? [] : [eos])])];
  }

  encode(text: string, opts: EncodeOptions = {}): number[] {
    return this.tok.encode(text, { add_special_tokens: opts.addSpecialTokens ?? true }).ids;
  }

  decode(ids: readonly number[], opts: DecodeOptions = {}): string {
    // ids the vocabulary does not cover (models pad their embedding tables) decode to nothing
    const known = ids.filter((id) => this.tok.id_to_token(id) !== undefined);
    if (known.length === 0) return "";
    return this.tok.decode(known, { skip_special_tokens: opts.skipSpecialTokens ?? false, clean_up_tokenization_spaces: false });
  }
}

export function loadHfTokenizer(dir: string): HfTokenizerAdapter {
  const file = path.join(dir, "tokenizer.json");
  let json: unknown;
  try {
    json = JSON.parse(fs.readFileSync(file, "utf8"));
  } catch (e) {
    throw new SeqlabError(`${file}: ${e instanceof SyntaxError ? "not valid JSON" : `cannot read (${(e as NodeJS.ErrnoException).code ?? e})`}`);
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) throw new SeqlabError(`${file}: not a JSON object`);
  const config = readOptionalJson(path.join(dir, "tokenizer_config.json")) ?? {};
  const j = json as Record<string, unknown>;
  // the library requires these keys; save_pretrained writes them (null when unused)
  for (const k of ["normalizer", "pre_tokenizer", "post_processor", "decoder"]) if (!(k in j)) j[k] = null;
  if (!("added_tokens" in j)) j.added_tokens = [];
  if (typeof j.model !== "object" || j.model === null) throw new SeqlabError(`${file}: "model" is missing or not an object`);
  let tok: HfTokenizer;
  try {
    tok = new HfTokenizer(j, config);
  } catch (e) {
    throw new SeqlabError(`${file}: cannot build the tokenizer (${String((e as Error).message ?? e).split("\n")[0]})`);
  }
  return new HfTokenizerAdapter(file, tok, specialTokens(config), generationEos(dir), readChatTemplate(dir, config));
}

/** Special token strings from tokenizer_config.json (a string, or an AddedToken object with "content"). */
function specialTokens(config: Record<string, unknown>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const key of SPECIAL_KEYS) {
    const v = config[key];
    if (typeof v === "string") out[key] = v;
    else if (v && typeof v === "object" && typeof (v as { content?: unknown }).content === "string") out[key] = (v as { content: string }).content;
  }
  return out;
}

/** EOS ids generation stops at: generation_config.json's eos_token_id (an id or a list). */
function generationEos(dir: string): number[] {
  const file = path.join(dir, "generation_config.json");
  const g = readOptionalJson(file);
  const e = g?.eos_token_id;
  if (e === undefined || e === null) return [];
  const ids = Array.isArray(e) ? e : [e];
  if (!ids.every((x) => Number.isSafeInteger(x) && x >= 0)) throw new SeqlabError(`${file}: "eos_token_id" must be a token id or a list of ids, got ${JSON.stringify(e)}`);
  return ids as number[];
}
