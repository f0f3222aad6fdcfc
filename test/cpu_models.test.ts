/**
 * Whole models on the cpu backend: every Llama and GPT-2 fixture (shared, and variants when
 * present) passes the same checks as `seqlab verify` (logits, hidden states, loss, every
 * gradient, greedy cached generation), on 2 threads; with half-precision weights, Llama, Mamba
 * and Mamba-2 fixtures give the ref backend's logits and greedy tokens.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import * as path from "node:path";
import { CpuBackend } from "../src/backend/cpu/backend.js";
import { RefBackend } from "../src/backend/ref/index.js";
import { loadModel } from "../src/models/load.js";
import { SafetensorsFile } from "../src/io/safetensors.js";
import { runChecks, formatCheck } from "../src/cli/verify.js";
import { generate } from "../src/generate/generate.js";
import { toFloat32 } from "../src/backend/alloc.js";
import { tidyAsync } from "../src/tensor/scope.js";
import { noGradAsync } from "../src/autograd/tape.js";
import { fixtureDirs, ref32, relErr } from "./helpers.js";

let be: CpuBackend;
before(async () => {
  be = await CpuBackend.create({ threads: 2 });
});
after(async () => {
  await be.dispose();
});

const dirs = fixtureDirs("llama", "gpt2");

test("llama and gpt2 fixtures match Hugging Face on the cpu backend", { timeout: 120_000 }, async () => {
  assert.ok(dirs.length >= 2, "the shared llama and gpt2 fixtures are present");
  for (const dir of dirs) {
    const model = loadModel(dir, be);
    const ref = SafetensorsFile.open(path.join(dir, "reference.safetensors"));
    try {
      const checks = await runChecks(model, ref);
      const failed = checks.filter((c) => !c.ok).map(formatCheck);
      assert.deepEqual(failed, [], `${dir}`);
      assert.ok(checks.some((c) => c.kind === "rel"));
    } finally {
      ref.close();
      for (const [, p] of model.namedParameters()) p.dispose();
    }
  }
});

test("half-precision weights (f16, bf16): cpu logits and greedy tokens equal the ref backend's", { timeout: 120_000 }, async () => {
  const halfDirs = fixtureDirs("llama", "mamba", "mamba2");
  assert.ok(halfDirs.length >= 3, "the shared llama, mamba and mamba2 fixtures are present");
  for (const dir of halfDirs) {
    for (const dtype of ["f16", "bf16"] as const) {
      const ours = loadModel(dir, be, { dtype });
      const theirs = loadModel(dir, ref32, { dtype });
      try {
        const prompt = [1, 5, 9, 2, 7, 3];
        const logits = (m: typeof ours) =>
          noGradAsync(async () => tidyAsync(async () => toFloat32(m.forward(m.tokens(prompt, 1, prompt.length)).logits)));
        const [a, b] = [await logits(ours), await logits(theirs)];
        assert.ok(relErr(a, b) <= 1e-5, `${dir} ${dtype}: logits relative error ${relErr(a, b)}`);
        const [ga, gb] = [await generate(ours, prompt, { maxNewTokens: 8 }), await generate(theirs, prompt, { maxNewTokens: 8 })];
        assert.deepEqual(ga.tokens, gb.tokens, `${dir} ${dtype}: greedy tokens`);
      } finally {
        for (const [, p] of ours.namedParameters()) p.dispose();
      }
    }
  }
});

test("an f16 KV cache: cpu greedy decoding of the Llama fixtures equals the ref backend's with the same cache", { timeout: 120_000 }, async () => {
  const cpu16 = await CpuBackend.create({ threads: 2, kvCache: "f16" });
  const ref16 = new RefBackend({ kvCache: "f16" });
  try {
    assert.match(cpu16.describe(), /f16 KV cache/);
    for (const dir of fixtureDirs("llama")) {
      const ours = loadModel(dir, cpu16);
      const theirs = loadModel(dir, ref16);
      const prompt = [1, 5, 9, 2, 7, 3, 11, 4];
      const [ga, gb] = [await generate(ours, prompt, { maxNewTokens: 12 }), await generate(theirs, prompt, { maxNewTokens: 12 })];
      assert.deepEqual(ga.tokens, gb.tokens, `${dir}: greedy tokens with an f16 KV cache`);
      const f32Cache = loadModel(dir, be);
      const g32 = await generate(f32Cache, prompt, { maxNewTokens: 12 });
      assert.equal(ga.stats.stateBytes.kvCache * 2, g32.stats.stateBytes.kvCache, `${dir}: half the KV bytes`);
      for (const m of [ours, f32Cache]) for (const [, p] of m.namedParameters()) p.dispose();
    }
  } finally {
    await cpu16.dispose();
  }
});
