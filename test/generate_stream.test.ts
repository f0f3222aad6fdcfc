/**
 * Streaming generation: tokens arrive one by one, in order, the same as without streaming;
 * sessions that keep their state across calls (and rewind a KV cache); `seqlab generate` and
 * `seqlab chat` (stdin piped) end to end; their bad input.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { spawnSync } from "node:child_process";
import { loadModel } from "../src/models/load.js";
import { loadTokenizer } from "../src/io/tokenizer.js";
import { ChatTemplate } from "../src/io/chat_template.js";
import { generate } from "../src/generate/generate.js";
import { DecodeSession } from "../src/generate/session.js";
import { TextStreamer } from "../src/generate/stream.js";
import { ref32, ROOT, VARIANT_FIXTURES } from "./helpers.js";
import { writeTinyChatModel } from "./support/tiny_models.js";

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "seqlab-stream-"));
const DIR = path.join(tmp, "tiny-chat");
writeTinyChatModel(DIR, 7);
const model = loadModel(DIR, ref32);
const tok = loadTokenizer(DIR);

test("streamed tokens arrive one by one, in order, and equal the non-streamed generation", async () => {
  const prompt = tok.encode("hello world");
  for (const sampling of [{}, { temperature: 0.9, topK: 20, seed: 4 }]) {
    const arrivals: { token: number; index: number; at: number }[] = [];
    const session = new DecodeSession(model);
    const reply = await session.generate(prompt, { ...sampling, maxNewTokens: 16, onToken: (token, index) => arrivals.push({ token, index, at: performance.now() }) });
    session.dispose();
    const plain = await generate(model, prompt, { ...sampling, maxNewTokens: 16 });
    assert.deepEqual(reply.tokens, plain.tokens.slice(prompt.length));
    assert.deepEqual(arrivals.map((a) => a.token), reply.tokens);
    assert.deepEqual(arrivals.map((a) => a.index), reply.tokens.map((_, i) => i));
    assert.ok(arrivals.every((a, i) => i === 0 || a.at >= arrivals[i - 1].at));
    assert.equal(reply.stats.promptTokens, prompt.length);
    assert.equal(reply.stats.newTokens, 16);
    assert.ok(reply.stats.stateBytes.kvCache > 0 && reply.stats.stateBytes.recurrent === 0);
  }
});

test("a session continues from its state: only new tokens run, and the result is as if run from scratch", async () => {
  const a = tok.encode("hello world");
  const b = [...a, ...tok.encode(" the world the", { addSpecialTokens: false })];
  const fresh = async (ids: number[]) => {
    const s = new DecodeSession(model);
    const r = await s.generate(ids, { maxNewTokens: 8 });
    s.dispose();
    return r.tokens;
  };
  const s = new DecodeSession(model, 4); // a small KV cache that has to grow
  await s.generate(a, { maxNewTokens: 3 });
  const more = await s.generate(b, { maxNewTokens: 8 });
  assert.deepEqual(more.tokens, await fresh(b));
  // the first call consumed a and two of its three new tokens; b diverges right after a
  assert.equal(more.reused, a.length);
  assert.equal(more.stats.promptTokens, b.length - a.length);
  // a prompt that departs earlier rewinds the KV cache to the common prefix
  const c = [...a.slice(0, 3), ...tok.encode("xyz", { addSpecialTokens: false })];
  const back = await s.generate(c, { maxNewTokens: 8 });
  assert.equal(back.reused, 3);
  assert.deepEqual(back.tokens, await fresh(c));
  s.dispose();
});

const BIN = path.join(ROOT, "bin/seqlab.mjs");
function seqlab(args: string[], input?: string) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: "utf8", input });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** What the streaming commands should print for these tokens after this prompt. */
function streamedText(prompt: number[], tokens: number[]): string {
  const s = new TextStreamer(tok, prompt);
  return tokens.map((t) => s.push(t)).join("") + s.flush();
}

test("seqlab generate streams the same text as an in-process generation, then a stats line on stderr", async () => {
  const r = seqlab(["generate", "--model", DIR, "--prompt", "hello world", "--max-new-tokens", "12", "--ignore-eos"]);
  assert.equal(r.code, 0, r.stderr);
  const prompt = tok.encode("hello world");
  const plain = await generate(model, prompt, { maxNewTokens: 12 });
  assert.equal(r.stdout, streamedText(prompt, plain.tokens.slice(prompt.length)) + "\n");
  const lines = r.stderr.trim().split("\n");
  assert.equal(lines.length, 2, r.stderr);
  assert.match(lines[0], /^generate: .*tiny-chat: llama, [\d,]+ parameters, f32 weights; backend cpu \(wasm simd128( \+ relaxed FMA)?, \d+ threads?\)$/, "the cpu backend by default");
  assert.match(lines[1], /^generate: prefill 4 tokens in [\d.]+ s \([\d.]+ tok\/s\), decode 12 tokens in [\d.]+ s \([\d.]+ tok\/s\), KV cache [\d.]+ KiB \(allocated [\d.]+ KiB\)$/);
  const sampled = seqlab(["generate", "--model", DIR, "--prompt", "hello", "--max-new-tokens", "6", "--temperature", "0.8", "--top-p", "0.9", "--seed", "5", "--ignore-eos"]);
  assert.equal(sampled.code, 0, sampled.stderr);
  assert.equal(sampled.stdout, seqlab(["generate", "--model", DIR, "--prompt", "hello", "--max-new-tokens", "6", "--temperature", "0.8", "--top-p", "0.9", "--seed", "5", "--ignore-eos"]).stdout);
});

test("seqlab generate --kv-cache f16: the backend says so and the KV cache takes half the bytes", () => {
  const kib = (stderr: string) => Number(/KV cache ([\d.]+) KiB/.exec(stderr)?.[1]);
  const f32 = seqlab(["generate", "--model", DIR, "--prompt", "hello world", "--max-new-tokens", "8", "--ignore-eos"]);
  const f16 = seqlab(["generate", "--model", DIR, "--prompt", "hello world", "--max-new-tokens", "8", "--ignore-eos", "--kv-cache", "f16"]);
  assert.equal(f16.code, 0, f16.stderr);
  assert.match(f16.stderr, /backend cpu \(wasm simd128( \+ relaxed FMA)?, \d+ threads?, f16 KV cache\)/);
  assert.ok(f16.stdout.length > 1, "text was generated");
  assert.ok(Math.abs(kib(f16.stderr) * 2 - kib(f32.stderr)) <= 0.02, `half the KiB (printed to 0.01):\n${f16.stderr}\n${f32.stderr}`);
  const plain = seqlab(["generate", "--model", DIR, "--prompt", "hello world", "--max-new-tokens", "8", "--ignore-eos", "--cpu-isa", "simd128"]);
  assert.equal(plain.code, 0, plain.stderr);
  assert.match(plain.stderr, /backend cpu \(wasm simd128, \d+ threads?\)/, "--cpu-isa simd128 runs (and names) the plain build");
});

test("seqlab chat with stdin piped: one reply per line, the state kept across turns", async () => {
  const r = seqlab(["chat", "--model", DIR, "--system", "Be brief.", "--max-new-tokens", "6", "--ignore-eos"], "hello\n\nthe world\n");
  assert.equal(r.code, 0, r.stderr);
  const stats = r.stderr.split("\n").filter((l) => /^chat: \d+ tokens of context reused/.test(l));
  assert.equal(stats.length, 2, r.stderr);
  assert.match(stats[0], /^chat: 0 tokens of context reused; prefill \d+ tokens/);
  const reused = Number(/^chat: (\d+) tokens/.exec(stats[1])![1]);
  assert.ok(reused >= tok.encode("<|system|>Be brief.<|end|><|user|>hello<|end|><|assistant|>", { addSpecialTokens: false }).length, `reused ${reused}`);
  // the first reply is what an in-process generation on the rendered template gives
  const template = ChatTemplate.of(tok)!;
  const prompt = tok.encode(template.render([{ role: "system", content: "Be brief." }, { role: "user", content: "hello" }], true), { addSpecialTokens: false });
  const plain = await generate(model, prompt, { maxNewTokens: 6 });
  assert.ok(r.stdout.startsWith(streamedText(prompt, plain.tokens.slice(prompt.length)) + "\n"));
});

test("generate and chat refuse bad input with one line", () => {
  const one = (args: string[], re: RegExp, input?: string) => {
    const r = seqlab(args, input);
    assert.notEqual(r.code, 0, args.join(" "));
    const lines = r.stderr.trim().split("\n");
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0], re);
  };
  const noTok = path.join(VARIANT_FIXTURES, "llama_rope_linear");
  one(["generate", "--prompt", "x"], /^seqlab: generate: --model is required/);
  one(["generate", "--model", DIR], /^seqlab: generate: --prompt is required$/);
  one(["generate", "--model", DIR, "hello"], /generate: unexpected argument "hello" \(the prompt goes in --prompt\)/);
  one(["generate", "--model", DIR, "--prompt", "x", "--temperature=-1"], /--temperature must be a number in \[0, 100\], got "-1"/);
  one(["generate", "--model", DIR, "--prompt", "x", "--top-p", "2"], /--top-p must be a number in/);
  one(["generate", "--model", DIR, "--prompt", "x", "--max-new-tokens", "many"], /--max-new-tokens must be an integer/);
  one(["generate", "--model", DIR, "--prompt", "x", "--dtype", "int8"], /generate: --dtype must be one of f32, f16, bf16, auto, got "int8"/);
  one(["generate", "--model", DIR, "--prompt", "x", "--frobnicate"], /generate: Unknown option '--frobnicate'/);
  one(["generate", "--model", DIR, "--prompt", "x", "--kv-cache", "f8"], /^seqlab: generate: --kv-cache takes f32 or f16, got "f8"$/);
  one(["generate", "--model", DIR, "--prompt", "x", "--backend", "webgpu", "--kv-cache", "f16"], /webgpu keeps its KV cache in f32/);
  one(["generate", "--model", DIR, "--prompt", "x", "--cpu-isa", "avx2"], /^seqlab: generate: --cpu-isa takes simd128 or relaxed, got "avx2"$/);
  one(["generate", "--model", noTok, "--prompt", "x"], /llama_rope_linear: no tokenizer found/);
  one(["generate", "--model", path.join(tmp, "absent"), "--prompt", "x"], /absent: no such model directory$/);
  one(["generate", "--model", "hf:not a repo", "--prompt", "x"], /hf:not a repo: not a model id/);
  const plainDir = path.join(tmp, "no-template");
  fs.cpSync(DIR, plainDir, { recursive: true });
  fs.writeFileSync(path.join(plainDir, "tokenizer_config.json"), JSON.stringify({ eos_token: "</s>" }));
  one(["chat", "--model", plainDir], /no-template: the model has no chat template \(tokenizer_config\.json chat_template or chat_template\.jinja\); use seqlab generate/, "hi\n");
});
