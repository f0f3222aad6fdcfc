/**
 * Small model directories made in tests: a seeded random-weight Llama saved as HF does
 * (config.json + model.safetensors), with a hand-built byte-level BPE tokenizer.json (GPT-2's
 * byte alphabet, a few merges, special tokens), tokenizer_config.json with a chat template, and
 * generation_config.json.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { RawConfig } from "../../src/io/config.js";
import { buildModel } from "../../src/models/registry.js";
import { ModuleContext } from "../../src/nn/module.js";
import { writeSafetensors } from "../../src/io/safetensors.js";
import { toArraySync } from "../../src/backend/alloc.js";
import type { CausalLM } from "../../src/models/causal_lm.js";
import { ref32 } from "../helpers.js";

/** GPT-2's reversible byte -> printable character map (bytes_to_unicode in openai/gpt-2 encoder.py). */
export function bytesToUnicode(): string[] {
  const printable = (b: number) => (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
  const out: string[] = [];
  let extra = 0;
  for (let b = 0; b < 256; b++) out.push(String.fromCharCode(printable(b) ? b : 256 + extra++));
  return out;
}

export const SPECIALS = ["<s>", "</s>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"];
export const TINY_MERGES: [string, string][] = [
  ["h", "e"],
  ["l", "l"],
  ["he", "ll"],
  ["hell", "o"],
  ["Ġ", "w"],
  ["o", "r"],
  ["Ġw", "or"],
  ["l", "d"],
  ["Ġ", "t"],
  ["Ġt", "he"],
];

/**
 * A byte-level BPE tokenizer.json: ids 0..255 are the bytes, then one id per merge result, then
 * the special tokens; a TemplateProcessing post-processor puts <s> in front of every text.
 */
export function tinyTokenizerJson(): { json: Record<string, unknown>; vocab: Map<string, number> } {
  const vocab = new Map<string, number>();
  for (const ch of bytesToUnicode()) vocab.set(ch, vocab.size);
  for (const [a, b] of TINY_MERGES) vocab.set(a + b, vocab.size);
  const added = SPECIALS.map((content) => {
    const id = vocab.size;
    vocab.set(content, id);
    return { id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true };
  });
  const bos = vocab.get("<s>")!;
  const json = {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: null,
    pre_tokenizer: { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: {
      type: "TemplateProcessing",
      single: [{ SpecialToken: { id: "<s>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
      pair: [{ SpecialToken: { id: "<s>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }, { Sequence: { id: "B", type_id: 1 } }],
      special_tokens: { "<s>": { id: "<s>", ids: [bos], tokens: ["<s>"] } },
    },
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab: Object.fromEntries([...vocab].filter(([t]) => !SPECIALS.includes(t))),
      merges: TINY_MERGES.map(([a, b]) => `${a} ${b}`),
    },
  };
  return { json, vocab };
}

export const CHAT_TEMPLATE =
  "{% for m in messages %}{{ '<|' + m['role'] + '|>' + m['content'] + '<|end|>' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}";

export const tinyLlamaConfig = (V: number, extra: Record<string, unknown> = {}) => ({
  model_type: "llama",
  architectures: ["LlamaForCausalLM"],
  vocab_size: V,
  hidden_size: 32,
  intermediate_size: 64,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  max_position_embeddings: 2048,
  rms_norm_eps: 1e-6,
  rope_theta: 10000,
  tie_word_embeddings: false,
  bos_token_id: 0,
  eos_token_id: 1,
  ...extra,
});

/** Save a model's parameters as HF's model.safetensors, with its config.json. */
export function saveModelDir(dir: string, config: Record<string, unknown>, model: CausalLM): void {
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify(config, null, 2));
  writeSafetensors(
    path.join(dir, "model.safetensors"),
    model.namedParameters().map(([name, t]) => ({ name, dtype: "F32" as const, shape: t.shape, data: Float32Array.from(toArraySync(t)) })),
    { format: "pt" },
  );
}

/**
 * A random-weight Llama with the tiny tokenizer (vocabulary padded to `V`, as HF models pad
 * theirs), a chat template and EOS = </s>.
 */
export function writeTinyChatModel(dir: string, seed = 1, V = 288): void {
  const { json, vocab } = tinyTokenizerJson();
  const config = tinyLlamaConfig(V, { bos_token_id: vocab.get("<s>"), eos_token_id: vocab.get("</s>") });
  const model = buildModel(new RawConfig("tiny", config), ModuleContext.seeded(ref32, seed));
  saveModelDir(dir, config, model);
  fs.writeFileSync(path.join(dir, "tokenizer.json"), JSON.stringify(json));
  fs.writeFileSync(
    path.join(dir, "tokenizer_config.json"),
    JSON.stringify({ bos_token: "<s>", eos_token: { content: "</s>", special: true }, chat_template: CHAT_TEMPLATE, clean_up_tokenization_spaces: false }),
  );
  fs.writeFileSync(path.join(dir, "generation_config.json"), JSON.stringify({ bos_token_id: vocab.get("<s>"), eos_token_id: [vocab.get("</s>"), vocab.get("<|end|>")] }));
}
