/**
 * The command line on good and bad input: one clear line naming the thing and the problem,
 * a non-zero exit, no stack trace.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { HF_FIXTURES, NEEDS_SHARED, ROOT, VARIANT_FIXTURES } from "./helpers.js";
import { writeSafetensors } from "../src/io/safetensors.js";

const BIN = path.join(ROOT, "bin/seqlab.mjs");
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "seqlab-cli-"));

function seqlab(...args: string[]): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: "utf8", cwd: tmp });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** Bad input: non-zero exit, exactly one line on stderr matching `pattern`, no stack trace. */
function expectOneLineError(args: string[], pattern: RegExp): void {
  const r = seqlab(...args);
  assert.notEqual(r.code, 0, `exit status for ${args.join(" ")}`);
  const lines = r.stderr.trim().split("\n");
  assert.equal(lines.length, 1, `one line of error, got:\n${r.stderr}`);
  assert.match(lines[0], pattern);
  assert.ok(!/\n\s+at /.test(r.stderr), "no stack trace");
}

/** A copy of a fixture directory to corrupt. */
function copyFixture(name: string, into: string): string {
  const d = path.join(tmp, into);
  fs.cpSync(path.join(VARIANT_FIXTURES, name), d, { recursive: true });
  return d;
}

function editJson(file: string, edit: (j: Record<string, unknown>) => void): void {
  const j = JSON.parse(fs.readFileSync(file, "utf8"));
  edit(j);
  fs.writeFileSync(file, JSON.stringify(j));
}

test("verify prints one line per check and verify: PASS on the shared llama fixture", { skip: NEEDS_SHARED }, () => {
  const r = seqlab("verify", path.join(HF_FIXTURES, "llama"));
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.trim().split("\n");
  assert.equal(lines.at(-1), "verify: PASS");
  assert.ok(lines.some((l) => /^logits\s+rel\s+\S+\s+tol 1e-4\s+ok$/.test(l)));
  assert.ok(lines.some((l) => /^grad\.model\.norm\.weight\s+rel/.test(l)));
});

test("verify reports FAIL with a count when the reference disagrees, and skips what it lacks", () => {
  const d = copyFixture("gpt2_relu", "gpt2-wrong");
  const ref = path.join(d, "partial.safetensors");
  const logits = new Float32Array(2 * 3 * 160).fill(1);
  writeSafetensors(ref, [
    { name: "input_ids", dtype: "I32", shape: [2, 3], data: Int32Array.from([1, 2, 3, 4, 5, 6]) },
    { name: "logits", dtype: "F32", shape: [2, 3, 160], data: logits },
  ]);
  const r = seqlab("verify", d, "--reference", ref);
  assert.equal(r.code, 1);
  const lines = r.stdout.trim().split("\n");
  assert.equal(lines.at(-1), "verify: FAIL (1 checks failed)");
  assert.ok(lines.some((l) => l.startsWith("loss") && l.includes("skip")));
  assert.ok(lines.some((l) => l.startsWith("generate") && l.includes("skip")));
});

test("missing directory, config and weights", () => {
  expectOneLineError(["verify", path.join(tmp, "nothing-here")], /nothing-here: no such model directory/);
  const d = copyFixture("llama_rope_linear", "no-config");
  fs.rmSync(path.join(d, "config.json"));
  expectOneLineError(["verify", d], /no-config\/config\.json: cannot read \(ENOENT\)/);
  const w = copyFixture("llama_rope_linear", "no-weights");
  fs.rmSync(path.join(w, "model.safetensors"));
  expectOneLineError(["verify", w], /no-weights\/model\.safetensors: no such file/);
});

test("invalid config JSON, unsupported model_type, invalid config values", () => {
  const d = copyFixture("llama_rope_linear", "bad-json");
  fs.writeFileSync(path.join(d, "config.json"), "{ nope");
  expectOneLineError(["verify", d], /bad-json\/config\.json: not valid JSON/);
  const u = copyFixture("llama_rope_linear", "unsupported");
  editJson(path.join(u, "config.json"), (j) => (j.model_type = "bert"));
  expectOneLineError(["verify", u], /model_type "bert" is not supported \(supported: llama, gpt2/);
  const h = copyFixture("llama_rope_linear", "bad-heads");
  editJson(path.join(h, "config.json"), (j) => (j.num_key_value_heads = 3));
  expectOneLineError(["verify", h], /num_attention_heads 4 must be a multiple of num_key_value_heads 3/);
  const n = copyFixture("llama_rope_linear", "bad-number");
  editJson(path.join(n, "config.json"), (j) => (j.hidden_size = "sixty-four"));
  expectOneLineError(["verify", n], /"hidden_size" must be an integer, got "sixty-four"/);
});

test("a tensor missing from the checkpoint, or of the wrong shape for the config", () => {
  const d = copyFixture("llama_rope_linear", "wrong-shape");
  editJson(path.join(d, "config.json"), (j) => (j.intermediate_size = 96));
  expectOneLineError(["verify", d], /tensor "model\.layers\.0\.mlp\.(down|gate|up)_proj\.weight" has shape \(\d+, \d+\), the config needs/);
  const m = copyFixture("llama_rope_linear", "missing-tensor");
  editJson(path.join(m, "config.json"), (j) => (j.num_hidden_layers = 3));
  expectOneLineError(["verify", m], /model\.safetensors: tensor "model\.layers\.2\.[a-z_.]+" is missing/);
});

test("a corrupt checkpoint file is named with its problem", () => {
  const d = copyFixture("llama_rope_linear", "corrupt");
  const f = path.join(d, "model.safetensors");
  fs.truncateSync(f, 1000);
  expectOneLineError(["verify", d], /corrupt\/model\.safetensors: truncated: header says \d+ bytes/);
});

test("token ids outside the vocabulary", () => {
  const d = copyFixture("llama_rope_linear", "bad-ids");
  const ref = path.join(d, "ids.safetensors");
  writeSafetensors(ref, [{ name: "input_ids", dtype: "I32", shape: [1, 3], data: Int32Array.from([1, 160, 3]) }]);
  expectOneLineError(["verify", d, "--reference", ref], /token id 160 at index 1 is outside the vocabulary \[0, 160\)/);
});

test("unknown command, flag, backend, and missing arguments", () => {
  expectOneLineError(["frobnicate"], /unknown command "frobnicate"/);
  expectOneLineError(["verify", "--bogus"], /verify: Unknown option '--bogus'/);
  const good = path.join(VARIANT_FIXTURES, "llama_rope_linear");
  expectOneLineError(["verify", good, "--backend", "quantum"], /backend "quantum" is unknown \(choose one of: ref/);
  expectOneLineError(["verify"], /verify: give exactly one model directory/);
  expectOneLineError(["verify", good, "--threads", "zero"], /--threads must be an integer in \[1, 256\], got "zero"/);
});

test("help lists the commands", () => {
  const r = seqlab("--help");
  assert.equal(r.code, 0);
  assert.match(r.stdout, /verify/);
});

test("train writes a resumable checkpoint and eval reads its task back", () => {
  const out = path.join(tmp, "ckpt");
  const t = seqlab("train", "--task", "induction", "--length", "16", "--steps", "4", "--batch", "2", "--width", "16", "--out", out, "--checkpoint-every", "2");
  assert.equal(t.code, 0, t.stderr);
  assert.match(t.stdout, /train: 4 steps in .* held-out loss \d/);
  for (const f of ["config.json", "model.safetensors", "optimizer.safetensors", "trainer.json"]) assert.ok(fs.existsSync(path.join(out, f)), f);
  const again = seqlab("train", "--task", "induction", "--length", "16", "--steps", "6", "--batch", "2", "--width", "16", "--out", out, "--checkpoint-every", "2");
  assert.equal(again.code, 0, again.stderr);
  const e = seqlab("eval", out, "--batches", "1", "--batch", "2");
  assert.equal(e.code, 0, e.stderr);
  assert.match(e.stdout, /^eval: induction T=16: loss \d/);
});

test("train and eval refuse bad input in one line", () => {
  expectOneLineError(["train", "--task", "nope"], /task "nope" is unknown \(tasks: passkey, mqar/);
  expectOneLineError(["train", "--model", "foo"], /--model "foo" is neither a preset/);
  expectOneLineError(["train", "--steps", "0"], /--steps must be an integer in \[1, /);
  expectOneLineError(["train", "--lr", "fast"], /--lr must be a number/);
  expectOneLineError(["train", "--task", "text"], /task text needs --data FILE/);
  expectOneLineError(["train", "--task", "text", "--data", path.join(tmp, "missing.txt")], /missing\.txt: cannot read \(ENOENT\)/);
  expectOneLineError(["train", "--task", "passkey", "--length", "10"], /passkey: length 10 is too short/);
  expectOneLineError(["train", "--task", "mqar", "--alphabet", "0"], /--alphabet must be an integer in \[1, /);
  expectOneLineError(["train", "--task", "mqar", "--pairs", "9", "--alphabet", "8"], /mqar: 9 pairs need at least as many keys \(alphabet 8\)/);
  expectOneLineError(["eval", path.join(tmp, "nowhere")], /nowhere: no such model directory/);
});

test("an output path that cannot be written fails before the work starts, and leaves nothing behind", () => {
  const file = path.join(tmp, "plain-file");
  fs.writeFileSync(file, "x");
  const under = path.join(file, "sub");
  const before = fs.readdirSync(tmp).sort();
  const started = performance.now();
  // small runs everywhere, should a check fail to refuse them
  expectOneLineError(["showdown", "--quick", "--only", "decode", "--out", under], /showdown: --out .*sub: .*plain-file is not a directory/);
  expectOneLineError(["showdown", "--quick", "--only", "decode", "--out", file], /showdown: --out .*plain-file: exists and is not a directory/);
  expectOneLineError(["train", "--task", "induction", "--steps", "1", "--out", file], /train: --out .*plain-file: exists and is not a directory/);
  expectOneLineError(["bench", "cpu", "--quick", "--models", "mamba", "--out", path.join(under, "r.json")], /bench cpu: --out .*r\.json: .*plain-file is not a directory/);
  expectOneLineError(["bench", "gpu", "--quick", "--only", "copy", "--out", tmp], /bench gpu: --out .*: is a directory/);
  expectOneLineError(["passkey", "--out", path.join(under, "p.html")], /passkey: --out .*p\.html: .*plain-file is not a directory/);
  expectOneLineError(["export", "--model", "mamba", "--hf", under], /export: --hf .*sub: .*plain-file is not a directory/);
  // each refused at once: a showdown or benchmark would otherwise run for minutes first
  assert.ok(performance.now() - started < 60_000, "refused before running");
  assert.deepEqual(fs.readdirSync(tmp).sort(), before, "no probe or partial file left");
  // /proc refuses new entries even for root, where permission bits would say yes
  if (process.platform === "linux") expectOneLineError(["showdown", "--quick", "--only", "decode", "--out", "/proc/seqlab-results"], /showdown: --out \/proc\/seqlab-results: cannot write in \/proc/);
});

test("a config whose parameters cannot fit is refused by its shapes, before anything is allocated", () => {
  const huge = path.join(tmp, "huge.json");
  fs.writeFileSync(huge, JSON.stringify({ model_type: "mamba", hidden_size: 1e9, num_hidden_layers: 1000, vocab_size: 1e9 }));
  expectOneLineError(["train", "--model", huge, "--steps", "1"], /huge\.json: its parameters, their gradients and optimizer moments need [\d.]+ TiB, more than the memory budget of/);
  expectOneLineError(["export", "--model", huge, "--hf", path.join(tmp, "huge-out")], /huge\.json: its parameters need [\d.]+ TiB, more than the memory budget/);
  assert.ok(!fs.existsSync(path.join(tmp, "huge-out")), "nothing written");
  // a model directory whose config disagrees with its (small) weights: the config sets what the build allocates
  const d = copyFixture("mamba_conv3_auto", "mamba-huge-config");
  editJson(path.join(d, "config.json"), (j) => (j.hidden_size = 1e9));
  expectOneLineError(["verify", d], /model\.safetensors: tensor "backbone\.embeddings\.weight" has shape \(160, 48\), the config needs \(160, 1000000000\)/);
});
