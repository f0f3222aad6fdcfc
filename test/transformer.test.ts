/**
 * Llama and GPT-2: HF parity on every fixture (shared and other configurations), cached decoding
 * equal to the full forward at every position, KV cache growth, tied embeddings, tiled == naive.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { RawConfig } from "../src/io/config.js";
import { RefBackend } from "../src/backend/ref/index.js";
import { loadModel } from "../src/models/load.js";
import { buildModel } from "../src/models/registry.js";
import { ModuleContext } from "../src/nn/module.js";
import { runChecks, formatCheck } from "../src/cli/verify.js";
import { SafetensorsFile } from "../src/io/safetensors.js";
import { noGrad } from "../src/autograd/tape.js";
import { tidy } from "../src/tensor/scope.js";
import { toArraySync } from "../src/backend/alloc.js";
import type { CausalLM } from "../src/models/causal_lm.js";
import { Rng } from "../src/util/rng.js";
import * as path from "node:path";
import { fixtureDirs, maxAbsDiff, ref32 } from "./helpers.js";

for (const dir of fixtureDirs("llama", "gpt2")) {
  test(`HF parity: ${path.basename(dir)}`, async () => {
    const model = loadModel(dir, ref32);
    const ref = SafetensorsFile.open(path.join(dir, "reference.safetensors"));
    const checks = await runChecks(model, ref);
    ref.close();
    const failed = checks.filter((c) => !c.ok);
    assert.equal(failed.length, 0, failed.map(formatCheck).join("\n"));
    assert.ok(checks.some((c) => c.name === "logits") && checks.some((c) => c.name.startsWith("grad.")));
  });
}

function randomModel(json: Record<string, unknown>, seed: number): CausalLM {
  return buildModel(new RawConfig("test config", json), ModuleContext.seeded(ref32, seed));
}

/** logits of the full forward vs. prefill of `split` tokens then one token at a time. */
function stepVsFull(model: CausalLM, T: number, split: number, capacity: number): number {
  const rng = new Rng(3);
  const ids = Array.from({ length: T }, () => rng.int(0, model.config.V));
  return noGrad(() =>
    tidy(() => {
      const V = model.config.V;
      const full = toArraySync(model.forward(model.tokens(ids, 1, T)).logits);
      const state = model.allocateState(1, capacity);
      let worst = 0;
      const pre = toArraySync(model.forward(model.tokens(ids.slice(0, split), 1, split), { state }).logits);
      worst = Math.max(worst, maxAbsDiff(pre, full.subarray(0, split * V)));
      for (let t = split; t < T; t++) {
        const step = toArraySync(model.forward(model.tokens([ids[t]], 1, 1, t), { state }).logits);
        worst = Math.max(worst, maxAbsDiff(step, full.subarray(t * V, (t + 1) * V)));
      }
      assert.equal(state.position, T);
      state.dispose();
      return worst;
    }),
  );
}

const llamaConfig = {
  model_type: "llama",
  vocab_size: 50,
  hidden_size: 24,
  intermediate_size: 40,
  num_hidden_layers: 2,
  num_attention_heads: 6,
  num_key_value_heads: 2,
  rope_theta: 100.0,
  tie_word_embeddings: true,
};

test("Llama: step decoding reproduces the full forward at every position (KV cache grows past its capacity)", () => {
  const model = randomModel(llamaConfig, 1);
  for (const split of [1, 7]) assert.ok(stepVsFull(model, 19, split, 2) < 1e-5);
});

test("GPT-2: step decoding reproduces the full forward at every position", () => {
  const model = randomModel({ model_type: "gpt2", vocab_size: 40, n_embd: 16, n_layer: 2, n_head: 4, n_positions: 64 }, 2);
  assert.ok(stepVsFull(model, 15, 4, 4) < 1e-5);
});

test("KV cache bytes grow linearly with position; tied embeddings share one tensor", () => {
  const model = randomModel(llamaConfig, 4);
  const names = model.namedParameters().map(([n]) => n);
  assert.ok(!names.includes("lm_head.weight"), "tied lm_head is not a separate parameter");
  const state = model.allocateState(1, 8);
  const rowBytes = 2 * 2 * 4 * 2 * (24 / 6); // layers * (k,v) * f32 * G * K
  noGrad(() =>
    tidy(() => {
      for (let t = 0; t < 20; t++) {
        model.forward(model.tokens([t % 50], 1, 1, t), { state });
        assert.equal(state.bytes().kvCache, rowBytes * (t + 1));
      }
    }),
  );
  assert.equal(state.bytes().recurrent, 0);
  assert.ok(state.bytes().kvCacheAllocated >= state.bytes().kvCache);
  state.dispose();
});

test("tiled and naive attention give the same model outputs", () => {
  const model = randomModel(llamaConfig, 5) as CausalLM & { setAttentionImpl(i: "tiled" | "naive"): void };
  const ids = Array.from({ length: 37 }, (_, i) => (i * 7) % 50);
  const run = () => noGrad(() => tidy(() => toArraySync(model.forward(model.tokens(ids, 1, ids.length)).logits)));
  const tiled = run();
  model.setAttentionImpl("naive");
  const naive = run();
  assert.ok(maxAbsDiff(tiled, naive) < 1e-5);
});

test("no tensor leaks: a forward and backward inside tidy frees everything but parameter grads", () => {
  const model = randomModel(llamaConfig, 6);
  const before = ref32.memory().bytesInUse;
  tidy(() => {
    const out = model.forward(model.tokens([1, 2, 3, 4], 1, 4)).logits;
    return out.size;
  });
  assert.equal(ref32.memory().bytesInUse, before);
});

test("Llama with an f16 KV cache: step decoding stays within f16 rounding of the full forward, the cache takes half the bytes", () => {
  const half = new RefBackend({ kvCache: "f16" });
  const model = buildModel(new RawConfig("test config", llamaConfig), ModuleContext.seeded(half, 1));
  const f32Model = randomModel(llamaConfig, 1); // the same seeded weights, f32 cache
  const worst = stepVsFull(model, 19, 7, 2);
  assert.ok(worst > 0 && worst < 5e-3, `f16 KV cache: step vs full ${worst}`);
  assert.ok(stepVsFull(f32Model, 19, 7, 2) < 1e-5);
  const state = model.allocateState(1, 8);
  noGrad(() => tidy(() => model.forward(model.tokens([1, 2, 3], 1, 3, 0), { state })));
  assert.equal(state.bytes().kvCache, 2 * 2 * 2 * 2 * (24 / 6) * 3); // layers * (k,v) * f16 * G * K * tokens
  state.dispose();
});
