/**
 * RWKV-7 (RWKV-LM x070): parity with the official numpy reference fixture (logits, greedy
 * generation), loading by official names and shapes, and on seeded random models of other
 * shapes (head sizes, low-rank widths, tied / untied): step decoding == full forward,
 * continuation from a state, chunked training == per-step training, constant state size, and
 * whole-model gradients against finite differences.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as path from "node:path";
import { loadModel } from "../src/models/load.js";
import { runChecks, formatCheck, shiftedTargets } from "../src/cli/verify.js";
import { SafetensorsFile } from "../src/io/safetensors.js";
import { RawConfig } from "../src/io/config.js";
import { readConfigFile } from "../src/io/config_file.js";
import { ModuleContext } from "../src/nn/module.js";
import { buildModel } from "../src/models/registry.js";
import type { Rwkv7ForCausalLM } from "../src/models/rwkv7.js";
import { fromArray, toArraySync } from "../src/backend/alloc.js";
import { backward } from "../src/autograd/tape.js";
import { tidy } from "../src/tensor/scope.js";
import * as ops from "../src/ops/index.js";
import { SeqlabError } from "../src/util/errors.js";
import { Rng } from "../src/util/rng.js";
import { SHARED_FIXTURES, fixtureDirs, ref32, ref64, relErr } from "./helpers.js";
import { continuationError, fdGradientError, footprintAfter, randomIds, randomModel, stepDecodingError } from "./rwkv_helpers.js";

const rng = new Rng(707);
const OFFICIAL = path.join(SHARED_FIXTURES, "rwkv7");

const SMALL_HEADS = {
  model_type: "rwkv7",
  vocab_size: 37,
  hidden_size: 32,
  num_hidden_layers: 3,
  head_size: 8,
  decay_low_rank_dim: 4,
  a_low_rank_dim: 6,
  v_low_rank_dim: 5,
  gate_low_rank_dim: 7,
  intermediate_size: 48,
};
const TIED_WIDE_HEADS = {
  model_type: "rwkv7",
  vocab_size: 29,
  hidden_size: 24,
  num_hidden_layers: 2,
  head_size: 12,
  decay_low_rank_dim: 3,
  a_low_rank_dim: 3,
  v_low_rank_dim: 2,
  gate_low_rank_dim: 4,
  tie_word_embeddings: true,
};

test("official RWKV-7 reference: logits and greedy generation through the state", async () => {
  for (const dir of [OFFICIAL, ...fixtureDirs("rwkv7")]) {
    const model = loadModel(dir, ref32);
    const ref = SafetensorsFile.open(path.join(dir, "reference.safetensors"));
    try {
      const checks = await runChecks(model, ref);
      const failed = checks.filter((c) => !c.ok);
      assert.equal(failed.length, 0, `${dir}:\n${failed.map(formatCheck).join("\n")}`);
      assert.ok(checks.some((c) => c.name === "logits" && c.ok) && checks.some((c) => c.name.startsWith("generate") && c.ok));
    } finally {
      ref.close();
    }
  }
});

test("official names and shapes: layer 0 has ln0 and no value-residual LoRA, later layers have it", () => {
  const model = buildModel(readConfigFile(path.join(OFFICIAL, "config.json")), ModuleContext.forLoading(ref32));
  const shapes = new Map(model.namedParameters().map(([n, t]) => [n, t.shape.join("x")]));
  assert.equal(shapes.get("blocks.0.ln0.weight"), "64");
  assert.equal(shapes.get("blocks.0.att.x_r"), "1x1x64");
  assert.equal(shapes.get("blocks.0.att.r_k"), "4x16");
  assert.equal(shapes.get("blocks.0.att.w1"), "64x8");
  assert.equal(shapes.get("blocks.1.att.v2"), "8x64");
  assert.equal(shapes.get("blocks.1.att.g1"), "64x16");
  assert.equal(shapes.get("blocks.0.ffn.key.weight"), "256x64");
  assert.ok(!shapes.has("blocks.0.att.v0") && !shapes.has("blocks.1.ln0.weight"));
  const file = SafetensorsFile.open(path.join(OFFICIAL, "model.safetensors"));
  try {
    assert.deepEqual([...shapes.keys()].sort(), file.names().sort());
  } finally {
    file.close();
  }
});

test("step decoding reproduces the full forward at every position; continuation from a state", () => {
  for (const [cfg, seed] of [
    [SMALL_HEADS, 1],
    [TIED_WIDE_HEADS, 2],
  ] as const) {
    const model = randomModel(cfg, ref64, seed);
    const [B, T] = [2, 7];
    const ids = randomIds(rng, B * T, model.config.V);
    assert.ok(stepDecodingError(model, ids, B, T) < 1e-10, JSON.stringify(cfg));
    assert.ok(continuationError(model, ids, B, T, 3) < 1e-10);
    assert.ok(continuationError(model, ids, B, T, 1) < 1e-10);
  }
  const model = randomModel(SMALL_HEADS, ref32, 3);
  const ids = randomIds(rng, 2 * 19, model.config.V);
  assert.ok(stepDecodingError(model, ids, 2, 19) < 1e-5);
  assert.ok(continuationError(model, ids, 2, 19, 11) < 1e-5);
});

test("chunked training (state checkpoints every c steps) gives the per-step loss and gradients", () => {
  const model = randomModel(SMALL_HEADS, ref64, 4) as Rwkv7ForCausalLM;
  const [B, T] = [2, 11];
  const ids = randomIds(rng, B * T, model.config.V);
  const targets = shiftedTargets(Int32Array.from(ids), B, T);
  const run = (chunk: number) => {
    model.setChunk(chunk);
    const params = model.parameters();
    for (const p of params) p.grad = null;
    const loss = tidy(() => {
      const l = ops.crossEntropy(model.forward(model.tokens(ids, B, T)).logits, fromArray(ref64, targets, [B * T], "i32"));
      backward(l);
      return toArraySync(l)[0];
    });
    const grads = params.map((p) => Float64Array.from(toArraySync(p.grad!)));
    for (const p of params) p.grad?.dispose();
    return { loss, grads };
  };
  const sequential = run(1);
  for (const chunk of [3, 8, 64]) {
    const chunked = run(chunk);
    assert.ok(Math.abs(chunked.loss - sequential.loss) < 1e-12);
    chunked.grads.forEach((g, i) => assert.ok(relErr(g, sequential.grads[i]) < 1e-10, `chunk ${chunk}, parameter ${i}`));
  }
  model.setChunk(8);
});

test("the recurrent state has the same size after 10 and after 10,000 tokens, and nothing else grows", () => {
  const model = randomModel({ ...TIED_WIDE_HEADS, num_hidden_layers: 1 }, ref32, 5);
  const short = footprintAfter(model, 10, rng);
  const long = footprintAfter(model, 10_000, rng);
  assert.equal(short.kv, 0);
  assert.equal(long.state, short.state);
  assert.equal(long.live, short.live);
  // two token shifts (C) and H states of N x N per sequence, 4 bytes each
  assert.equal(short.state, (2 * 24 + 2 * 12 * 12) * 4);
});

test("whole-model gradients match finite differences (float64, two head layouts)", () => {
  for (const [cfg, seed] of [
    [SMALL_HEADS, 6],
    [TIED_WIDE_HEADS, 7],
  ] as const) {
    const model = randomModel({ ...cfg, num_hidden_layers: 2 }, ref64, seed);
    const [B, T] = [2, 5];
    const err = fdGradientError(model, randomIds(rng, B * T, model.config.V), B, T, 2, rng);
    assert.ok(err < 1e-6, `${JSON.stringify(cfg)}: ${err}`);
  }
});

test("bad RWKV-7 configs are one-line errors naming the problem", () => {
  const bad = (cfg: Record<string, unknown>, what: string) => {
    assert.throws(
      () => buildModel(new RawConfig("config.json", cfg), ModuleContext.forLoading(ref32)),
      (e: unknown) => e instanceof SeqlabError && e.message.includes(what) && !e.message.includes("\n"),
    );
  };
  bad({ ...SMALL_HEADS, head_size: 7 }, "multiple of head_size");
  bad({ ...SMALL_HEADS, decay_low_rank_dim: 0 }, "decay_low_rank_dim");
  bad({ ...SMALL_HEADS, group_norm_epsilon: "small" }, "group_norm_epsilon");
  const { hidden_size: _omit, ...noWidth } = SMALL_HEADS;
  bad(noWidth, "hidden_size");
});
