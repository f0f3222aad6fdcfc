/**
 * Jamba: HF parity on every fixture (logits, hidden states, loss, every gradient, greedy cached
 * generation); the layer grids; routing without renormalisation against a dense computation;
 * cached decoding equal to the full forward; decode memory that grows only through the attention
 * layers; the aux loss in training; clear errors for bad configs.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as path from "node:path";
import { loadModel } from "../src/models/load.js";
import { runChecks, formatCheck } from "../src/cli/verify.js";
import { SafetensorsFile } from "../src/io/safetensors.js";
import { backward, noGrad } from "../src/autograd/tape.js";
import { tidy } from "../src/tensor/scope.js";
import { toArraySync } from "../src/backend/alloc.js";
import { JambaForCausalLM, JambaSparseMoeBlock } from "../src/models/jamba.js";
import { JambaMambaMixer } from "../src/nn/jamba_mamba.js";
import { GatedMLP } from "../src/nn/mlp.js";
import { batchLoss } from "../src/train/trainer.js";
import { SeqlabError } from "../src/util/errors.js";
import { Rng } from "../src/util/rng.js";
import { fixtureDirs, randn, ref32 } from "./helpers.js";
import { bytesWhileDecoding, PIECES, piecesVsFull, randomModel } from "./hybrid_helpers.js";

for (const dir of fixtureDirs("jamba")) {
  test(`HF parity: ${path.basename(dir)}`, async () => {
    const model = loadModel(dir, ref32);
    const ref = SafetensorsFile.open(path.join(dir, "reference.safetensors"));
    const checks = await runChecks(model, ref);
    ref.close();
    const failed = checks.filter((c) => !c.ok);
    assert.equal(failed.length, 0, failed.map(formatCheck).join("\n"));
    for (const part of ["dt_layernorm.weight", "b_layernorm.weight", "feed_forward.router.weight", "experts.gate_up_proj", "hidden.0", "generate"]) {
      assert.ok(checks.some((c) => c.name.includes(part)), part);
    }
  });
}

/** Jamba's pattern at a small size: attention on every 4th layer from 3, MoE on every 2nd from 1. */
const config = {
  model_type: "jamba",
  vocab_size: 40,
  hidden_size: 24,
  intermediate_size: 20,
  num_hidden_layers: 8,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  attn_layer_period: 4,
  attn_layer_offset: 3,
  expert_layer_period: 2,
  expert_layer_offset: 1,
  num_experts: 4,
  num_experts_per_tok: 2,
  mamba_d_state: 6,
  mamba_d_conv: 3,
  mamba_expand: 2,
  mamba_dt_rank: "auto",
  router_aux_loss_coef: 0.02,
  tie_word_embeddings: true,
  initializer_range: 0.2,
};

test("config: attention and expert grids, dt rank auto, runtime names, num_local_experts", () => {
  const m = randomModel(config, 1) as JambaForCausalLM;
  const layers = m.model.layers;
  assert.deepEqual(m.config.layerTypes, ["mamba", "mamba", "mamba", "attention", "mamba", "mamba", "mamba", "attention"]);
  assert.deepEqual(layers.map((l) => !!l.self_attn), [false, false, false, true, false, false, false, true]);
  assert.deepEqual(layers.map((l) => l.feed_forward instanceof JambaSparseMoeBlock), [false, true, false, true, false, true, false, true]);
  assert.ok(layers[0].mamba instanceof JambaMambaMixer);
  assert.equal(m.config.mamba.R, Math.ceil(24 / 16));
  assert.equal(m.config.moe.normalize, false);
  const names = m.namedParameters().map(([n]) => n);
  for (const n of ["model.layers.0.mamba.dt_layernorm.weight", "model.layers.1.feed_forward.router.weight", "model.layers.1.feed_forward.experts.down_proj", "model.layers.3.self_attn.q_proj.weight", "model.layers.0.feed_forward.gate_proj.weight", "model.final_layernorm.weight"]) {
    assert.ok(names.includes(n), n);
  }
  assert.ok(!names.includes("lm_head.weight"), "tied head stored once");
  const alias = randomModel({ ...config, num_experts: undefined, num_local_experts: 3, num_experts_per_tok: 1 }, 1) as JambaForCausalLM;
  assert.equal(alias.config.moe.E, 3);
  // one expert per layer is a dense MLP everywhere (HF: layers_num_experts > 1 makes a sparse block)
  const dense = randomModel({ ...config, num_experts: 1, num_experts_per_tok: 1 }, 1) as JambaForCausalLM;
  assert.ok(dense.model.layers.every((l) => l.feed_forward instanceof GatedMLP));
  assert.equal(dense.config.routerAuxLossCoef, 0);
});

test("routing: softmax over all experts, top-k probabilities not renormalised (HF Jamba), against a dense computation", () => {
  const m = randomModel({ ...config, num_hidden_layers: 2, attn_layer_period: 2, attn_layer_offset: 1 }, 2) as JambaForCausalLM;
  const block = m.model.layers[1].feed_forward as JambaSparseMoeBlock;
  const { C, E, F, k } = m.config.moe;
  const N = 7;
  noGrad(() =>
    tidy(() => {
      const x = randn(ref32, [1, N, C], new Rng(5));
      const got = toArraySync(block.forward(x));
      const xs = Float64Array.from(toArraySync(x));
      const Wr = toArraySync(block.router.weight);
      const gu = toArraySync(block.experts.gate_up_proj);
      const dn = toArraySync(block.experts.down_proj);
      const silu = (v: number) => v / (1 + Math.exp(-v));
      let worst = 0;
      let weightSum = 0;
      for (let n = 0; n < N; n++) {
        const xn = xs.subarray(n * C, (n + 1) * C);
        const logits = Array.from({ length: E }, (_, e) => xn.reduce((s, v, c) => s + v * Wr[e * C + c], 0));
        const mx = Math.max(...logits);
        const z = logits.reduce((s, l) => s + Math.exp(l - mx), 0);
        const p = logits.map((l) => Math.exp(l - mx) / z);
        const top = [...p.keys()].sort((a, b) => p[b] - p[a]).slice(0, k);
        const want = new Float64Array(C);
        for (const e of top) {
          weightSum += p[e] / N;
          const h = Array.from({ length: F }, (_, f) => {
            const dot = (row: number) => xn.reduce((s, v, c) => s + v * gu[(e * 2 * F + row) * C + c], 0);
            return silu(dot(f)) * dot(F + f);
          });
          for (let c = 0; c < C; c++) want[c] += p[e] * h.reduce((s, v, f) => s + v * dn[(e * C + c) * F + f], 0);
        }
        for (let c = 0; c < C; c++) worst = Math.max(worst, Math.abs(got[n * C + c] - want[c]));
      }
      assert.ok(worst < 1e-5, `dense vs routed: ${worst}`);
      assert.ok(weightSum < 0.999, `the k weights keep the softmax mass they had (mean sum ${weightSum})`);
    }),
  );
});

test("cached decoding (Mamba states + growing KV caches) reproduces the full forward at every position", () => {
  const model = randomModel(config, 3);
  for (const pieces of PIECES) {
    const err = piecesVsFull(model, pieces, 2);
    assert.ok(err < 2e-5, `pieces ${pieces}: ${err}`);
  }
  // another pattern: attention first, every layer sparse, top-1, MQA, untied
  const other = randomModel({ ...config, num_hidden_layers: 3, attn_layer_period: 3, attn_layer_offset: 0, expert_layer_period: 1, expert_layer_offset: 0, num_experts_per_tok: 1, num_key_value_heads: 1, tie_word_embeddings: false }, 4);
  assert.ok(piecesVsFull(other, PIECES[1], 1) < 2e-5);
});

test("decode memory grows only through the attention layers: KV bytes linear in position, recurrent bytes constant", () => {
  const model = randomModel(config, 5) as JambaForCausalLM;
  const { D, N, W } = model.config.mamba;
  const { G, K } = model.config.attention;
  const rows = bytesWhileDecoding(model, 12);
  const kvPerToken = 2 /* attention layers */ * 2 /* k, v */ * G * K * 4;
  const recurrent = 6 /* mamba layers */ * ((W - 1) * D + D * N) * 4;
  rows.forEach((r, t) => {
    assert.equal(r.kvCache, kvPerToken * (t + 1), `KV bytes at position ${t + 1}`);
    assert.equal(r.recurrent, recurrent, `recurrent bytes at position ${t + 1}`);
  });
});

test("training adds router_aux_loss_coef times the load-balancing loss of the sparse layers", () => {
  const model = randomModel(config, 7);
  const same = randomModel({ ...config, router_aux_loss_coef: 0 }, 7); // the same weights, no aux loss
  const ids = Int32Array.from([1, 2, 3, 4, 5, 6, 7, 8]);
  const targets = Int32Array.from([2, 3, 4, 5, 6, 7, 8, -100]);
  noGrad(() =>
    tidy(() => {
      const withAux = toArraySync(batchLoss(model, ids, targets, 1, 8))[0];
      const plain = toArraySync(batchLoss(same, ids, targets, 1, 8))[0];
      const aux = toArraySync(model.forward(model.tokens(ids, 1, 8), { auxLoss: true }).auxLoss!)[0];
      assert.ok(aux > 0, `aux ${aux}`);
      assert.ok(Math.abs(withAux - (plain + 0.02 * aux)) < 1e-5, `${withAux} vs ${plain} + 0.02 * ${aux}`);
    }),
  );
});

test("bad configs are refused with one clear line", () => {
  const bad: [Record<string, unknown>, RegExp][] = [
    [{ ...config, attn_layer_offset: 4 }, /attn_layer_offset 4 must be smaller than attn_layer_period 4/],
    [{ ...config, expert_layer_period: 0 }, /"expert_layer_period" must be at least 1/],
    [{ ...config, num_experts_per_tok: 5 }, /num_experts_per_tok 5 exceeds num_experts 4/],
    [{ ...config, num_key_value_heads: 3 }, /num_attention_heads 4 must be a multiple of num_key_value_heads 3/],
    [{ ...config, pad_token_id: 40 }, /pad_token_id 40 must be below vocab_size 40/],
    [{ ...config, hidden_act: "swiglu" }, /"hidden_act" must be one of/],
  ];
  for (const [json, re] of bad) {
    assert.throws(() => randomModel(json, 1), (e) => e instanceof SeqlabError && re.test(e.message) && !e.message.includes("\n"), String(re));
  }
});

test("pad_token_id is nn.Embedding's padding_idx: its row gets no gradient from lookups (a tied head's still reaches it)", () => {
  const small = { ...config, num_hidden_layers: 2, attn_layer_period: 2, attn_layer_offset: 1 };
  const ids = [0, 3, 0, 5, 7, 0];
  const targets = Int32Array.from([3, 0, 5, 7, 0, -100]);
  const row0 = (json: Record<string, unknown>) => {
    const m = randomModel(json, 8) as JambaForCausalLM;
    tidy(() => {
      const loss = batchLoss(m, Int32Array.from(ids), targets, 1, 6);
      backward(loss);
    });
    const g = toArraySync(m.model.embed_tokens.weight.grad!);
    return Math.max(...Array.from(g.subarray(0, 24), Math.abs));
  };
  assert.equal(row0({ ...small, tie_word_embeddings: false }), 0); // Jamba's default pad_token_id is 0
  assert.ok(row0({ ...small, tie_word_embeddings: false, pad_token_id: null }) > 0);
  assert.ok(row0({ ...small, tie_word_embeddings: true }) > 0); // the LM head's gradient for token 0
  assert.ok(row0({ ...small, tie_word_embeddings: false, pad_token_id: 5 }) > 0);
});
