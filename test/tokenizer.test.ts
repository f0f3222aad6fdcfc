/**
 * Tokenizers: a hand-built byte-level BPE tokenizer.json with exact ids, special tokens, chat
 * templates; the RWKV World trie tokenizer on a vocabulary in its file format; the byte
 * tokenizer; incremental decoding across split UTF-8 characters; bad files.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { loadTokenizer, hasTokenizer } from "../src/io/tokenizer.js";
import { parsePythonLiteral, RwkvWorldTokenizer } from "../src/io/tokenizer_rwkv.js";
import { ChatTemplate } from "../src/io/chat_template.js";
import { TextStreamer } from "../src/generate/stream.js";
import { SeqlabError } from "../src/util/errors.js";
import { CHAT_TEMPLATE, tinyTokenizerJson } from "./support/tiny_models.js";

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "seqlab-tok-"));

function dirWith(name: string, files: Record<string, string | object>): string {
  const d = path.join(tmp, name);
  fs.mkdirSync(d, { recursive: true });
  for (const [f, content] of Object.entries(files)) fs.writeFileSync(path.join(d, f), typeof content === "string" ? content : JSON.stringify(content));
  return d;
}

const hfDir = dirWith("hf", {
  "tokenizer.json": tinyTokenizerJson().json,
  "tokenizer_config.json": { bos_token: "<s>", eos_token: { content: "</s>", special: true }, chat_template: CHAT_TEMPLATE },
  "generation_config.json": { eos_token_id: [271] },
});

test("tokenizer.json BPE: exact ids, BOS from the post-processor, special tokens, round trips", () => {
  const tok = loadTokenizer(hfDir);
  assert.equal(tok.kind, "hf");
  // ids 0..255 are bytes; merges: he=256 ll=257 hell=258 hello=259 Ġw=260 or=261 Ġwor=262 ld=263 Ġt=264 Ġthe=265; <s>=266 </s>=267 ... <|end|>=271
  assert.deepEqual(tok.encode("hello world"), [266, 259, 262, 263]);
  assert.deepEqual(tok.encode("hello world", { addSpecialTokens: false }), [259, 262, 263]);
  assert.deepEqual(tok.encode("the the", { addSpecialTokens: false }), [116, 256, 265]);
  assert.deepEqual(tok.encode("<|user|>hi", { addSpecialTokens: false }), [269, 104, 105]);
  assert.deepEqual(tok.encode("é", { addSpecialTokens: false }), [0xc3, 0xa9], "bytes of a two-byte character");
  assert.equal(tok.vocabSize, 272);
  assert.equal(tok.bosId, 266);
  assert.deepEqual(tok.eosIds, [271, 267], "generation_config.json's then tokenizer_config.json's");
  const text = "héllo the world 中文 ✓";
  assert.equal(tok.decode(tok.encode(text), { skipSpecialTokens: true }), text);
  assert.equal(tok.decode(tok.encode(text)), "<s>" + text);
  assert.equal(tok.decode([0xc3]), "\uFFFD", "half a character decodes to U+FFFD");
  assert.equal(tok.decode([5000, 259]), "hello", "ids beyond the vocabulary decode to nothing");
});

test("chat templates render as apply_chat_template does, with the special tokens as variables", () => {
  const tok = loadTokenizer(hfDir);
  const t = ChatTemplate.of(tok)!;
  const msgs = [
    { role: "system" as const, content: "Be brief." },
    { role: "user" as const, content: "hello" },
  ];
  assert.equal(t.render(msgs, true), "<|system|>Be brief.<|end|><|user|>hello<|end|><|assistant|>");
  assert.equal(t.render(msgs, false), "<|system|>Be brief.<|end|><|user|>hello<|end|>");
  const jinja = dirWith("jinja", { "tokenizer.json": tinyTokenizerJson().json, "tokenizer_config.json": { eos_token: "</s>" }, "chat_template.jinja": "{{ messages[0]['content'] }}{{ eos_token }}" });
  assert.equal(ChatTemplate.of(loadTokenizer(jinja))!.render([{ role: "user", content: "x" }], true), "x</s>");
  assert.throws(() => new ChatTemplate("t", "{% for %}", {}), /t: the chat template does not parse/);
});

test("bad tokenizer files and missing tokenizers give one-line errors", () => {
  const err = (dir: string, re: RegExp) => assert.throws(() => loadTokenizer(dir), (e) => e instanceof SeqlabError && re.test(e.message) && !e.message.includes("\n"));
  err(dirWith("corrupt", { "tokenizer.json": '{"model": {"type": "BPE", "vocab": {' }), /corrupt\/tokenizer\.json: not valid JSON/);
  err(dirWith("nomodel", { "tokenizer.json": { added_tokens: [] } }), /nomodel\/tokenizer\.json: "model" is missing/);
  err(dirWith("badtype", { "tokenizer.json": { model: { type: "Nonsense" } } }), /badtype\/tokenizer\.json: cannot build the tokenizer \(Unknown TokenizerModel type: Nonsense\)/);
  err(dirWith("badcfg", { "tokenizer.json": tinyTokenizerJson().json, "tokenizer_config.json": "{oops" }), /badcfg\/tokenizer_config\.json: not valid JSON/);
  err(dirWith("badgen", { "tokenizer.json": tinyTokenizerJson().json, "generation_config.json": { eos_token_id: "two" } }), /"eos_token_id" must be a token id or a list of ids/);
  const none = dirWith("none", { "config.json": { model_type: "llama" } });
  assert.equal(hasTokenizer(none), false);
  err(none, /none: no tokenizer found \(looked for tokenizer\.json, rwkv_vocab\*\.txt, or a config\.json "seqlab_task" naming the byte-level "text" task\)/);
});

/** A vocabulary in rwkv_vocab_v20230424.txt's format: the 256 bytes (ids 1..256, str or bytes literals), then longer tokens. */
function rwkvVocab(extra: string[]): string {
  const lines: string[] = [];
  for (let b = 0; b < 256; b++) {
    const lit = b < 0x80 ? pyStr(String.fromCharCode(b)) : `b'\\x${b.toString(16).padStart(2, "0")}'`;
    lines.push(`${b + 1} ${lit} 1`);
  }
  return [...lines, ...extra].join("\n") + "\n";
}

function pyStr(s: string): string {
  const esc = s.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/\t/g, "\\t").replace(/\r/g, "\\r").replace(/[\x00-\x1f\x7f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`);
  return esc.includes("'") && !esc.includes('"') ? `"${esc}"` : `'${esc.replace(/'/g, "\\'")}'`;
}

test("RWKV World: the trie takes the longest match over UTF-8 bytes; the file's literals parse as Python's", () => {
  const vocab = rwkvVocab(["257 'ab' 2", "258 'abc' 3", "259 'bc' 2", "260 '中' 3", "261 \"'s\" 2", "262 '\\n\\n' 2", "263 b'\\xe4\\xb8' 2", "264 '\\u00e9t\\xe9' 5"]);
  const dir = dirWith("rwkv", { "rwkv_vocab_v20230424.txt": vocab });
  const tok = loadTokenizer(dir);
  assert.ok(tok instanceof RwkvWorldTokenizer);
  assert.equal(tok.vocabSize, 265);
  assert.deepEqual(tok.encode("abcd"), [258, 101]);
  assert.deepEqual(tok.encode("abd"), [257, 101]);
  assert.deepEqual(tok.encode("xbc"), [121, 259]);
  assert.deepEqual(tok.encode("中"), [260], "the 3-byte token beats its 2-byte prefix");
  assert.deepEqual(tok.encode("中a"), [260, 98]);
  assert.deepEqual(tok.encode("it's\n\n"), [106, 117, 261, 262]);
  assert.deepEqual(tok.encode("été"), [264]);
  assert.deepEqual(tok.encode("文"), [0xe6 + 1, 0x96 + 1, 0x87 + 1], "bytes without a longer token fall back to single bytes");
  assert.equal(tok.decode(tok.encode("it's 中文 été")), "it's 中文 été");
  assert.equal(tok.decode([263]), "\uFFFD");
  assert.equal(tok.decode([263, 0xad + 1]), "中");
  assert.deepEqual(tok.eosIds, [0]);
  assert.equal(tok.decode([98, 0], { skipSpecialTokens: true }), "a");
  assert.deepEqual(Array.from(parsePythonLiteral("'\\\\'")), [92]);
  assert.deepEqual(Array.from(parsePythonLiteral("\"'\"")), [39]);
  assert.deepEqual(Array.from(parsePythonLiteral("'\\x7f'")), [127]);
  assert.deepEqual(Array.from(parsePythonLiteral("'\\xe9'")), [0xc3, 0xa9], "a str escape is a code point, stored as UTF-8");
});

test("RWKV World: malformed vocabulary lines are named", () => {
  const err = (name: string, text: string, re: RegExp) =>
    assert.throws(() => loadTokenizer(dirWith(name, { "rwkv_vocab_v20230424.txt": text })), (e) => e instanceof SeqlabError && re.test(e.message));
  err("rwkv-len", rwkvVocab(["257 'ab' 3"]), /rwkv_vocab_v20230424\.txt: line 257: the literal has 2 bytes, the line says 3/);
  err("rwkv-lit", rwkvVocab(["257 ab 2"]), /line 257: ab is not a quoted Python string or bytes literal/);
  err("rwkv-dup", rwkvVocab(["5 'zz' 2"]), /line 257: token id 5 appears twice/);
  err("rwkv-bytes", "1 'a' 1\n", /the vocabulary has no token for the single byte 0x00/);
});

test("byte tokenizer for models trained on the byte-level text task", () => {
  const dir = dirWith("bytes", { "config.json": { model_type: "llama", seqlab_task: { name: "text", length: 64 } } });
  const tok = loadTokenizer(dir);
  assert.equal(tok.kind, "byte");
  assert.deepEqual(tok.encode("aé"), [97, 0xc3, 0xa9]);
  assert.equal(tok.decode([97, 0xc3, 0xa9]), "aé");
});

test("incremental decoding emits each character once, when its last byte arrives", () => {
  const text = "héllo the world, 中文 ✓ 𝄞!";
  for (const dir of [hfDir, path.join(tmp, "bytes"), path.join(tmp, "rwkv")]) {
    const tok = loadTokenizer(dir);
    const ids = tok.encode(text, { addSpecialTokens: false });
    const s = new TextStreamer(tok);
    const pieces = ids.map((id) => s.push(id));
    const tail = s.flush();
    assert.equal(pieces.join("") + tail, text, dir);
    assert.ok(pieces.every((p) => !p.includes("\uFFFD")), "no piece holds half a character");
    if (tok.kind !== "rwkv-world") assert.ok(pieces.filter((p) => p === "").length >= 4, "multi-byte characters wait for their last byte");
  }
  // with prompt context, the first new token keeps its leading space
  const tok = loadTokenizer(hfDir);
  const prompt = tok.encode("hello");
  const s = new TextStreamer(tok, prompt);
  assert.equal([...tok.encode(" world the", { addSpecialTokens: false })].map((id) => s.push(id)).join("") + s.flush(), " world the");
});
