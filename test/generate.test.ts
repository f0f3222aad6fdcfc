/** Sampling rules and generation through the inference state. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { Sampler, argmax } from "../src/generate/sampling.js";
import { generate } from "../src/generate/generate.js";
import { RawConfig } from "../src/io/config.js";
import { buildModel } from "../src/models/registry.js";
import { ModuleContext } from "../src/nn/module.js";
import { SeqlabError } from "../src/util/errors.js";
import { ref32 } from "./helpers.js";

const logits = Float32Array.from([0.1, 2.0, 1.9, -1, 2.0]);

test("greedy is argmax with the lowest index on ties", () => {
  assert.equal(argmax(logits), 1);
  assert.equal(new Sampler({}).next(logits), 1);
});

test("top-k = 1 and tiny top-p reduce to greedy; temperature sampling is seeded and reproducible", () => {
  assert.equal(new Sampler({ temperature: 1, topK: 1, seed: 3 }).next(logits), 1);
  assert.equal(new Sampler({ temperature: 1, topP: 1e-6, seed: 3 }).next(logits), 1);
  const draw = (seed: number) => {
    const s = new Sampler({ temperature: 0.8, seed });
    return Array.from({ length: 50 }, () => s.next(logits));
  };
  assert.deepEqual(draw(11), draw(11));
  assert.notDeepEqual(draw(11), draw(12));
});

test("sampling frequencies follow softmax(logits / T) and top-k / top-p cut the tail", () => {
  const s = new Sampler({ temperature: 1, seed: 5 });
  const counts = new Array(5).fill(0);
  const n = 20000;
  for (let i = 0; i < n; i++) counts[s.next(logits)]++;
  const z = Array.from(logits).reduce((a, l) => a + Math.exp(l), 0);
  for (let i = 0; i < 5; i++) assert.ok(Math.abs(counts[i] / n - Math.exp(logits[i]) / z) < 0.015, `token ${i}`);
  const k = new Sampler({ temperature: 1, topK: 3, seed: 5 });
  for (let i = 0; i < 2000; i++) assert.ok([1, 2, 4].includes(k.next(logits)));
  const p = new Sampler({ temperature: 1, topP: 0.5, seed: 5 });
  for (let i = 0; i < 2000; i++) assert.ok([1, 4].includes(p.next(logits)));
});

test("bad sampling options are refused with a clear message", () => {
  assert.throws(() => new Sampler({ temperature: -1 }), (e) => e instanceof SeqlabError && /temperature must be/.test(e.message));
  assert.throws(() => new Sampler({ topP: 1.5 }), (e) => e instanceof SeqlabError && /top-p must be in \(0, 1\]/.test(e.message));
  assert.throws(() => new Sampler({ topK: 2.5 }), (e) => e instanceof SeqlabError && /top-k must be/.test(e.message));
});

test("generate streams tokens, stops on a stop token and reports stats", async () => {
  const raw = new RawConfig("test", {
    model_type: "llama",
    vocab_size: 30,
    hidden_size: 16,
    intermediate_size: 32,
    num_hidden_layers: 1,
    num_attention_heads: 2,
  });
  const model = buildModel(raw, ModuleContext.seeded(ref32, 9));
  const seen: number[] = [];
  const { tokens, stats } = await generate(model, [1, 2, 3], { maxNewTokens: 12, onToken: (t) => seen.push(t) });
  assert.equal(tokens.length, 15);
  assert.deepEqual(tokens.slice(3), seen);
  assert.equal(stats.newTokens, 12);
  assert.ok(stats.stateBytes.kvCache > 0);
  const stop = seen[4];
  const short = await generate(model, [1, 2, 3], { maxNewTokens: 12, stopTokens: [stop] });
  assert.equal(short.tokens.at(-1), stop);
  assert.ok(short.tokens.length <= 3 + 5);
  await assert.rejects(generate(model, [1, 99], { maxNewTokens: 2 }), /token id 99 at index 1 is outside the vocabulary/);
  await assert.rejects(generate(model, [], { maxNewTokens: 2 }), /prompt is empty/);
});
