/** Optimizer, schedule, tasks and the training loop: determinism, resume, NaN stops, learning. */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { RawConfig } from "../src/io/config.js";
import { buildModel } from "../src/models/registry.js";
import { ModuleContext } from "../src/nn/module.js";
import { train } from "../src/train/trainer.js";
import { learningRate } from "../src/train/schedule.js";
import { AdamW, decays } from "../src/train/optimizer.js";
import { fromArray, toArraySync } from "../src/backend/alloc.js";
import { InductionTask } from "../src/tasks/induction.js";
import { PasskeyTask } from "../src/tasks/passkey.js";
import { MqarTask } from "../src/tasks/mqar.js";
import { makeTask } from "../src/tasks/registry.js";
import { SelectiveCopyTask } from "../src/tasks/selective_copy.js";
import { TextTask } from "../src/tasks/text.js";
import { score } from "../src/tasks/task.js";
import { ref32 } from "./helpers.js";

const tinyLlama = (V: number) => ({
  model_type: "llama",
  vocab_size: V,
  hidden_size: 32,
  intermediate_size: 64,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  tie_word_embeddings: true,
});
const build = (json: Record<string, unknown>, seed = 1) => buildModel(new RawConfig("test", json), ModuleContext.seeded(ref32, seed));

test("AdamW matches torch.optim.AdamW's update, with decoupled weight decay", () => {
  const p = fromArray(ref32, [0.5, -1.0], [1, 2]);
  p.requiresGrad = true;
  p.grad = fromArray(ref32, [0.1, -0.2], [1, 2]);
  const opt = new AdamW(ref32, [["w", p]], { lr: 0.1, weightDecay: 0.5 });
  opt.update(0.1, 0, 1);
  // torch: p *= 1 - lr*wd; m = 0.1 g; v = 0.001 g^2; p -= lr/0.1 * m / (sqrt(v)/sqrt(0.001) + eps)
  const expect = [0.5 * (1 - 0.05) - 0.1 * (0.1 / (0.1 + 1e-8)), -1.0 * (1 - 0.05) + 0.1 * (0.2 / (0.2 + 1e-8))];
  const got = toArraySync(p);
  for (let i = 0; i < 2; i++) assert.ok(Math.abs(got[i] - expect[i]) < 1e-6);
  opt.dispose();
});

test("weight decay skips norms, biases and state-space time constants", () => {
  const m = fromArray(ref32, new Float32Array(4), [2, 2]);
  const v = fromArray(ref32, new Float32Array(2), [2]);
  assert.equal(decays("model.layers.0.mlp.up_proj.weight", m), true);
  assert.equal(decays("model.layers.0.input_layernorm.weight", v), false);
  assert.equal(decays("backbone.layers.0.mixer.A_log", m), false);
  assert.equal(decays("backbone.layers.0.mixer.D", v), false);
  assert.equal(decays("rwkv.blocks.0.attention.time_mix_key", m), false);
});

test("warmup then cosine decay to the floor", () => {
  const o = { peakLr: 1, warmupSteps: 10, totalSteps: 110, minRatio: 0.1 };
  assert.equal(learningRate(0, o), 0.1);
  assert.equal(learningRate(9, o), 1);
  assert.ok(Math.abs(learningRate(60, o) - 0.55) < 1e-9);
  assert.ok(Math.abs(learningRate(110, o) - 0.1) < 1e-12);
});

test("tasks are deterministic per (seed, split, index), splits differ, answers are where they should be", () => {
  const tasks = [
    new PasskeyTask(48, 1),
    new MqarTask({ length: 64, pairs: 6, seed: 1 }),
    new SelectiveCopyTask({ length: 40, count: 6, seed: 1 }),
    new InductionTask(32, 1),
  ];
  for (const t of tasks) {
    const a = t.batch("train", 3, 4);
    assert.deepEqual(a, t.batch("train", 3, 4), t.name);
    assert.notDeepEqual(a.ids, t.batch("heldout", 3, 4).ids, t.name);
    assert.ok(Math.max(...a.ids) < t.vocabSize && Math.min(...a.ids) >= 0, `${t.name} ids in vocabulary`);
    for (const row of a.answers) for (const p of row) assert.ok(a.targets[p] >= 0);
    // predicting the targets scores 100%
    const perfect = Array.from(a.targets);
    const s = score(t, a, perfect);
    assert.equal(s.correct, s.total);
  }
  const pk = new PasskeyTask(48, 2, 0.5).batch("heldout", 0, 1);
  assert.equal(pk.ids[Math.floor(0.5 * (48 - 12 - 1))], 62, "needle at the requested depth");
  assert.equal(pk.ids[48 - 6], 63);
});

test("MQAR's alphabet: keys, values and filler from disjoint ranges of a vocabulary of 2A + 16, keys distinct, every query answered by its pair's value", () => {
  for (const alphabet of [3, 8, 32]) {
    const t = makeTask({ name: "mqar", length: 40, pairs: 3, alphabet, seed: 5 });
    assert.equal(t.vocabSize, 2 * alphabet + 16);
    const b = t.batch("train", 0, 8);
    for (let r = 0; r < b.B; r++) {
      const row = Array.from(b.ids.subarray(r * b.T, (r + 1) * b.T));
      const keys = [0, 2, 4].map((i) => row[i]);
      const values = [1, 3, 5].map((i) => row[i]);
      assert.equal(new Set(keys).size, 3);
      for (const k of keys) assert.ok(k >= 0 && k < alphabet);
      for (const v of values) assert.ok(v >= alphabet && v < 2 * alphabet);
      for (const x of row.slice(6)) assert.ok(x < alphabet ? keys.includes(x) : x >= 2 * alphabet || values.includes(x));
      for (const p of b.answers[r]) assert.equal(b.targets[p], values[keys.indexOf(b.ids[p])]);
    }
  }
});

test("MQAR's no-recall accuracy: exact expectation of guessing among the values not yet asked, against simulating that guesser", () => {
  const t = new MqarTask({ length: 40, pairs: 4, seed: 3 });
  let h = 0;
  for (let k = 1; k <= 4; k++) h += 1 / k;
  const exact = t.guessAccuracy(8, 16);
  // repeated values only make guessing easier than (1 + 1/2 + ... + 1/p) / p
  assert.ok(exact >= h / 4 && exact < h / 4 + 0.05, `${exact}`);
  assert.equal(new MqarTask({ length: 40, pairs: 1, seed: 3 }).guessAccuracy(2, 4), 1);
  // the guesser itself, run 200 times over the same examples with a fixed generator
  let state = 12345;
  const rand = () => ((state = (state * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  let right = 0;
  let total = 0;
  for (let rep = 0; rep < 200; rep++) {
    for (let i = 0; i < 8; i++) {
      const { ids, targets, answers } = t.batch("heldout", i, 16);
      answers.forEach((positions, b) => {
        const left = [1, 3, 5, 7].map((j) => ids[b * 40 + j]);
        for (const pos of [...positions].sort((x, y) => x - y)) {
          const pick = left[Math.floor(rand() * left.length)];
          right += pick === targets[pos] ? 1 : 0;
          total++;
          left.splice(left.indexOf(targets[pos]), 1);
        }
      });
    }
  }
  assert.ok(Math.abs(right / total - exact) < 0.01, `simulated ${right / total} vs exact ${exact}`);
});

test("training is deterministic bit for bit and learns induction on a tiny Llama", async () => {
  const task = new InductionTask(24, 5, 16);
  const run = async (steps: number) => (await train(build(tinyLlama(16), 3), task, { steps, batch: 8, lr: 1e-2 })).losses;
  assert.deepEqual(await run(12), await run(12));
  const a = await run(200);
  const end = a.slice(-10).reduce((x, y) => x + y) / 10;
  assert.ok(end < a[0] * 0.7, `loss fell: ${a[0]} -> ${end}`);
});

test("a run killed after a checkpoint resumes with the same loss curve", async () => {
  const dir = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "seqlab-ckpt-")), "run");
  const task = new InductionTask(16, 7, 16);
  const opts = { steps: 8, batch: 4, lr: 2e-3, checkpointDir: dir, checkpointEvery: 3, config: tinyLlama(16) };
  const full = await train(build(tinyLlama(16), 9), task, { ...opts, checkpointDir: undefined });
  const first = await train(build(tinyLlama(16), 9), task, { ...opts, stopAfter: 5 }); // "killed" at step 5
  assert.equal(first.losses.length, 5);
  const resumed = await train(build(tinyLlama(16), 123), task, opts); // different init: all comes from the checkpoint
  assert.equal(resumed.resumedFrom, 3);
  assert.deepEqual(resumed.losses, full.losses);
  assert.ok(fs.existsSync(path.join(dir, "config.json")) && !fs.readdirSync(path.dirname(dir)).some((f) => f.includes(".tmp-")));
  // the end of the run is saved too, though 8 is not a multiple of 3
  assert.equal(JSON.parse(fs.readFileSync(path.join(dir, "trainer.json"), "utf8")).step, 8);
});

test("a NaN stops training with the step and what went bad", async () => {
  const model = build(tinyLlama(16), 4);
  const w = model.namedParameters().find(([n]) => n === "model.layers.1.mlp.down_proj.weight")![1];
  (w.handle as Float32Array)[0] = NaN;
  await assert.rejects(train(model, new InductionTask(16, 1, 16), { steps: 3, batch: 2, lr: 1e-3 }), /step 1: the loss is NaN/);
});

test("text task: byte-level windows from a file; clear errors for a missing or tiny file", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "seqlab-text-"));
  const f = path.join(dir, "t.txt");
  fs.writeFileSync(f, "the quick brown fox jumps over the lazy dog. ".repeat(20));
  const t = new TextTask(f, 16, 1);
  const b = t.batch("train", 0, 2);
  assert.equal(b.targets[0], b.ids[1]);
  assert.throws(() => new TextTask(path.join(dir, "none.txt"), 16, 1), /none\.txt: cannot read \(ENOENT\)/);
  fs.writeFileSync(path.join(dir, "tiny.txt"), "abc");
  assert.throws(() => new TextTask(path.join(dir, "tiny.txt"), 16, 1), /too little text/);
});
