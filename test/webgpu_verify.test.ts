/**
 * `seqlab verify` on the webgpu backend (SwiftShader): every shared Hugging Face fixture and the
 * official RWKV-7 reference pass the same checks as the ref backend (logits, hidden states, loss,
 * every gradient, greedy generation through the inference state).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { HF_FIXTURES, NEEDS_SHARED, SHARED_FIXTURES } from "./helpers.js";
import { verifyOnGpu } from "./webgpu_helpers.js";

const SHARED_DIRS = HF_FIXTURES && fs.existsSync(HF_FIXTURES)
  ? [...fs.readdirSync(HF_FIXTURES).filter((n) => fs.existsSync(path.join(HF_FIXTURES, n, "config.json"))).sort().map((n) => path.join(HF_FIXTURES, n)), path.join(SHARED_FIXTURES, "rwkv7")]
  : [];

test("verify passes on webgpu for every shared fixture (llama, gpt2, mamba, mamba2, rwkv4, rwkv7, jamba, granitemoehybrid, qwen3next)", { skip: NEEDS_SHARED }, async () => {
  const types = new Set<string>();
  for (const dir of SHARED_DIRS) {
    await verifyOnGpu(dir);
    types.add(JSON.parse(fs.readFileSync(path.join(dir, "config.json"), "utf8")).model_type);
  }
  for (const t of ["llama", "gpt2", "mamba", "mamba2", "rwkv", "rwkv7", "jamba", "granitemoehybrid", "qwen3_next"]) assert.ok(types.has(t), `no shared fixture of type ${t} (have ${[...types]})`);
});
