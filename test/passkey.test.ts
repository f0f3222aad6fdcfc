/**
 * `seqlab passkey`: llama.cpp's text prompt sized to a token budget with the needle at the
 * asked depth; and the command on a small model trained here with the trainer on seqlab's
 * token-level passkey task, whose grid must show retrieval exactly where the model learned it.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { spawnSync } from "node:child_process";
import { RawConfig } from "../src/io/config.js";
import { buildModel } from "../src/models/registry.js";
import { ModuleContext } from "../src/nn/module.js";
import { train } from "../src/train/trainer.js";
import { PasskeyTask } from "../src/tasks/passkey.js";
import { loadModel } from "../src/models/load.js";
import { loadTokenizer } from "../src/io/tokenizer.js";
import { JUNK, needle, PROMPT_PREFIX, PROMPT_SUFFIX, runPasskey, TextPasskeyProbe, TokenPasskeyProbe } from "../src/experiments/passkey_probe.js";
import { Rng } from "../src/util/rng.js";
import { ref32, ROOT, VARIANT_FIXTURES } from "./helpers.js";
import { writeTinyChatModel } from "./support/tiny_models.js";

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "seqlab-passkey-"));
const BIN = path.join(ROOT, "bin/seqlab.mjs");
const seqlab = (...args: string[]) => {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: "utf8" });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
};

test("text prompts: llama.cpp's sentences, sized to the token budget, the needle at the asked depth", () => {
  const dir = path.join(tmp, "tiny-chat");
  writeTinyChatModel(dir, 1);
  const tok = loadTokenizer(dir);
  const probe = new TextPasskeyProbe(tok);
  for (const length of [300, 700]) {
    const n = probe.junkCount(length);
    assert.ok(tok.encode(TextPasskeyProbe.text(n, 0, 88888)).length <= length);
    assert.ok(tok.encode(TextPasskeyProbe.text(n + 1, 0, 88888)).length > length, "the most junk that fits");
    for (const depth of [0, 0.5, 1]) {
      const t = probe.trial(length, depth, new Rng(7));
      const text = tok.decode(t.prompt, { skipSpecialTokens: true });
      const key = Number(t.answer);
      assert.ok(key >= 1 && key <= 50000);
      assert.ok(text.startsWith(PROMPT_PREFIX) && text.endsWith(PROMPT_SUFFIX));
      assert.equal(text.split(JUNK).length - 1, n);
      const before = text.slice(0, text.indexOf(needle(key))).split(JUNK).length - 1;
      assert.equal(before, Math.round(depth * n), `needle after ${before} of ${n} junk sentences`);
      assert.equal(t.read(tok.encode(` ${key}. Remember it.`, { addSpecialTokens: false })), String(key));
      assert.equal(t.read(tok.encode(" unknown", { addSpecialTokens: false })), null);
    }
  }
  assert.equal(needle(123), " The pass key is 123. Remember it. 123 is the pass key.");
  assert.equal(JUNK, " The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.");
});

test("seqlab passkey runs text prompts on a model with a tokenizer and writes the report", () => {
  const out = path.join(tmp, "text.html");
  const r = seqlab("passkey", "--model", path.join(tmp, "tiny-chat"), "--lengths", "300", "--depths", "0,1", "--trials", "1", "--out", out);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^depth \\ length\s+300\n-+\s+-+\n0\s+\d+% \([01]\/1\)\n1\s+\d+% \([01]\/1\)$/m);
  assert.match(r.stderr, /passkey: text passkey, lengths 300, depths 0,1, 1 trials per cell/);
  assert.match(fs.readFileSync(out, "utf8"), /llama\.cpp's examples\/passkey prompt/);
});

test("the passkey command on a small model trained on the token-level passkey task", async () => {
  // A tiny Llama learns retrieval at one needle depth in ~200 steps on the reference backend;
  // at random depths it needs thousands (0.1 accuracy after 800 steps at T=24), too slow here.
  const T = 24;
  const config = {
    model_type: "llama",
    vocab_size: 64,
    hidden_size: 32,
    intermediate_size: 64,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    tie_word_embeddings: true,
    seqlab_task: { name: "passkey", length: T, seed: 0, depth: 0 },
  };
  const dir = path.join(tmp, "trained");
  const model = buildModel(new RawConfig("passkey-llama", config), ModuleContext.seeded(ref32, 1));
  const result = await train(model, new PasskeyTask(T, 0, 0), { steps: 200, batch: 16, lr: 1e-2, checkpointDir: dir, checkpointEvery: 200, config });
  assert.ok(result.losses.at(-1)! < 0.5, `trained: loss ${result.losses.at(-1)}`);
  // the command's code path, in process
  const loaded = loadModel(dir, ref32);
  const grid = await runPasskey(loaded, new TokenPasskeyProbe(0), { lengths: [T], depths: [0, 1], trials: 8, seed: 0 });
  const at = (d: number) => grid.cells.find((c) => c.depth === d)!;
  assert.equal(grid.mode, "tokens");
  assert.ok(at(0).correct >= 7, `depth 0 (trained): ${at(0).correct}/8`);
  assert.ok(at(1).correct <= 1, `depth 1 (never seen): ${at(1).correct}/8`);
  assert.ok(at(0).answers.every((a) => /^\d{5}$/.test(a.expected)));
  // and the CLI, which finds the task from config.json's seqlab_task
  const out = path.join(tmp, "tokens.html");
  const r = seqlab("passkey", "--model", dir, "--depths", "0,1", "--trials", "8", "--out", out);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /passkey: tokens passkey, lengths 24, depths 0,1, 8 trials per cell/);
  const row = (d: number) => new RegExp(`^${d}\\s+\\d+% \\(${at(d).correct}/8\\)$`, "m");
  assert.match(r.stdout, row(0));
  assert.match(r.stdout, row(1));
  const html = fs.readFileSync(out, "utf8");
  assert.match(html, /<svg [^>]*aria-label="passkey accuracy heatmap"/);
  assert.match(html, new RegExp(`<title>length 24, depth 0: ${at(0).correct}/8</title>`));
  assert.ok(!/<script|https?:\/\//.test(html.replace(/xmlns="http:\/\/www\.w3\.org\/2000\/svg"/, "")), "self-contained: no scripts, no links");
});

test("passkey refuses bad input with one line", () => {
  const one = (args: string[], re: RegExp) => {
    const r = seqlab("passkey", ...args);
    assert.notEqual(r.code, 0);
    assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
    assert.match(r.stderr, re);
  };
  const chat = path.join(tmp, "tiny-chat");
  one(["--model", chat, "--depths", "0,2"], /passkey: --depths must be a number in \[0, 1\], got "2"/);
  one(["--model", chat, "--lengths", "12,abc"], /passkey: --lengths must be an integer/);
  one(["--model", chat, "--lengths", "100"], /passkey: length 100 is shorter than the prompt without junk \(\d+ tokens\)/);
  one(["--model", chat, "--trials", "0"], /passkey: --trials must be an integer in \[1,/);
  fs.writeFileSync(path.join(tmp, "a-file"), "");
  one(["--model", chat, "--out", path.join(tmp, "a-file", "r.html")], /passkey: --out .*r\.html: .*a-file is not a directory/);
  one(["--model", path.join(VARIANT_FIXTURES, "llama_rope_linear")], /no tokenizer found \(tokenizer\.json, rwkv_vocab\*\.txt\) and no config\.json "seqlab_task" marking a passkey-trained model/);
  const mqar = path.join(tmp, "mqar");
  fs.cpSync(path.join(VARIANT_FIXTURES, "llama_rope_linear"), mqar, { recursive: true });
  const cfg = JSON.parse(fs.readFileSync(path.join(mqar, "config.json"), "utf8"));
  fs.writeFileSync(path.join(mqar, "config.json"), JSON.stringify({ ...cfg, seqlab_task: { name: "mqar", length: 64 } }));
  one(["--model", mqar], /mqar: the model was trained on task "mqar", not passkey, and has no tokenizer/);
});
