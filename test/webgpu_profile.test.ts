/**
 * bench gpu's profile section on SwiftShader: one prefill forward with a timestamp before every
 * dispatch, summed per kernel. Checked for consistency (every dispatch labelled and counted, the
 * kernels' times adding up to the GPU total), and that profiling leaves the forward's result
 * unchanged and the context unhooked.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { WebGpuBackend } from "../src/backend/webgpu/index.js";
import { setDefaultBackend } from "../src/backend/registry.js";
import { buildModel } from "../src/models/registry.js";
import { RawConfig } from "../src/io/config.js";
import { ModuleContext } from "../src/nn/module.js";
import { QUICK_MODELS, promptTokens } from "../src/bench/gpu/decode.js";
import { profileDispatches, profileForward } from "../src/bench/gpu/profile.js";
import { zeroWords } from "../src/backend/webgpu/kit.js";
import { noGradAsync } from "../src/autograd/tape.js";
import { toFloat32 } from "../src/backend/alloc.js";
import { useSwiftShader } from "./webgpu_helpers.js";

test("profile: per-kernel GPU time of a forward, consistent with its totals", async () => {
  useSwiftShader();
  const be = await WebGpuBackend.create({ timestamps: true });
  try {
    setDefaultBackend(be);
    assert.ok(be.ctx.acquired.timestamps, "SwiftShader offers timestamp queries (the profile needs them)");
    const model = buildModel(new RawConfig("profile mamba", QUICK_MODELS.mamba), ModuleContext.seeded(be, 0));
    const T = 24;
    const logits = async () => noGradAsync(async () => Array.from(await toFloat32(model.forward(model.tokens(promptTokens(T, model.config.V), 1, T)).logits)));
    const before = await logits();
    await profileForward(be, model, T); // buffers pooled and pipelines compiled by the first
    const p = await profileForward(be, model, T);
    assert.ok(p.dispatches > 10, `${p.dispatches} dispatches`);
    assert.equal(p.kernels.reduce((a, k) => a + k.dispatches, 0), p.dispatches, "every dispatch labelled");
    assert.ok(p.kernels.some((k) => k.kernel.startsWith("sscan")), p.kernels.map((k) => k.kernel).join(" "));
    const sum = p.kernels.reduce((a, k) => a + k.ms, 0);
    assert.ok(Math.abs(sum - p.gpuMs) <= 1e-6 * Math.max(1, p.gpuMs), `kernels ${sum} ms vs total ${p.gpuMs} ms`);
    assert.ok(p.gpuMs > 0 && p.wallMs > 0);
    assert.equal(p.buffersCreated, 0, "the second profile finds its buffers pooled");
    for (let i = 1; i < p.kernels.length; i++) assert.ok(p.kernels[i - 1].ms >= p.kernels[i].ms, "slowest first");
    assert.equal(be.ctx.beforeDispatch, null, "the hook is removed");
    assert.deepEqual(await logits(), before, "profiling changes nothing computed");
  } finally {
    be.destroy();
  }
});

test("profile: more dispatches than one query set holds", async () => {
  useSwiftShader();
  const be = await WebGpuBackend.create({ timestamps: true });
  try {
    const buf = be.ctx.pool.acquire(16);
    const n = 4500;
    const p = await profileDispatches(be, () => {
      for (let i = 0; i < n; i++) zeroWords(be.ctx, buf, 4);
    });
    be.ctx.pool.release(buf);
    assert.deepEqual(p.kernels.map((k) => [k.kernel, k.dispatches]), [["zeroWords", n]]);
    assert.ok(p.gpuMs > 0 && Math.abs(p.kernels[0].ms - p.gpuMs) <= 1e-6 * p.gpuMs, `${p.kernels[0].ms} vs ${p.gpuMs}`);
  } finally {
    be.destroy();
  }
});
