/**
 * Qwen3-Next: HF parity on every fixture; cached decoding (DeltaNet recurrent step + KV cache)
 * equal to the full forward at every position; DeltaNet state bytes constant while the KV cache
 * grows; the router aux loss through the model against a hand computation, and in training;
 * clear errors for bad configs.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as path from "node:path";
import { RawConfig } from "../src/io/config.js";
import { loadModel } from "../src/models/load.js";
import { buildModel } from "../src/models/registry.js";
import { ModuleContext } from "../src/nn/module.js";
import { runChecks, formatCheck } from "../src/cli/verify.js";
import { SafetensorsFile } from "../src/io/safetensors.js";
import { noGrad } from "../src/autograd/tape.js";
import { tidy } from "../src/tensor/scope.js";
import { toArraySync } from "../src/backend/alloc.js";
import * as ops from "../src/ops/index.js";
import type { CausalLM } from "../src/models/causal_lm.js";
import { Qwen3NextForCausalLM, Qwen3NextSparseMoeBlock } from "../src/models/qwen3next.js";
import { batchLoss } from "../src/train/trainer.js";
import { SeqlabError } from "../src/util/errors.js";
import { Rng } from "../src/util/rng.js";
import { fixtureDirs, maxAbsDiff, ref32 } from "./helpers.js";

for (const dir of fixtureDirs("qwen3_next")) {
  test(`HF parity: ${path.basename(dir)}`, async () => {
    const model = loadModel(dir, ref32);
    const ref = SafetensorsFile.open(path.join(dir, "reference.safetensors"));
    const checks = await runChecks(model, ref);
    ref.close();
    const failed = checks.filter((c) => !c.ok);
    assert.equal(failed.length, 0, failed.map(formatCheck).join("\n"));
    assert.ok(checks.some((c) => c.name.endsWith("experts.gate_up_proj")) && checks.some((c) => c.name.endsWith("A_log")));
  });
}

const config = {
  model_type: "qwen3_next",
  vocab_size: 40,
  hidden_size: 24,
  intermediate_size: 20,
  num_hidden_layers: 4,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  head_dim: 6,
  linear_num_key_heads: 2,
  linear_num_value_heads: 4,
  linear_key_head_dim: 4,
  linear_value_head_dim: 3,
  linear_conv_kernel_dim: 3,
  num_experts: 4,
  num_experts_per_tok: 2,
  moe_intermediate_size: 8,
  shared_expert_intermediate_size: 10,
  layer_types: ["linear_attention", "full_attention", "linear_attention", "full_attention"],
  mlp_only_layers: [2],
  partial_rotary_factor: 0.5,
  tie_word_embeddings: true,
  initializer_range: 0.2,
};

function randomModel(json: Record<string, unknown>, seed: number): CausalLM {
  return buildModel(new RawConfig("test config", json), ModuleContext.seeded(ref32, seed));
}

test("config: layer types, sparse and dense layers, tied head", () => {
  const m = randomModel(config, 1) as Qwen3NextForCausalLM;
  const layers = m.model.layers;
  assert.deepEqual(layers.map((l) => (l.linear_attn ? "linear" : "full")), ["linear", "full", "linear", "full"]);
  assert.deepEqual(layers.map((l) => l.mlp instanceof Qwen3NextSparseMoeBlock), [true, true, false, true]);
  const names = m.namedParameters().map(([n]) => n);
  assert.ok(!names.includes("lm_head.weight"));
  assert.ok(names.includes("model.layers.0.mlp.experts.gate_up_proj") && names.includes("model.layers.2.mlp.gate_proj.weight"));
  // full_attention_interval when layer_types is absent; legacy names remapped
  const byInterval = randomModel({ ...config, layer_types: undefined, full_attention_interval: 2 }, 1) as Qwen3NextForCausalLM;
  assert.deepEqual(byInterval.model.layers.map((l) => !!l.self_attn), [false, true, false, true]);
  const legacy = randomModel({ ...config, layer_types: ["mamba", "attention", "mamba", "mamba"] }, 1) as Qwen3NextForCausalLM;
  assert.deepEqual(legacy.model.layers.map((l) => !!l.self_attn), [false, true, false, false]);
});

test("bad configs are refused with one clear line", () => {
  const bad: [Record<string, unknown>, RegExp][] = [
    [{ ...config, layer_types: ["linear_attention"] }, /layer_types has 1 entries for num_hidden_layers 4/],
    [{ ...config, layer_types: ["linear_attention", "full_attention", "sliding", "full_attention"] }, /layer type "sliding" must be one of/],
    [{ ...config, num_experts_per_tok: 5 }, /num_experts_per_tok 5 exceeds num_experts 4/],
    [{ ...config, linear_num_value_heads: 3 }, /linear_num_value_heads 3 must be a multiple of linear_num_key_heads 2/],
    [{ ...config, mlp_only_layers: [7] }, /mlp_only_layers entry 7 is not a layer index/],
  ];
  for (const [json, re] of bad) {
    assert.throws(() => randomModel(json, 1), (e) => e instanceof SeqlabError && re.test(e.message) && !e.message.includes("\n"), String(re));
  }
});

/**
 * Worst |logit difference| between the full forward and the same tokens fed in pieces of the
 * given sizes through one inference state (a piece of 1 is a decoding step), batch of 2.
 */
function piecesVsFull(model: CausalLM, pieces: number[], capacity: number): number {
  const rng = new Rng(3);
  const T = pieces.reduce((a, b) => a + b, 0);
  const ids = Array.from({ length: 2 * T }, () => rng.int(0, model.config.V));
  return noGrad(() =>
    tidy(() => {
      const V = model.config.V;
      const full = toArraySync(model.forward(model.tokens(ids, 2, T)).logits);
      const state = model.allocateState(2, capacity);
      let worst = 0;
      let t0 = 0;
      for (const n of pieces) {
        const rows = [...ids.slice(t0, t0 + n), ...ids.slice(T + t0, T + t0 + n)];
        const got = toArraySync(model.forward(model.tokens(rows, 2, n, t0), { state }).logits);
        for (let b = 0; b < 2; b++) {
          worst = Math.max(worst, maxAbsDiff(got.subarray(b * n * V, (b + 1) * n * V), full.subarray((b * T + t0) * V, (b * T + t0 + n) * V)));
        }
        t0 += n;
      }
      assert.equal(state.position, T);
      state.dispose();
      return worst;
    }),
  );
}

test("cached decoding reproduces the full forward at every position (batch of 2, KV cache grows)", () => {
  const model = randomModel(config, 2);
  const steps = (n: number) => new Array(n).fill(1);
  for (const pieces of [steps(17), [5, ...steps(12)], [4, 6, 1, 2, 1, 3]]) {
    const err = piecesVsFull(model, pieces, 2);
    assert.ok(err < 2e-5, `pieces ${pieces}: ${err}`);
  }
});

test("DeltaNet state bytes stay constant while the KV cache of attention layers grows", () => {
  const model = randomModel(config, 4);
  const state = model.allocateState(1, 4);
  const recurrent = state.bytes().recurrent;
  // 2 DeltaNet layers: conv window (W - 1) x convDim and H x Dk x Dv state, float32
  const convDim = 2 * 2 * 4 + 4 * 3;
  assert.equal(recurrent, 2 * 4 * ((3 - 1) * convDim + 4 * 4 * 3));
  const kvRow = 2 * 2 * 4 * 2 * 6; // attention layers * (k, v) * f32 * G * K
  noGrad(() =>
    tidy(() => {
      for (let t = 0; t < 12; t++) {
        model.forward(model.tokens([t % 40], 1, 1, t), { state });
        assert.equal(state.bytes().recurrent, recurrent);
        assert.equal(state.bytes().kvCache, kvRow * (t + 1));
      }
    }),
  );
  state.dispose();
});

test("aux loss through the model equals a hand computation from each MoE layer's router", () => {
  const model = randomModel({ ...config, num_hidden_layers: 2, layer_types: ["linear_attention", "full_attention"], mlp_only_layers: [] }, 6) as Qwen3NextForCausalLM;
  const ids = [3, 17, 5, 9, 22, 1];
  const { E, k } = model.config.moe;
  noGrad(() =>
    tidy(() => {
      const got = toArraySync(model.forward(model.tokens(ids, 1, 6), { auxLoss: true }).auxLoss!)[0];
      // rerun the stack by hand, reading each MoE layer's router probabilities and choices
      let h = model.model.embed_tokens.forward(model.tokens(ids, 1, 6));
      const counts = new Array(E).fill(0);
      const psum = new Array(E).fill(0);
      let R = 0;
      model.model.layers.forEach((l) => {
        const n = l.input_layernorm.forward(h);
        h = ops.add(h, l.linear_attn ? l.linear_attn.forward(n) : l.self_attn!.forward(n, 0));
        const m = l.post_attention_layernorm.forward(h);
        const moe = l.mlp as Qwen3NextSparseMoeBlock;
        const r = moe.gate.forward(m.reshape([-1, model.config.C]));
        const p = toArraySync(r.probs);
        const idx = toArraySync(r.indices);
        for (let row = 0; row < 6; row++) for (let e = 0; e < E; e++) psum[e] += p[row * E + e];
        for (const e of idx) counts[e]++;
        R += 6;
        h = ops.add(h, moe.forward(m));
      });
      let hand = 0;
      for (let e = 0; e < E; e++) hand += (counts[e] / R) * (psum[e] / R);
      hand *= E;
      assert.ok(Math.abs(got - hand) < 1e-6, `${got} vs ${hand}`);
      assert.equal(counts.reduce((a, b) => a + b, 0), R * k);
    }),
  );
});

test("training adds router_aux_loss_coef times the aux loss; dense models are unaffected", () => {
  const model = randomModel({ ...config, router_aux_loss_coef: 0.5 }, 7);
  const same = randomModel({ ...config, router_aux_loss_coef: 0 }, 7); // the same weights, no aux loss
  const ids = Int32Array.from([1, 2, 3, 4, 5, 6, 7, 8]);
  const targets = Int32Array.from([2, 3, 4, 5, 6, 7, 8, -100]);
  noGrad(() =>
    tidy(() => {
      const withAux = toArraySync(batchLoss(model, ids, targets, 1, 8))[0];
      const plain = toArraySync(batchLoss(same, ids, targets, 1, 8))[0];
      const aux = toArraySync(model.forward(model.tokens(ids, 1, 8), { auxLoss: true }).auxLoss!)[0];
      assert.ok(aux > 0);
      assert.ok(Math.abs(withAux - (plain + 0.5 * aux)) < 1e-5, `${withAux} vs ${plain} + 0.5 * ${aux}`);
    }),
  );
  const dense = randomModel({ ...config, num_experts: 0 }, 7);
  assert.equal(dense.config.routerAuxLossCoef, 0);
  assert.equal(noGrad(() => tidy(() => dense.forward(dense.tokens([1, 2], 1, 2), { auxLoss: true }).auxLoss)), undefined);
});
