/**
 * The native "moe" FFN and the "hybrid" preset (Jamba's pattern from native parts): float64
 * gradient check of the MoE block with a shared expert; the preset's layer pattern; cached
 * decoding equal to the full forward; the router log reaching the loss in training; a short
 * training run whose loss falls; native mamba with Jamba's inner norms; clear config errors.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { RawConfig } from "../src/io/config.js";
import { buildModel } from "../src/models/registry.js";
import { ModuleContext } from "../src/nn/module.js";
import { preset } from "../src/models/presets.js";
import { SeqlabForCausalLM } from "../src/models/native.js";
import { NativeMoe } from "../src/models/native_moe.js";
import { JambaMambaMixer } from "../src/nn/jamba_mamba.js";
import { MambaMixer } from "../src/nn/mamba.js";
import { backward, noGrad } from "../src/autograd/tape.js";
import { tidy } from "../src/tensor/scope.js";
import { toArraySync } from "../src/backend/alloc.js";
import { batchLoss, train } from "../src/train/trainer.js";
import { batchRng, makeBatch, type Task } from "../src/tasks/task.js";
import { SeqlabError } from "../src/util/errors.js";
import { Rng } from "../src/util/rng.js";
import { gradcheck, randn, ref32, ref64 } from "./helpers.js";
import { PIECES, piecesVsFull, randomModel } from "./hybrid_helpers.js";

const hybrid = (o: { layers?: number; width?: number } = {}) => preset("hybrid", { vocab: 16, width: o.width ?? 32, layers: o.layers ?? 4 });

test("native moe block (routed experts + shared expert, renormalised or not): float64 gradient check", () => {
  for (const normalize of [false, true]) {
    const moe = new NativeMoe(ModuleContext.seeded(ref64, 3), { C: 6, E: 4, F: 5, k: 2, normalize, act: "silu", initStd: 0.5 }, 7);
    assert.ok(moe.shared_expert);
    const x = randn(ref64, [1, 5, 6], new Rng(11), 1, true);
    const err = gradcheck(([xx]) => moe.forward(xx), [x, ...moe.parameters()]);
    assert.ok(err < 1e-6, `normalize=${normalize}: ${err}`);
  }
});

test("hybrid preset: Jamba's pattern of native parts, with the aux loss coefficient", () => {
  const m = buildModel(new RawConfig("hybrid", hybrid({ layers: 8 })), ModuleContext.forLoading(ref32)) as SeqlabForCausalLM;
  assert.deepEqual(
    m.config.layers.map((l) => `${l.mixer}+${l.ffn}`),
    ["mamba+mlp", "mamba+moe", "mamba+mlp", "attention+moe", "mamba+mlp", "mamba+moe", "mamba+mlp", "attention+moe"],
  );
  assert.ok(m.model.layers[1].ffn instanceof NativeMoe);
  assert.equal(m.config.routerAuxLossCoef, 0.01);
  const names = m.namedParameters().map(([n]) => n);
  assert.ok(names.includes("model.layers.1.ffn.router.weight") && names.includes("model.layers.1.ffn.experts.gate_up_proj"));
});

test("hybrid preset: cached decoding reproduces the full forward at every position", () => {
  const model = randomModel(hybrid({ layers: 4, width: 24 }), 2);
  for (const pieces of PIECES) {
    const err = piecesVsFull(model, pieces, 2);
    assert.ok(err < 2e-5, `pieces ${pieces}: ${err}`);
  }
});

test("native MoE layers log their routing: the aux loss reaches the training loss", () => {
  const cfg = hybrid({ width: 24 });
  const model = randomModel(cfg, 4);
  const same = randomModel({ ...cfg, moe: { ...(cfg.moe as object), aux_loss_coef: 0 } }, 4);
  assert.equal(same.config.routerAuxLossCoef, 0);
  const ids = Int32Array.from([1, 2, 3, 4, 5, 6, 7, 8]);
  const targets = Int32Array.from([2, 3, 4, 5, 6, 7, 8, -100]);
  noGrad(() =>
    tidy(() => {
      const withAux = toArraySync(batchLoss(model, ids, targets, 1, 8))[0];
      const plain = toArraySync(batchLoss(same, ids, targets, 1, 8))[0];
      const aux = toArraySync(model.forward(model.tokens(ids, 1, 8), { auxLoss: true }).auxLoss!)[0];
      assert.ok(aux > 0);
      assert.ok(Math.abs(withAux - (plain + 0.01 * aux)) < 1e-6, `${withAux} vs ${plain} + 0.01 * ${aux}`);
    }),
  );
  // the aux loss alone trains the routers (through the full softmax it reads)
  tidy(() => backward(model.forward(model.tokens(ids, 1, 8), { auxLoss: true }).auxLoss!));
  const router = (model as SeqlabForCausalLM).model.layers[1].ffn as NativeMoe;
  assert.ok(Math.max(...Array.from(toArraySync(router.router.weight.grad!), Math.abs)) > 0);
  // a native stack without MoE layers has no aux loss
  const dense = randomModel({ ...cfg, layers: ["mamba+mlp", "attention+mlp"] }, 4);
  assert.equal(dense.config.routerAuxLossCoef, 0);
});

/** Arithmetic sequences with a per-row start and stride: the next token needs the context. */
const counting: Task = {
  name: "counting",
  vocabSize: 16,
  length: 16,
  scoring: "position",
  batch(split, index, B) {
    const rng = batchRng(1, split, index);
    return makeBatch(B, 16, (ids, targets) => {
      const start = rng.int(0, 16);
      const stride = 1 + rng.int(0, 3);
      for (let t = 0; t < 16; t++) ids[t] = (start + t * stride) % 16;
      for (let t = 0; t + 1 < 16; t++) targets[t] = ids[t + 1];
      return [14];
    });
  },
};

test("hybrid preset trains: the loss falls on a short run (MoE aux loss included)", async () => {
  const model = buildModel(new RawConfig("hybrid", hybrid()), ModuleContext.seeded(ref32, 3));
  const { losses } = await train(model, counting, { steps: 40, batch: 8, lr: 1e-2 });
  const end = losses.slice(-5).reduce((a, b) => a + b) / 5;
  assert.ok(end < 0.5 * losses[0], `loss ${losses[0]} -> ${end}`);
});

test("native mamba: inner_norms builds Jamba's mixer; bad moe and mamba sections are named", () => {
  const withNorms = randomModel({ ...hybrid(), mamba: { state_size: 8, inner_norms: true } }, 1) as SeqlabForCausalLM;
  assert.ok(withNorms.model.layers[0].mixer instanceof JambaMambaMixer);
  const plain = randomModel({ ...hybrid(), mamba: { state_size: 8, inner_norms: false } }, 1) as SeqlabForCausalLM;
  assert.ok(plain.model.layers[0].mixer instanceof MambaMixer && !(plain.model.layers[0].mixer instanceof JambaMambaMixer));
  const bad = (json: Record<string, unknown>, re: RegExp) =>
    assert.throws(() => randomModel(json, 1), (e) => e instanceof SeqlabError && re.test(e.message) && !e.message.includes("\n"), String(re));
  bad({ ...hybrid(), moe: { num_experts: 2, top_k: 3 } }, /\(moe\): top_k 3 exceeds num_experts 2/);
  bad({ ...hybrid(), moe: { num_experts: 0 } }, /"num_experts" must be at least 1/);
  bad({ ...hybrid(), mamba: { inner_norms: true, selective: false } }, /inner_norms .* needs the selective mixer/);
  bad({ ...hybrid(), layers: ["mamba+moe", "attention+experts"] }, /layer 1: ffn "experts" is unknown \(known: none, mlp, moe\)/);
});
