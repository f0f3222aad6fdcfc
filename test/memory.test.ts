/**
 * Inference memory by layer kind: the report computed from shapes (nothing run) equals the state
 * bytes of an actual run to that position, layer by layer, on every kind of model; a configuration
 * far too large to build is reported without allocating it; `seqlab memory` prints the split.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as path from "node:path";
import { RawConfig } from "../src/io/config.js";
import { preset } from "../src/models/presets.js";
import { configMemory, stateMemory } from "../src/models/memory.js";
import { noGrad } from "../src/autograd/tape.js";
import { tidy } from "../src/tensor/scope.js";
import { Rng } from "../src/util/rng.js";
import { ROOT, VARIANT_FIXTURES } from "./helpers.js";
import { randomModel } from "./hybrid_helpers.js";

const configs: Record<string, Record<string, unknown>> = {
  jamba: { model_type: "jamba", vocab_size: 32, hidden_size: 16, intermediate_size: 12, num_hidden_layers: 4, num_attention_heads: 4, num_key_value_heads: 2, attn_layer_period: 2, attn_layer_offset: 1, num_experts: 3, mamba_d_state: 4 },
  granite: { model_type: "granitemoehybrid", vocab_size: 32, hidden_size: 16, intermediate_size: 8, shared_intermediate_size: 8, num_hidden_layers: 3, num_attention_heads: 2, layer_types: ["mamba", "attention", "mamba"], num_local_experts: 2, mamba_n_heads: 4, mamba_d_state: 4, mamba_chunk_size: 4 },
  qwen3next: { model_type: "qwen3_next", vocab_size: 32, hidden_size: 16, intermediate_size: 8, num_hidden_layers: 2, num_attention_heads: 2, num_key_value_heads: 1, head_dim: 8, linear_num_key_heads: 1, linear_num_value_heads: 2, linear_key_head_dim: 4, linear_value_head_dim: 4, num_experts: 2, num_experts_per_tok: 1, moe_intermediate_size: 4, shared_expert_intermediate_size: 4, layer_types: ["linear_attention", "full_attention"] },
  hybrid: preset("hybrid", { vocab: 32, width: 16, layers: 4 }),
  transformer: preset("transformer", { vocab: 32, width: 16 }),
  mamba2: preset("mamba2", { vocab: 32, width: 16, layers: 2 }),
  rwkv7: preset("rwkv7", { vocab: 32, width: 16 }),
  rwkv4: preset("rwkv4", { vocab: 32, width: 16 }),
  gpt2: { model_type: "gpt2", vocab_size: 32, n_embd: 16, n_layer: 2, n_head: 2, n_positions: 64 },
};

for (const [name, json] of Object.entries(configs)) {
  test(`${name}: memory from shapes equals the state of an actual run, layer by layer`, () => {
    const model = randomModel(json, 1);
    const B = 2;
    const T = 11;
    const state = model.allocateState(B, 4);
    const rng = new Rng(2);
    noGrad(() => tidy(() => void model.forward(model.tokens(Array.from({ length: B * T }, () => rng.int(0, 32)), B, T), { state })));
    const actual = state.layerBytes();
    const fromShapes = stateMemory(model, T, B);
    const fromConfig = configMemory(new RawConfig(name, json), T, B);
    assert.deepEqual(fromShapes.layers.map((l) => [l.kind, l.bytes]), actual.map((l) => [l.kind, l.bytes]));
    assert.deepEqual(fromConfig, fromShapes);
    const b = state.bytes();
    assert.equal(fromShapes.kvCache, b.kvCache);
    assert.equal(fromShapes.recurrent, b.recurrent);
    assert.equal(fromShapes.parameterBytes, 4 * model.parameterCount());
    state.dispose();
  });
}

test("a Jamba-size configuration (~52B parameters) is reported from shapes without allocating it", () => {
  const t0 = performance.now();
  const r = configMemory(new RawConfig("jamba defaults", { model_type: "jamba" }), 256 * 1024);
  assert.ok(performance.now() - t0 < 10_000);
  assert.ok(r.parameterBytes / 4 > 50e9 && r.parameterBytes / 4 < 54e9, `${r.parameterBytes / 4} parameters`);
  // 4 attention layers (offset 4, period 8 of 32) of 8 KV heads x 128: k and v, float32
  const attn = r.byKind.find((k) => k.kind === "attention")!;
  assert.equal(attn.layers, 4);
  assert.equal(attn.bytesPerToken, 4 * 2 * 8 * 128 * 4);
  assert.equal(r.kvCache, attn.bytesPerToken * 256 * 1024);
  const mamba = r.byKind.find((k) => k.kind === "mamba")!;
  assert.equal(mamba.layers, 28);
  assert.equal(mamba.bytesPerToken, 0);
  assert.equal(r.recurrent, 28 * (3 * 8192 + 8192 * 16) * 4); // conv window (W - 1) x D and D x N state
});

function seqlab(...args: string[]) {
  const r = spawnSync(process.execPath, [path.join(ROOT, "bin/seqlab.mjs"), ...args], { encoding: "utf8" });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

test("CLI: seqlab memory splits KV-cache and recurrent bytes per layer kind; bad flags are one line", () => {
  const r = seqlab("memory", "--model", "hybrid", "--position", "1000", "--width", "32", "--layers", "8");
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^attention \(KV cache\)\s+2\s+/m);
  assert.match(r.stdout, /^mamba \(recurrent\)\s+6\s+.*0 \(fixed\)/m);
  // 2 attention layers x 1000 tokens x (k, v) x 2 KV heads x 16 x 4 bytes
  assert.match(r.stdout, new RegExp(`KV cache [\\d.]+ KiB \\(${2 * 1000 * 2 * 2 * 16 * 4} B\\)`));
  const j = seqlab("memory", "--model", path.join(VARIANT_FIXTURES, "granite_rope"), "--position", "7", "--json");
  assert.equal(j.code, 0, j.stderr);
  const report = JSON.parse(j.stdout);
  assert.equal(report.modelType, "granitemoehybrid");
  assert.equal(report.kvCache, 7 * 2 * 3 * 8 * 4); // one attention layer: 3 KV heads of 48 / 6
  for (const [args, re] of [
    [["memory"], /seqlab: memory: --model DIR\|PRESET is required/],
    [["memory", "--model", "hybrid", "--position", "1e3x"], /seqlab: memory: --position must be an integer in \[0, \d+\], got "1e3x"/],
  ] as [string[], RegExp][]) {
    const e = seqlab(...args);
    assert.notEqual(e.code, 0);
    assert.equal(e.stderr.trim().split("\n").length, 1, e.stderr);
    assert.match(e.stderr, re);
  }
});
