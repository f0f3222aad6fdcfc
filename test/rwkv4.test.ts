/**
 * RWKV-4 (HF RwkvForCausalLM): parity with every HF fixture of model_type "rwkv", and, on
 * seeded random models of other shapes (tied / untied, attention width != width, rescaling on),
 * step decoding == full forward, continuation from a state, constant state size, HF's
 * rescale_every behaviour and whole-model gradients against finite differences.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as path from "node:path";
import { loadModel } from "../src/models/load.js";
import { runChecks, formatCheck } from "../src/cli/verify.js";
import { SafetensorsFile } from "../src/io/safetensors.js";
import { RawConfig } from "../src/io/config.js";
import { ModuleContext } from "../src/nn/module.js";
import { buildModel } from "../src/models/registry.js";
import type { RwkvForCausalLM } from "../src/models/rwkv4.js";
import { SeqlabError } from "../src/util/errors.js";
import { Rng } from "../src/util/rng.js";
import { fixtureDirs, ref32, ref64, relErr } from "./helpers.js";
import { continuationError, fdGradientError, footprintAfter, logits, randomIds, randomModel, stepDecodingError } from "./rwkv_helpers.js";

const rng = new Rng(404);

const TIED_NARROW = {
  model_type: "rwkv",
  vocab_size: 41,
  hidden_size: 24,
  attention_hidden_size: 16,
  intermediate_size: 40,
  num_hidden_layers: 3,
  rescale_every: 0,
  tie_word_embeddings: true,
};
const UNTIED_RESCALED = {
  model_type: "rwkv",
  vocab_size: 29,
  hidden_size: 16,
  num_hidden_layers: 3,
  rescale_every: 1,
  layer_norm_epsilon: 1e-6,
};

test("HF parity on every rwkv fixture (logits, hidden states, loss, gradients, greedy generation)", async () => {
  const dirs = fixtureDirs("rwkv");
  assert.ok(dirs.length >= 1, "no rwkv fixtures found");
  for (const dir of dirs) {
    const model = loadModel(dir, ref32);
    const ref = SafetensorsFile.open(path.join(dir, "reference.safetensors"));
    try {
      const checks = await runChecks(model, ref);
      const failed = checks.filter((c) => !c.ok);
      assert.equal(failed.length, 0, `${dir}:\n${failed.map(formatCheck).join("\n")}`);
      assert.ok(checks.some((c) => c.name.startsWith("grad.") && c.ok), `${dir}: no gradients were compared`);
    } finally {
      ref.close();
    }
  }
});

test("step decoding reproduces the full forward at every position (tied, D != C; untied, rescaled)", () => {
  for (const [cfg, seed] of [
    [TIED_NARROW, 1],
    [UNTIED_RESCALED, 2],
  ] as const) {
    const model = randomModel(cfg, ref64, seed);
    const [B, T] = [2, 9];
    const ids = randomIds(rng, B * T, model.config.V);
    assert.ok(stepDecodingError(model, ids, B, T) < 1e-12, `${JSON.stringify(cfg)}`);
    assert.ok(continuationError(model, ids, B, T, 4) < 1e-12);
    assert.ok(continuationError(model, ids, B, T, 1) < 1e-12);
  }
});

test("float32: decoding and continuation agree with the full forward", () => {
  const model = randomModel(TIED_NARROW, ref32, 3);
  const ids = randomIds(rng, 2 * 20, model.config.V);
  assert.ok(stepDecodingError(model, ids, 2, 20) < 1e-5);
  assert.ok(continuationError(model, ids, 2, 20, 13) < 1e-5);
});

test("the recurrent state has the same size after 10 and after 10,000 tokens, and nothing else grows", () => {
  const model = randomModel({ ...TIED_NARROW, num_hidden_layers: 2 }, ref32, 4);
  const short = footprintAfter(model, 10, rng);
  const long = footprintAfter(model, 10_000, rng);
  assert.equal(short.kv, 0);
  assert.equal(long.state, short.state);
  assert.equal(long.live, short.live);
  // per layer: two token shifts (C) and [num, den, max] (D) per sequence, 4 bytes each
  assert.equal(short.state, 2 * (2 * 24 + 3 * 16) * 4);
});

test("rescale_every: eval halves the stream as HF does, training mode restores the weights", () => {
  const model = randomModel(UNTIED_RESCALED, ref64, 5) as RwkvForCausalLM;
  const original = Float64Array.from(model.rwkv.blocks[2].attention.output.weight.handle as Float64Array);
  const ids = randomIds(rng, 12, model.config.V);
  const evalLogits = logits(model, ids, 1, 12);
  // block 2's weights are divided by 2^floor(2 / 1) in inference mode
  const scaled = model.rwkv.blocks[2].attention.output.weight.handle as Float64Array;
  assert.ok(relErr(scaled, original.map((x) => x / 4)) === 0);
  model.setTraining(true);
  const trainLogits = logits(model, ids, 1, 12);
  assert.ok(relErr(model.rwkv.blocks[2].attention.output.weight.handle as Float64Array, original) === 0);
  // LayerNorm is scale invariant up to eps: the two modes compute almost the same function
  const err = relErr(evalLogits, trainLogits);
  assert.ok(err > 0 && err < 1e-3, `eval vs train logits: ${err}`);
});

test("whole-model gradients match finite differences (float64, tied, D != C)", () => {
  const model = randomModel({ ...TIED_NARROW, num_hidden_layers: 2 }, ref64, 6);
  const [B, T] = [2, 6];
  const err = fdGradientError(model, randomIds(rng, B * T, model.config.V), B, T, 2, rng);
  assert.ok(err < 1e-6, `${err}`);
});

test("bad RWKV-4 configs are one-line errors naming the key", () => {
  const bad = (cfg: Record<string, unknown>, key: string) => {
    assert.throws(
      () => buildModel(new RawConfig("config.json", cfg), ModuleContext.forLoading(ref32)),
      (e: unknown) => e instanceof SeqlabError && e.message.includes(key) && !e.message.includes("\n"),
    );
  };
  bad({ ...TIED_NARROW, rescale_every: -1 }, "rescale_every");
  bad({ ...TIED_NARROW, attention_hidden_size: "wide" }, "attention_hidden_size");
  bad({ ...TIED_NARROW, hidden_size: 0 }, "hidden_size");
});
