/**
 * Granite-4 hybrid (GraniteMoeHybrid): HF parity on every fixture; layer types (current and legacy
 * names, the all-Mamba default); the multipliers; models without routed experts; cached decoding
 * equal to the full forward with and without RoPE; the aux loss in training; clear config errors.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as path from "node:path";
import { loadModel } from "../src/models/load.js";
import { runChecks, formatCheck } from "../src/cli/verify.js";
import { SafetensorsFile } from "../src/io/safetensors.js";
import { noGrad } from "../src/autograd/tape.js";
import { tidy } from "../src/tensor/scope.js";
import { toArraySync } from "../src/backend/alloc.js";
import { GraniteMoeHybridForCausalLM } from "../src/models/granitemoehybrid.js";
import { batchLoss } from "../src/train/trainer.js";
import { SeqlabError } from "../src/util/errors.js";
import { fixtureDirs, maxAbsDiff, ref32 } from "./helpers.js";
import { bytesWhileDecoding, PIECES, piecesVsFull, randomModel } from "./hybrid_helpers.js";

for (const dir of fixtureDirs("granitemoehybrid")) {
  test(`HF parity: ${path.basename(dir)}`, async () => {
    const model = loadModel(dir, ref32);
    const ref = SafetensorsFile.open(path.join(dir, "reference.safetensors"));
    const checks = await runChecks(model, ref);
    ref.close();
    const failed = checks.filter((c) => !c.ok);
    assert.equal(failed.length, 0, failed.map(formatCheck).join("\n"));
    // A dense Granite (num_local_experts 0) has no router or routed experts to check.
    const dense = model instanceof GraniteMoeHybridForCausalLM && model.config.moe === null;
    const routed = dense ? [] : ["block_sparse_moe.router.weight", "block_sparse_moe.experts.gate_up_proj"];
    for (const part of [...routed, "shared_mlp.input_linear.weight", "mamba.dt_bias", "hidden.0", "generate"]) {
      assert.ok(checks.some((c) => c.name.includes(part)), part);
    }
  });
}

const config = {
  model_type: "granitemoehybrid",
  vocab_size: 40,
  hidden_size: 24,
  intermediate_size: 16,
  shared_intermediate_size: 12,
  num_hidden_layers: 4,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  layer_types: ["mamba", "attention", "mamba", "attention"],
  num_local_experts: 3,
  num_experts_per_tok: 2,
  mamba_n_heads: 4,
  mamba_n_groups: 2,
  mamba_d_state: 8,
  mamba_d_conv: 3,
  mamba_expand: 2,
  mamba_chunk_size: 5,
  position_embedding_type: "rope",
  embedding_multiplier: 3,
  residual_multiplier: 0.4,
  attention_multiplier: 0.2,
  logits_scaling: 2.5,
  router_aux_loss_coef: 0.05,
  initializer_range: 0.2,
};

test("config: legacy and current layer types, all-Mamba default, multipliers, models without routed experts", () => {
  const m = randomModel(config, 1) as GraniteMoeHybridForCausalLM;
  assert.deepEqual(m.config.layerTypes, ["linear_attention", "full_attention", "linear_attention", "full_attention"]);
  assert.deepEqual(m.model.layers.map((l) => (l.mamba ? "mamba" : "attention")), ["mamba", "attention", "mamba", "attention"]);
  assert.equal(m.config.attention.scale, 0.2);
  assert.equal(m.config.mamba.P, 12); // mamba_d_head "auto" = 2 * 24 / 4
  const allMamba = randomModel({ ...config, layer_types: undefined }, 1) as GraniteMoeHybridForCausalLM;
  assert.ok(allMamba.model.layers.every((l) => l.mamba && !l.self_attn));
  const dense = randomModel({ ...config, num_local_experts: 0 }, 1) as GraniteMoeHybridForCausalLM;
  assert.ok(dense.model.layers.every((l) => l.block_sparse_moe === undefined));
  assert.equal(dense.config.routerAuxLossCoef, 0);
  assert.ok(!dense.namedParameters().some(([n]) => n.includes("block_sparse_moe")));
});

test("embedding_multiplier scales the embeddings and logits_scaling divides the logits", () => {
  const plain = { ...config, embedding_multiplier: 1, logits_scaling: 1, residual_multiplier: 1 };
  const a = randomModel(plain, 2);
  const b = randomModel({ ...plain, logits_scaling: 4 }, 2);
  const ids = [1, 5, 9, 3, 7];
  noGrad(() =>
    tidy(() => {
      const la = toArraySync(a.forward(a.tokens(ids, 1, 5)).logits);
      const lb = toArraySync(b.forward(b.tokens(ids, 1, 5)).logits);
      assert.ok(maxAbsDiff(lb, la.map((x) => x / 4)) < 1e-6);
      const c = randomModel({ ...plain, embedding_multiplier: 2 }, 2);
      const hidden = c.forward(c.tokens(ids, 1, 5), { outputHidden: true }).hidden;
      const h0 = a.forward(a.tokens(ids, 1, 5), { outputHidden: true }).hidden[0];
      assert.ok(maxAbsDiff(toArraySync(hidden[0]), toArraySync(h0).map((x) => 2 * x)) < 1e-7);
    }),
  );
});

test("cached decoding reproduces the full forward at every position (RoPE and NoPE, with and without experts)", () => {
  for (const [json, seed] of [
    [config, 3],
    [{ ...config, position_embedding_type: "nope", num_local_experts: 0, tie_word_embeddings: true }, 4],
    [{ ...config, layer_types: ["attention", "mamba", "mamba", "mamba"], num_experts_per_tok: 1 }, 5],
  ] as const) {
    const model = randomModel(json, seed);
    for (const pieces of PIECES) {
      const err = piecesVsFull(model, pieces, 2);
      assert.ok(err < 5e-5, `${JSON.stringify(json.layer_types)} pieces ${pieces}: ${err}`);
    }
  }
});

test("decode memory: KV bytes grow per token through the attention layers only; Mamba-2 state is fixed", () => {
  const model = randomModel(config, 6) as GraniteMoeHybridForCausalLM;
  const { G, K } = model.config.attention;
  const { D, H, P, N, W } = model.config.mamba;
  const convDim = D + 2 * model.config.mamba.G * N;
  bytesWhileDecoding(model, 9).forEach((r, t) => {
    assert.equal(r.kvCache, 2 * 2 * G * K * 4 * (t + 1));
    assert.equal(r.recurrent, 2 * ((W - 1) * convDim + H * P * N) * 4);
  });
});

test("training adds router_aux_loss_coef times the load-balancing loss", () => {
  const model = randomModel(config, 7);
  const same = randomModel({ ...config, router_aux_loss_coef: 0 }, 7);
  const ids = Int32Array.from([1, 2, 3, 4, 5, 6]);
  const targets = Int32Array.from([2, 3, 4, 5, 6, -100]);
  noGrad(() =>
    tidy(() => {
      const withAux = toArraySync(batchLoss(model, ids, targets, 1, 6))[0];
      const plain = toArraySync(batchLoss(same, ids, targets, 1, 6))[0];
      const aux = toArraySync(model.forward(model.tokens(ids, 1, 6), { auxLoss: true }).auxLoss!)[0];
      assert.ok(aux > 0);
      assert.ok(Math.abs(withAux - (plain + 0.05 * aux)) < 1e-5, `${withAux} vs ${plain} + 0.05 * ${aux}`);
    }),
  );
});

test("bad configs are refused with one clear line", () => {
  const bad: [Record<string, unknown>, RegExp][] = [
    [{ ...config, layer_types: ["mamba", "attention"] }, /layer_types has 2 entries for num_hidden_layers 4/],
    [{ ...config, layer_types: ["mamba", "sliding", "mamba", "mamba"] }, /layer type "sliding" must be one of linear_attention, full_attention/],
    [{ ...config, position_embedding_type: "alibi" }, /"position_embedding_type" must be one of rope, nope/],
    [{ ...config, mamba_n_heads: 5 }, /mamba_n_heads 5 must divide mamba_expand \* hidden_size = 48/],
    [{ ...config, mamba_d_head: 8 }, /mamba_d_head 8 times mamba_n_heads 4 must equal/],
    [{ ...config, mamba_n_groups: 3 }, /mamba_n_groups 3 must divide mamba_n_heads 4/],
    [{ ...config, num_experts_per_tok: 4 }, /num_experts_per_tok 4 exceeds num_local_experts 3/],
    [{ ...config, time_step_limit: [0.5, 0.1] }, /time_step_limit .* must be two numbers \[min, max\] with min <= max/],
  ];
  for (const [json, re] of bad) {
    assert.throws(() => randomModel(json, 1), (e) => e instanceof SeqlabError && re.test(e.message) && !e.message.includes("\n"), String(re));
  }
});
