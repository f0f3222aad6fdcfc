/**
 * The webgpu backend as a whole on SwiftShader: registry, memory accounting, buffer reuse,
 * batching into few submits, refusal of kernels without WGSL, device loss, out of GPU memory, and
 * `seqlab verify --backend webgpu` on the Hugging Face fixtures.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as path from "node:path";
import { createBackend } from "../src/backend/registry.js";
import { WebGpuBackend } from "../src/backend/webgpu/index.js";
import { verify } from "../src/cli/verify.js";
import { GpuOutOfMemoryError, SeqlabError } from "../src/util/errors.js";
import { withMemoryHint } from "../src/cli/commands/showdown.js";
import { refKernels } from "../src/backend/ref/index.js";
import type { KernelName } from "../src/backend/kernels.js";
import { gpuBackend, useSwiftShader } from "./webgpu_helpers.js";
import { HF_FIXTURES } from "./helpers.js";
import { loadModel } from "../src/models/load.js";
import { advance } from "../src/generate/generate.js";

test("registry: webgpu is created by name and describes its adapter", async () => {
  useSwiftShader();
  const be = await createBackend("webgpu");
  assert.match(be.describe(), /^webgpu \(.*swiftshader.*\)$/i);
  await assert.rejects(createBackend("webgpu", { precision: "f64" }), SeqlabError);
  (be as WebGpuBackend).destroy();
});

test("memory: exact bytes of live tensors, peak, and buffer reuse by size class", async () => {
  const be = await gpuBackend();
  const before = be.memory();
  const a = be.allocate("f32", 1000);
  const b = be.allocate("f16", 3);
  assert.equal(be.memory().bytesInUse - before.bytesInUse, 4006);
  assert.equal(be.memory().allocations - before.allocations, 2);
  const buffer = a.buffer;
  be.release(a);
  be.release(b);
  assert.equal(be.memory().bytesInUse, before.bytesInUse);
  assert.ok(be.memory().peakBytes >= before.bytesInUse + 4006);
  const c = be.allocate("f32", 990); // same size class
  assert.equal(c.buffer, buffer, "a released buffer is reused");
  be.release(c);
});

test("batching: kernels are recorded and submitted together at read()", async () => {
  const be = await gpuBackend();
  const x = be.upload("f32", Float32Array.from([1, 2, 3, 4]));
  const submits = be.ctx.submits;
  for (let i = 0; i < 50; i++) be.kernels.axpby(x, 1, x, 1, x, 4);
  assert.equal(be.ctx.submits, submits, "nothing submitted while recording");
  const got = await be.read(x, "f32", 4);
  assert.equal(be.ctx.submits, submits + 1);
  assert.deepEqual(Array.from(got), [1, 2, 3, 4].map((v) => v * 2 ** 50));
  // a host write after recorded work sees the work done first
  be.kernels.fill(x, 7, 4);
  be.write(x, "f32", Float32Array.from([5, 6, 7, 8]));
  assert.deepEqual(Array.from(await be.read(x, "f32", 4)), [5, 6, 7, 8]);
  be.release(x);
});

test("batching: a long recording is submitted every flushEvery commands, in order", async () => {
  const be = await gpuBackend();
  const x = be.upload("f32", Float32Array.from([1, 2, 3, 4]));
  const ones = be.upload("f32", Float32Array.from([1, 1, 1, 1]));
  assert.equal(be.ctx.flushEvery, 64);
  const submits = be.ctx.submits;
  for (let i = 0; i < 200; i++) be.kernels.axpby(x, 1, x, 1, ones, 4);
  assert.equal(be.ctx.submits, submits + 3, "200 dispatches: submitted after 64, 128 and 192");
  assert.deepEqual(Array.from(await be.read(x, "f32", 4)), [201, 202, 203, 204]);
  be.release(x);
  be.release(ones);
});

test("batching: decoding gives the same logits whether every command or only the read submits", async () => {
  const be = await gpuBackend();
  const model = loadModel(path.join(HF_FIXTURES, "llama"), be);
  const prompt = [3, 1, 4, 1, 5, 9, 2, 6];
  const run = async (flushEvery: number) => {
    be.ctx.flushEvery = flushEvery;
    const state = model.allocateState(1, 16);
    const out = [Array.from(await advance(model, state, prompt))];
    for (const id of [5, 3, 5]) out.push(Array.from(await advance(model, state, [id])));
    return out;
  };
  try {
    const once = await run(0);
    const each = await run(1);
    assert.deepEqual(each, once);
  } finally {
    be.ctx.flushEvery = 64;
    for (const t of model.parameters()) t.dispose();
  }
});

test("every kernel of the table has WGSL; other names are refused by name", async () => {
  const be = await gpuBackend();
  // ref/elementwise.ts also exports scalar helpers, which spread into refKernels
  const helpers = new Set(["sigmoid", "softplus", "unaryDerivative", "unaryValue"]);
  const missing = Object.keys(refKernels).filter((name) => !helpers.has(name) && !be.implements(name as KernelName));
  assert.deepEqual(missing, []);
  const k = be.kernels as unknown as Record<string, () => void>;
  assert.throws(() => k["fooForward"](), (e: Error) => e instanceof SeqlabError && e.message === "webgpu: kernel fooForward is not implemented");
});

test("device loss is reported on the next call", async () => {
  useSwiftShader();
  const be = await WebGpuBackend.create();
  const x = be.allocate("f32", 4);
  be.ctx.device.destroy();
  await new Promise((r) => setTimeout(r, 50));
  await be.ctx.device.lost;
  assert.throws(() => be.kernels.fill(x, 1, 4), (e: Error) => e instanceof SeqlabError && /device was lost \(destroyed/.test(e.message));
});

test("an out-of-memory error from the device is a GpuOutOfMemoryError on the next call, and the showdown names the flag that bounds it", async () => {
  useSwiftShader();
  const be = await WebGpuBackend.create();
  const x = be.allocate("f32", 4);
  // what Dawn delivers when an allocation fails (the error's class, whatever its text)
  class GPUOutOfMemoryError extends Error {}
  const raise = be.ctx.device.onuncapturederror as unknown as (ev: { error: Error }) => void;
  raise({ error: new GPUOutOfMemoryError("Allocation failed\nsecond line") });
  assert.throws(() => be.kernels.fill(x, 1, 4), (e: Error) => e instanceof GpuOutOfMemoryError && e.message === "webgpu: out of GPU memory (Allocation failed | second line)");
  be.kernels.fill(x, 1, 4); // reported once
  raise({ error: new GPUOutOfMemoryError("Allocation failed") });
  await assert.rejects(
    withMemoryHint(async () => be.kernels.fill(x, 1, 4)),
    (e: Error) => e instanceof GpuOutOfMemoryError && /; a smaller --memory-budget keeps the scaling section within this GPU$/.test(e.message),
  );
  raise({ error: new Error("Some validation error") });
  assert.throws(() => be.kernels.fill(x, 1, 4), (e: Error) => !(e instanceof SeqlabError) && /^internal: webgpu: Some validation error/.test(e.message));
  be.destroy();
});

for (const arch of ["llama", "gpt2"]) {
  test(`seqlab verify --backend webgpu passes on the ${arch} fixture`, async () => {
    useSwiftShader();
    const lines: string[] = [];
    const ok = await verify(path.join(HF_FIXTURES, arch), { backend: "webgpu" }, (l) => lines.push(l));
    assert.equal(lines.at(-1), "verify: PASS", lines.join("\n"));
    assert.ok(ok);
    assert.match(lines[0], /backend webgpu \(/);
  });
}
