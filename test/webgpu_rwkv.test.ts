/** WGSL WKV-4 and WKV-7 kernels against ref on SwiftShader: ragged T over chunks, initial and final state gradients on and off. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { refKernels } from "../src/backend/ref/index.js";
import { Rng } from "../src/util/rng.js";
import { gpuBackend, compareKernel, input, output, randArray } from "./webgpu_helpers.js";

const rng = new Rng(31);

function uniformArray(n: number, lo: number, hi: number): Float32Array {
  return Float32Array.from({ length: n }, () => lo + (hi - lo) * rng.uniform());
}

test("wkv4 forward, backward and step, with and without states", async () => {
  const be = await gpuBackend();
  for (const [B, T, D] of [[1, 1, 1], [2, 9, 5], [1, 33, 70]]) {
    for (const withState of [false, true]) {
      const d = { B, T, D };
      const w = uniformArray(D, -2, -0.05);
      const u = randArray(D, rng);
      const k = randArray(B * T * D, rng, 2);
      const v = randArray(B * T * D, rng);
      const s0 = withState ? Float32Array.from({ length: B * 3 * D }, (_, i) => (Math.floor(i / D) % 3 === 1 ? 1 + rng.uniform() : rng.normal())) : null;
      const errs = await compareKernel(be, "wkv4Forward", [
        output(randArray(B * T * D, rng)), output(randArray(B * 3 * D, rng)), output(randArray(B * T * 3 * D, rng)), input(w), input(u), input(k), input(v), s0 && input(s0), d,
      ]);
      assert.ok(Math.max(...errs) < 1e-5, `wkv4 fwd ${[B, T, D]}: ${errs}`);
      const y = new Float32Array(B * T * D);
      const saved = new Float32Array(B * T * 3 * D);
      refKernels.wkv4Forward(y, null, saved, w, u, k, v, s0, d);
      const errsB = await compareKernel(be, "wkv4Backward", [
        output(randArray(B * D, rng)), output(randArray(B * D, rng)), output(randArray(B * T * D, rng)), output(randArray(B * T * D, rng)),
        withState ? output(randArray(B * 3 * D, rng)) : null, input(randArray(B * T * D, rng)), withState ? input(randArray(B * 3 * D, rng)) : null,
        input(w), input(u), input(k), input(v), input(y), input(saved), d,
      ]);
      assert.ok(Math.max(...errsB) < 1e-4, `wkv4 bwd ${[B, T, D]} state ${withState}: ${errsB}`);
      const errsS = await compareKernel(be, "wkv4Step", [
        output(randArray(B * D, rng)), output(s0 ?? new Float32Array(B * 3 * D).map((_, i) => (Math.floor(i / D) % 3 === 2 ? -1e38 : 0))),
        input(w), input(u), input(randArray(B * D, rng)), input(randArray(B * D, rng)), { B, D },
      ]);
      assert.ok(Math.max(...errsS) < 1e-5, `wkv4 step ${[B, D]}: ${errsS}`);
    }
  }
});

test("wkv7 forward, backward and step: ragged chunks, initial and final state gradients on and off", async () => {
  const be = await gpuBackend();
  for (const [B, T, H, N, chunk] of [[1, 1, 1, 1, 1], [2, 11, 3, 4, 4], [1, 20, 2, 16, 16], [1, 9, 1, 64, 5]]) {
    for (const withState of [false, true]) {
      const d = { B, T, H, N, chunk };
      const n = B * T * H * N;
      const S = B * H * N * N;
      const r = randArray(n, rng, 0.5);
      const w = uniformArray(n, 0.5, 0.99);
      const k = randArray(n, rng, 0.5);
      const v = randArray(n, rng, 0.5);
      const a = randArray(n, rng, 0.3);
      const b = randArray(n, rng, 0.3);
      const s0 = withState ? randArray(S, rng, 0.5) : null;
      const K = Math.ceil(T / chunk);
      const errs = await compareKernel(be, "wkv7Forward", [
        output(randArray(n, rng)), output(randArray(S, rng)), output(randArray(B * K * H * N * N, rng)),
        input(r), input(w), input(k), input(v), input(a), input(b), s0 && input(s0), d,
      ]);
      assert.ok(Math.max(...errs) < 1e-5, `wkv7 fwd ${[B, T, H, N, chunk]}: ${errs}`);
      const ckpt = new Float32Array(B * K * H * N * N);
      refKernels.wkv7Forward(new Float32Array(n), null, ckpt, r, w, k, v, a, b, s0, d);
      const errsB = await compareKernel(be, "wkv7Backward", [
        ...Array.from({ length: 6 }, () => output(randArray(n, rng))), withState ? output(randArray(S, rng)) : null,
        input(randArray(n, rng)), withState ? input(randArray(S, rng)) : null, input(r), input(w), input(k), input(v), input(a), input(b), input(ckpt), d,
      ]);
      assert.ok(Math.max(...errsB) < 1e-4, `wkv7 bwd ${[B, T, H, N, chunk]} state ${withState}: ${errsB}`);
      const m = B * H * N;
      const errsS = await compareKernel(be, "wkv7Step", [
        output(randArray(m, rng)), output(randArray(S, rng, 0.5)), input(randArray(m, rng)), input(uniformArray(m, 0.5, 0.99)),
        input(randArray(m, rng)), input(randArray(m, rng)), input(randArray(m, rng, 0.3)), input(randArray(m, rng, 0.3)), { B, H, N },
      ]);
      assert.ok(Math.max(...errsS) < 1e-5, `wkv7 step ${[B, H, N]}: ${errsS}`);
    }
  }
});
