/**
 * `seqlab export`: every fixture of an HF architecture is written back byte for byte as its
 * model.safetensors (same names, same data) and loads again with the same logits; native models
 * whose pattern is an HF architecture (Llama, Mamba, Mamba-2, Jamba) convert and load as that
 * architecture with exactly the native logits; other patterns are refused with a line naming the
 * cause. With SEQLAB_EXPORT_DIR set, every export (with reference.safetensors) is kept there for
 * scripts/check_hf_export.py, which loads them with transformers.
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { RawConfig } from "../src/io/config.js";
import { SafetensorsFile } from "../src/io/safetensors.js";
import { buildModel } from "../src/models/registry.js";
import { loadModel, readModelConfig } from "../src/models/load.js";
import { preset } from "../src/models/presets.js";
import type { CausalLM } from "../src/models/causal_lm.js";
import { asTransformers, configJson, writeTransformersDir } from "../src/models/export.js";
import { gridOf } from "../src/models/native_export.js";
import { writeReference } from "../src/cli/commands/export.js";
import { ModuleContext } from "../src/nn/module.js";
import { noGrad } from "../src/autograd/tape.js";
import { tidy } from "../src/tensor/scope.js";
import { toArraySync } from "../src/backend/alloc.js";
import { SeqlabError } from "../src/util/errors.js";
import { Rng } from "../src/util/rng.js";
import { fixtureDirs, maxAbsDiff, ref32, ROOT } from "./helpers.js";

const KEEP = process.env.SEQLAB_EXPORT_DIR;
const OUT = KEEP ?? fs.mkdtempSync(path.join(os.tmpdir(), "seqlab-export-"));
after(() => {
  if (!KEEP) fs.rmSync(OUT, { recursive: true, force: true });
});

function logits(model: CausalLM, seed = 9): Float32Array {
  const rng = new Rng(seed);
  const ids = Array.from({ length: 2 * 9 }, () => rng.int(0, model.config.V));
  return noGrad(() => tidy(() => Float32Array.from(toArraySync(model.forward(model.tokens(ids, 2, 9)).logits))));
}

/** Export `model` (built from `raw`) into OUT/name; returns the HF class and the loaded export. */
async function exportAndLoad(name: string, model: CausalLM, raw: RawConfig): Promise<{ hfClass: string; loaded: CausalLM; dir: string }> {
  const dir = path.join(OUT, name);
  const hf = await asTransformers(model, raw);
  await writeTransformersDir(dir, hf);
  if (KEEP) await writeReference(path.join(dir, "reference.safetensors"), model);
  return { hfClass: hf.arch.hfClass, loaded: loadModel(dir, ref32), dir };
}

function tensorsOf(file: string): Map<string, { shape: number[]; data: Float32Array }> {
  const st = SafetensorsFile.open(file);
  const out = new Map(st.names().map((n) => [n, { shape: st.info(n).shape, data: st.readF32(n) }]));
  st.close();
  return out;
}

const HF_TYPES = ["llama", "gpt2", "mamba", "mamba2", "rwkv", "jamba", "granitemoehybrid", "qwen3_next"];

for (const src of fixtureDirs(...HF_TYPES)) {
  test(`export ${path.basename(src)}: the checkpoint file is written back as it was, and loads with the same logits`, async () => {
    const raw = readModelConfig(src);
    const model = loadModel(src, ref32);
    const { hfClass, loaded, dir } = await exportAndLoad(`hf_${path.basename(src)}`, model, raw);
    const want = tensorsOf(path.join(src, "model.safetensors"));
    const got = tensorsOf(path.join(dir, "model.safetensors"));
    assert.deepEqual([...got.keys()].sort(), [...want.keys()].sort());
    for (const [n, t] of want) {
      assert.deepEqual(got.get(n)!.shape, t.shape, n);
      assert.ok(maxAbsDiff(got.get(n)!.data, t.data) === 0, n);
    }
    const config = JSON.parse(fs.readFileSync(path.join(dir, "config.json"), "utf8"));
    assert.deepEqual(config.architectures, [hfClass]);
    assert.equal(config.model_type, raw.str("model_type"));
    assert.ok(maxAbsDiff(logits(loaded), logits(model)) === 0);
  });
}

const nativeCases: [string, Record<string, unknown>, string][] = [
  ["native_transformer", preset("transformer", { vocab: 48, width: 32, layers: 2 }), "LlamaForCausalLM"],
  ["native_mamba", preset("mamba", { vocab: 48, width: 24, layers: 2 }), "MambaForCausalLM"],
  ["native_mamba2", { ...preset("mamba2", { vocab: 48, width: 32, layers: 2 }), tie_word_embeddings: false }, "Mamba2ForCausalLM"],
  [
    "native_jamba",
    { ...preset("hybrid", { vocab: 48, width: 32, layers: 8 }), mamba: { state_size: 8, dt_rank: "auto", inner_norms: true } },
    "JambaForCausalLM",
  ],
  [
    // attention first, every layer sparse, renormalisation off by default, MQA, untied, bias on the mamba projections
    "native_jamba_allmoe",
    {
      model_type: "seqlab",
      vocab_size: 48,
      hidden_size: 24,
      tie_word_embeddings: false,
      layers: ["attention+moe", "mamba+moe", "mamba+moe", "attention+moe", "mamba+moe", "mamba+moe"],
      attention: { num_heads: 4, num_kv_heads: 1, position: "none" },
      mamba: { state_size: 4, conv_kernel: 3, expand: 1, dt_rank: 3, use_bias: true, use_conv_bias: false, inner_norms: true },
      moe: { num_experts: 3, top_k: 1, intermediate_size: 20, aux_loss_coef: 0.02 },
    },
    "JambaForCausalLM",
  ],
];

for (const [name, json, hfClass] of nativeCases) {
  test(`export ${name}: a native ${hfClass} pattern loads as ${hfClass} with exactly the native logits`, async () => {
    const raw = new RawConfig(name, json);
    const model = buildModel(raw, ModuleContext.seeded(ref32, 5));
    const out = await exportAndLoad(name, model, raw);
    assert.equal(out.hfClass, hfClass);
    assert.equal(out.loaded.constructor.name, hfClass);
    assert.equal(out.loaded.parameterCount(), model.parameterCount());
    assert.ok(maxAbsDiff(logits(out.loaded), logits(model)) === 0);
  });
}

test("Jamba's grids from a layer pattern: every n-th layer from an offset, none, all, or no grid", () => {
  assert.deepEqual(gridOf([false, false, false, true, false, false, false, true]), { period: 4, offset: 3 });
  assert.deepEqual(gridOf([true, true, true]), { period: 1, offset: 0 });
  assert.deepEqual(gridOf([false, false]), { period: 3, offset: 2 });
  assert.deepEqual(gridOf([true, false, false]), { period: 3, offset: 0 });
  assert.equal(gridOf([true, true, false]), null);
});

test("patterns that no transformers class has are refused, naming what prevents it", async () => {
  const base = preset("hybrid", { vocab: 48, width: 32, layers: 4 });
  const hybrid = { ...base, mamba: { ...(base.mamba as object), inner_norms: false } }; // plain Mamba mixers
  const refuse = async (json: Record<string, unknown>, re: RegExp) => {
    const raw = new RawConfig("cfg", json);
    const model = buildModel(raw, ModuleContext.forLoading(ref32));
    await assert.rejects(asTransformers(model, raw), (e) => e instanceof SeqlabError && re.test(e.message) && !e.message.includes("\n"), String(re));
  };
  await refuse(hybrid, /cannot export as JambaForCausalLM: layer 0's mamba lacks Jamba's RMSNorms on dt, B and C \(set mamba.inner_norms: true\)/);
  const jamba = { ...hybrid, mamba: { inner_norms: true } };
  await refuse({ ...jamba, attention: { num_heads: 2 } }, /layer 3's attention uses RoPE; JambaForCausalLM attention has no positional encoding/);
  await refuse({ ...jamba, moe: { num_experts: 4, top_k: 2, intermediate_size: 32, norm_topk_prob: true } }, /layer 1's moe renormalises its top-k weights/);
  await refuse({ ...jamba, moe: { num_experts: 4, top_k: 2, intermediate_size: 16 } }, /the experts' intermediate_size 16 differs from the mlp's 32/);
  await refuse({ ...jamba, moe: { num_experts: 4, intermediate_size: 32, shared_expert_intermediate_size: 8 } }, /layer 1's moe has a shared expert/);
  await refuse({ ...jamba, layers: ["mamba+mlp", "attention+mlp", "attention+mlp", "mamba+mlp"] }, /the attention layers \(1, 2\) are not every n-th layer/);
  await refuse({ ...jamba, layers: ["mamba+mlp", "attention"] }, /layer 1 is "attention"\) has no transformers architecture; exportable patterns: all attention\+mlp/);
  await refuse(preset("transformer", { vocab: 48, width: 32, position: "none" }), /layer 0's attention has no positional encoding; LlamaForCausalLM needs RoPE/);
  await refuse(preset("mamba-lti", { vocab: 48, width: 32 }), /layer 0's mamba is the time-invariant ablation/);
  await refuse({ ...preset("mamba", { vocab: 48, width: 32 }), mamba: { inner_norms: true } }, /has Jamba's inner norms \(inner_norms\), which MambaForCausalLM lacks/);
  await refuse(preset("rwkv7", { vocab: 48, width: 32 }), /model_type "rwkv7" .* has no transformers class to export to/);
  await refuse({ ...preset("mamba", { vocab: 48, width: 32 }), selective: false, model_type: "mamba", hidden_size: 32, vocab_size: 48, num_hidden_layers: 1 }, /selective: false \(the time-invariant Mamba ablation\) has no transformers equivalent/);
});

test("a seqlab training checkpoint of an HF architecture (module names in the file) loads and exports", async () => {
  const json = { model_type: "jamba", vocab_size: 32, hidden_size: 16, intermediate_size: 12, num_hidden_layers: 2, num_attention_heads: 2, num_key_value_heads: 1, attn_layer_period: 2, attn_layer_offset: 1, num_experts: 2, mamba_d_state: 4, seqlab_task: { name: "passkey" } };
  const raw = new RawConfig("ckpt", json);
  const model = buildModel(raw, ModuleContext.seeded(ref32, 2));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "seqlab-ckpt-")); // seqlab's own format: not for transformers
  after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const { writeSafetensors } = await import("../src/io/safetensors.js");
  writeSafetensors(path.join(dir, "model.safetensors"), model.namedParameters().map(([name, t]) => ({ name, dtype: "F32" as const, shape: t.shape, data: Float32Array.from(toArraySync(t)) })));
  fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify(json));
  const loaded = loadModel(dir, ref32);
  assert.ok(maxAbsDiff(logits(loaded), logits(model)) === 0);
  const out = await exportAndLoad("ckpt_jamba_hf", loaded, readModelConfig(dir));
  const config = JSON.parse(fs.readFileSync(path.join(out.dir, "config.json"), "utf8"));
  assert.equal(config.seqlab_task, undefined);
  assert.ok(tensorsOf(path.join(out.dir, "model.safetensors")).has("model.layers.1.feed_forward.experts.1.up_proj.weight"));
});

const BIN = path.join(ROOT, "bin/seqlab.mjs");
function seqlab(...args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: "utf8", cwd: OUT });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

test("CLI: seqlab export --hf DIR --model PRESET --reference, then seqlab verify DIR passes; errors are one line", () => {
  const dir = path.join(OUT, "cli_transformer");
  const r = seqlab("export", "--hf", dir, "--model", "transformer", "--vocab", "40", "--width", "32", "--reference", "--force");
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /export: wrote .* as LlamaForCausalLM \([\d,]+ parameters\) with reference.safetensors/);
  const v = seqlab("verify", dir);
  assert.equal(v.code, 0, v.stdout + v.stderr);
  assert.match(v.stdout, /^logits\s+rel\s+0\.00e\+0/m);
  assert.equal(v.stdout.trim().split("\n").at(-1), "verify: PASS");
  for (const [args, re] of [
    [["export", "--hf", dir, "--model", "transformer"], /seqlab: export: .*config.json exists \(give --force to overwrite\)/],
    [["export", "--model", "transformer"], /seqlab: export: give --hf DIR \(a Hugging Face directory\) or --gguf FILE/],
    [["export", "--hf", path.join(OUT, "x"), "--model", "mamba-lti"], /seqlab: cannot export as MambaForCausalLM: layer 0's mamba is the time-invariant ablation/],
    [["export", "--hf", path.join(OUT, "x"), "--model", "nonesuch"], /seqlab: export: --model "nonesuch" is neither a model directory, a .json config nor a preset/],
  ] as [string[], RegExp][]) {
    const e = seqlab(...args);
    assert.notEqual(e.code, 0);
    const lines = e.stderr.trim().split("\n");
    assert.equal(lines.length, 1, e.stderr);
    assert.match(lines[0], re);
  }
});

test("config.json writes whole numbers of float fields as floats (transformers 5 refuses time_step_limit [0, inf], time_step_scale 1)", () => {
  const text = configJson({ time_step_limit: [0, { __float__: "Infinity" }], time_step_scale: 1, num_hidden_layers: 2 });
  assert.match(text, /"time_step_limit": \[\s*0\.0,/);
  assert.match(text, /"time_step_scale": 1\.0,/);
  assert.match(text, /"num_hidden_layers": 2\b/);
  assert.deepEqual(JSON.parse(text).time_step_limit, [0, { __float__: "Infinity" }]);
});
