/**
 * bench gpu's train section on SwiftShader: whole optimizer steps of the small decode models on
 * webgpu (forward, cross-entropy, backward, clipping, AdamW), whose losses and gradient norms must
 * follow the ref backend taking the same steps from the same seeded weights; and the agreement
 * report that compares a side's losses with PyTorch's.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { WebGpuBackend } from "../src/backend/webgpu/index.js";
import { RefBackend } from "../src/backend/ref/index.js";
import { setDefaultBackend } from "../src/backend/registry.js";
import { buildModel } from "../src/models/registry.js";
import { RawConfig } from "../src/io/config.js";
import { ModuleContext } from "../src/nn/module.js";
import { AdamW } from "../src/train/optimizer.js";
import { QUICK_MODELS } from "../src/bench/gpu/decode.js";
import { benchTrain, lossAgreement, trainBatch, trainStep, type TrainShape } from "../src/bench/gpu/train.js";
import { useSwiftShader } from "./webgpu_helpers.js";

const SHAPE: TrainShape = { batch: 2, T: 12, steps: 2, lr: 1e-2, weightDecay: 0.01, clipNorm: 1 };

/** The losses and gradient norms of the bench's steps (one untimed, `steps` timed, one profiled) on the ref backend. */
async function refSteps(name: string): Promise<{ losses: number[]; norms: number[] }> {
  const be = new RefBackend();
  setDefaultBackend(be);
  const model = buildModel(new RawConfig(`bench ${name}`, QUICK_MODELS[name]), ModuleContext.seeded(be, 0));
  const opt = new AdamW(be, model.namedParameters(), { lr: SHAPE.lr, weightDecay: SHAPE.weightDecay, clipNorm: SHAPE.clipNorm });
  const batch = trainBatch(SHAPE.batch, SHAPE.T, model.config.V);
  const losses: number[] = [];
  const norms: number[] = [];
  for (let i = 0; i < SHAPE.steps + 2; i++) {
    const r = await trainStep(model, opt, SHAPE, batch);
    losses.push(r.loss);
    norms.push(r.gradNorm);
  }
  return { losses, norms };
}

test("train bench: webgpu steps follow ref's, step by step, and the loss falls", async () => {
  useSwiftShader();
  const want = { mamba: await refSteps("mamba"), llama: await refSteps("llama") };
  const be = await WebGpuBackend.create({ timestamps: true });
  try {
    setDefaultBackend(be);
    const lines: string[] = [];
    const results = await benchTrain(be, { shape: SHAPE, models: QUICK_MODELS, log: (l) => lines.push(l) });
    assert.deepEqual(results.map((r) => `${r.name} ${r.shape}`), ["train mamba B2 T12", "train llama B2 T12"]);
    for (const r of results) {
      const name = r.name.split(" ")[1] as "mamba" | "llama";
      const losses = String(r.extra?.losses).split(" ").map(Number);
      const norms = String(r.extra?.["grad norms"]).split(" ").map(Number);
      assert.equal(losses.length, SHAPE.steps + 2);
      losses.forEach((l, i) => assert.ok(Math.abs(l - want[name].losses[i]) <= 2e-5 * Math.abs(want[name].losses[i]), `${name} step ${i + 1}: loss ${l} vs ref ${want[name].losses[i]}`));
      norms.forEach((g, i) => assert.ok(Math.abs(g - want[name].norms[i]) <= 1e-3 * want[name].norms[i], `${name} step ${i + 1}: gradient norm ${g} vs ref ${want[name].norms[i]}`));
      assert.ok(losses[losses.length - 1] < losses[0], `${name}: the loss falls on the repeated batch (${losses.join(" ")})`);
      // the noise-floor trajectory: the same steps with each batch in halves (the same updates up to rounding)
      const halves = String(r.extra?.["losses, batch in halves"]).split(" ").map(Number);
      assert.equal(halves.length, 3);
      halves.forEach((l, i) => assert.ok(Math.abs(l - losses[i]) <= 2e-5 * losses[i], `${name} step ${i + 1} in halves: ${l} vs ${losses[i]}`));
      assert.ok(r.rate > 0 && r.ms > 0 && (r.extra?.["fwd+bwd gpu ms"] as number) > 0);
      assert.match(String(r.extra?.top), /ms \(\d+\)/, "the profiled step names its slowest kernels");
    }
    assert.equal(lines.length, 2);

    // the agreement report: a PyTorch file with the same rows, one loss off by 1e-3 of itself, one
    // parameter's gradient norm off by 1e-2, one parameter missing and one it alone has
    const losses = String(results[0].extra?.losses).split(" ").map(Number);
    const norms = results[0].detail?.["first step's gradient norms"] as Record<string, number>;
    const names = Object.keys(norms);
    assert.ok(names.length > 5 && names.every((n) => norms[n] >= 0), names.join(" "));
    const theirNorms: Record<string, number> = { ...norms, [names[1]]: norms[names[1]] * (1 + 1e-2), "only.torch": 1 };
    delete theirNorms[names[0]];
    // and a float64 first step 1e-4 above this side's
    const norms64 = Object.fromEntries(names.map((n) => [n, norms[n] * (1 + 1e-4)]));
    const torch = {
      results: [
        {
          name: results[0].name, shape: results[0].shape, losses: losses.map((l, i) => (i === 2 ? l * (1 + 1e-3) : l)), "param grad norms": theirNorms,
          "loss fp64": losses[0] * (1 + 1e-4), "param grad norms fp64": norms64,
        },
      ],
    };
    const agreement = lossAgreement(results, torch);
    assert.equal(agreement.length, 1, "only the model PyTorch ran is compared");
    const a = agreement[0];
    assert.equal(a.steps, SHAPE.steps + 2);
    assert.ok(a.first < 1e-6, `first ${a.first}`);
    assert.ok(Math.abs(a.worst - 1e-3 / (1 + 1e-3)) < 1e-4, `worst ${a.worst}`);
    assert.equal(a.params, names.length - 1);
    assert.equal(a.worstParam, names[1]);
    assert.ok(Math.abs(a.worstParamDiff - 1e-2 / (1 + 1e-2)) < 1e-4, `${a.worstParamDiff}`);
    assert.deepEqual(a.unmatched, [names[0], "only.torch"]);
    assert.equal(a.floorSteps, 3);
    assert.ok(a.floor < 2e-5, `floor ${a.floor}`);
    assert.ok(Math.abs(a.worstWithinFloor - 1e-3 / (1 + 1e-3)) < 1e-4, `within the floor's steps ${a.worstWithinFloor}`);
    const near = (x: number, want: number) => Math.abs(x - want) < 1e-6;
    assert.ok(a.fp64 && near(a.fp64.loss.ours, 1e-4 / (1 + 1e-4)) && near(a.fp64.loss.torch, 1e-4 / (1 + 1e-4)), JSON.stringify(a.fp64));
    assert.ok(near(a.fp64.grads.ours.median, 1e-4 / (1 + 1e-4)) && near(a.fp64.grads.ours.worst, 1e-4 / (1 + 1e-4)));
    assert.equal(a.fp64.grads.torch.worstParam, names[1], "PyTorch's perturbed norm is its worst against float64");
  } finally {
    be.destroy();
  }
});
