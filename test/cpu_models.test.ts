/**
 * Whole models on the cpu backend: every Llama and GPT-2 fixture (shared, and variants when
 * present) passes the same checks as `seqlab verify` (logits, hidden states, loss, every
 * gradient, greedy cached generation), on 2 threads.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import * as path from "node:path";
import { CpuBackend } from "../src/backend/cpu/backend.js";
import { loadModel } from "../src/models/load.js";
import { SafetensorsFile } from "../src/io/safetensors.js";
import { runChecks, formatCheck } from "../src/cli/verify.js";
import { fixtureDirs } from "./helpers.js";

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
