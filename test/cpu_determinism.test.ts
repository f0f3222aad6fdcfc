/**
 * A training step's loss and every gradient are the same bits on 1, 2 and 3 threads, for each of
 * the showdown's architectures: a seed fixes a run whatever the machine's core count (the
 * showdown's parallel recall jobs rely on it). Kernels that sum over rows do so in blocks fixed by
 * the sizes, never by the thread split.
 */
import { test } from "node:test";
import { CpuBackend } from "../src/backend/cpu/backend.js";
import { archConfig, matchedArchs } from "../src/experiments/zoo.js";
import { PLANS } from "../src/experiments/plan.js";
import { RawConfig } from "../src/io/config.js";
import { buildModel } from "../src/models/registry.js";
import { ModuleContext } from "../src/nn/module.js";
import { batchLoss } from "../src/train/batch_loss.js";
import { backward } from "../src/autograd/tape.js";
import { tidyAsync } from "../src/tensor/scope.js";
import type { HostArray } from "../src/tensor/dtype.js";
import { sameBits } from "./cpu_mixer_helpers.js";

/** The loss and the gradients (in parameter order) of one step of `arch` on `threads` threads. */
async function step(arch: string, threads: number): Promise<Float32Array[]> {
  const be = await CpuBackend.create({ threads, forceThreads: threads > 1 });
  try {
    const plan = PLANS.quick;
    const config = archConfig(matchedArchs(be, plan.model)[arch], { ...plan.model, vocab: 64 });
    const model = buildModel(new RawConfig(`showdown ${arch}`, config), ModuleContext.seeded(be, 0));
    const B = 8, T = 40;
    const ids = Int32Array.from({ length: B * T }, (_, i) => (i * 7919) % 64);
    const targets = Int32Array.from({ length: B * T }, (_, i) => (i * 104729 + 3) % 64);
    const loss = await tidyAsync(async () => {
      const l = batchLoss(model, ids, targets, B, T);
      backward(l);
      return Float32Array.from((await be.read(l.handle as HostArray, "f32", 1)) as Float32Array);
    });
    const grads = [];
    for (const [, t] of model.namedParameters()) grads.push(Float32Array.from((await be.read(t.grad!.handle as HostArray, "f32", t.size)) as Float32Array));
    return [loss, ...grads];
  } finally {
    await be.dispose();
  }
}

for (const arch of ["transformer", "mamba", "mamba-lti", "mamba2", "rwkv", "hybrid"]) {
  test(`${arch}: a training step's loss and gradients are the same bits on 1, 2 and 3 threads`, async () => {
    const one = await step(arch, 1);
    for (const threads of [2, 3]) sameBits(one, await step(arch, threads), `${arch}, ${threads} threads vs 1`);
  });
}
