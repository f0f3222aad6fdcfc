/**
 * Whole models on the webgpu backend (SwiftShader): verify on a sample of the variant fixtures
 * (the rest of the variants run the same kernels), one-token decoding through the inference
 * state against the full forward for Mamba and RWKV-7, and a short AdamW training run whose
 * losses follow the ref backend's.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as path from "node:path";
import { toFloat32 } from "../src/backend/alloc.js";
import { noGrad } from "../src/autograd/tape.js";
import { tidy } from "../src/tensor/scope.js";
import { loadModel } from "../src/models/load.js";
import type { CausalLM } from "../src/models/causal_lm.js";
import type { InferenceState } from "../src/nn/state.js";
import { RawConfig } from "../src/io/config.js";
import { buildModel } from "../src/models/registry.js";
import { ModuleContext } from "../src/nn/module.js";
import { train } from "../src/train/trainer.js";
import { InductionTask } from "../src/tasks/induction.js";
import type { Backend } from "../src/backend/backend.js";
import { Rng } from "../src/util/rng.js";
import { NEEDS_SHARED, SHARED_FIXTURES, VARIANT_FIXTURES, ref32, relErr } from "./helpers.js";
import { gpuBackend, verifyOnGpu } from "./webgpu_helpers.js";

test("verify passes on webgpu for variant fixtures: Mamba-2 groups and chunks, Mamba conv/state sizes, Jamba patterns, RWKV-4 rescaling", async () => {
  for (const name of ["mamba2_groups_chunk", "mamba_state64_noconvbias", "jamba_topall", "rwkv4_rescale", "llama_tied_mqa"]) {
    await verifyOnGpu(path.join(VARIANT_FIXTURES, name));
  }
});

async function logits(model: CausalLM, ids: number[], B: number, T: number, state?: InferenceState): Promise<Float32Array> {
  const out = noGrad(() => tidy(() => model.forward(model.tokens(ids, B, T), { state }).logits));
  try {
    return await toFloat32(out);
  } finally {
    out.dispose();
  }
}

/** Worst relative error over positions of one-token decoding against the full forward. */
async function stepDecodingError(model: CausalLM, B: number, T: number): Promise<number> {
  const rng = new Rng(3);
  const V = model.config.V;
  const ids = Array.from({ length: B * T }, () => rng.int(0, V));
  const full = await logits(model, ids, B, T);
  const state = model.allocateState(B);
  let worst = 0;
  try {
    for (let t = 0; t < T; t++) {
      const col = Array.from({ length: B }, (_, b) => ids[b * T + t]);
      const step = await logits(model, col, B, 1, state);
      const want = new Float32Array(B * V);
      for (let b = 0; b < B; b++) want.set(full.subarray((b * T + t) * V, (b * T + t + 1) * V), b * V);
      worst = Math.max(worst, relErr(step, want));
    }
  } finally {
    state.dispose();
  }
  return worst;
}

test("step decoding reproduces the full forward on webgpu: Mamba, Mamba-2, RWKV-7", { skip: NEEDS_SHARED }, async () => {
  const be = await gpuBackend();
  for (const dir of [path.join(SHARED_FIXTURES, "hf/mamba"), path.join(SHARED_FIXTURES, "hf/mamba2"), path.join(SHARED_FIXTURES, "rwkv7")]) {
    const model = loadModel(dir, be);
    const err = await stepDecodingError(model, 2, 11);
    assert.ok(err < 1e-5, `${dir}: step decoding vs full forward ${err}`);
    for (const p of model.parameters()) p.dispose();
  }
});

/** Losses of a few AdamW steps of a seeded model of `config` on `be`. */
async function trainLosses(be: Backend, config: Record<string, unknown>): Promise<number[]> {
  const model = buildModel(new RawConfig("test", config), ModuleContext.seeded(be, 7));
  const task = new InductionTask(12, 5, config.vocab_size as number);
  const { losses } = await train(model, task, { steps: 4, batch: 3, lr: 3e-3, clipNorm: 1 });
  for (const p of model.parameters()) p.dispose();
  return losses;
}

test("training on webgpu follows the ref backend: a Jamba hybrid (attention, Mamba, MoE) and RWKV-7, AdamW on the GPU", async () => {
  const be = await gpuBackend();
  const jamba = {
    model_type: "jamba", vocab_size: 24, hidden_size: 32, intermediate_size: 48, num_hidden_layers: 4, num_attention_heads: 4, num_key_value_heads: 2,
    attn_layer_period: 2, attn_layer_offset: 1, expert_layer_period: 2, expert_layer_offset: 1, num_experts: 3, num_experts_per_tok: 2,
    mamba_d_state: 8, mamba_d_conv: 4, mamba_expand: 2, mamba_dt_rank: 4, tie_word_embeddings: true,
  };
  const rwkv7 = { model_type: "rwkv7", vocab_size: 24, hidden_size: 32, num_hidden_layers: 2, head_size: 8, intermediate_size: 64 };
  for (const cfg of [jamba, rwkv7]) {
    const want = await trainLosses(ref32, cfg);
    const got = await trainLosses(be, cfg);
    const diff = Math.max(...got.map((l, i) => Math.abs(l - want[i])));
    assert.ok(diff < 1e-5, `${cfg.model_type}: webgpu losses ${got} vs ref ${want}`);
    assert.ok(want[want.length - 1] !== want[0], "the run changed the model");
  }
});
