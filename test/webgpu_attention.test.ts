/**
 * WGSL tiled (flash) and materialised attention against ref on SwiftShader: head sizes
 * 16/64/128/256 and an odd one, ragged T, grouped KV heads, causal and not, KV caches
 * (qOffset > 0, kvRows > S).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import type { AttentionDims } from "../src/backend/kernels.js";
import { refKernels } from "../src/backend/ref/index.js";
import { Rng } from "../src/util/rng.js";
import { gpuBackend, compareKernel, input, output, randArray } from "./webgpu_helpers.js";

const rng = new Rng(3);

interface Case {
  B: number;
  T: number;
  H: number;
  G: number;
  K: number;
  causal: boolean;
  /** past keys already in the cache */
  past?: number;
  /** spare cache rows past S */
  spare?: number;
}

function dims(c: Case): AttentionDims {
  const S = c.T + (c.past ?? 0);
  return { B: c.B, T: c.T, S, H: c.H, G: c.G, K: c.K, scale: 1 / Math.sqrt(c.K), causal: c.causal, qOffset: c.past ?? 0, kvRows: S + (c.spare ?? 0) };
}

function inputs(d: AttentionDims) {
  const q = randArray(d.B * d.T * d.H * d.K, rng);
  const k = randArray(d.B * d.kvRows * d.G * d.K, rng);
  const v = randArray(d.B * d.kvRows * d.G * d.K, rng);
  const dout = randArray(d.B * d.T * d.H * d.K, rng);
  return { q, k, v, dout };
}

async function checkTiled(c: Case, tol = 3e-6): Promise<void> {
  const be = await gpuBackend();
  const d = dims(c);
  const { q, k, v, dout } = inputs(d);
  const nq = q.length;
  const nkv = k.length;
  const [eo, el] = await compareKernel(be, "attentionForward", [output(randArray(nq, rng)), output(randArray(d.B * d.H * d.T, rng)), input(q), input(k), input(v), d]);
  assert.ok(eo < tol && el < tol, `attentionForward ${JSON.stringify(c)}: out ${eo} lse ${el}`);
  const out = new Float32Array(nq);
  const lse = new Float32Array(d.B * d.H * d.T);
  refKernels.attentionForward(out, lse, q, k, v, d);
  const errs = await compareKernel(be, "attentionBackward", [
    output(randArray(nq, rng)),
    output(randArray(nkv, rng)),
    output(randArray(nkv, rng)),
    input(dout),
    input(q),
    input(k),
    input(v),
    input(out),
    input(lse),
    d,
  ]);
  assert.ok(Math.max(...errs) < 10 * tol, `attentionBackward ${JSON.stringify(c)}: dq dk dv ${errs}`);
}

async function checkNaive(c: Case, tol = 3e-6): Promise<void> {
  const be = await gpuBackend();
  const d = dims(c);
  const { q, k, v, dout } = inputs(d);
  const np = d.B * d.H * d.T * d.S;
  const [eo, ep] = await compareKernel(be, "attentionNaiveForward", [output(randArray(q.length, rng)), output(randArray(np, rng)), input(q), input(k), input(v), d]);
  assert.ok(eo < tol && ep < tol, `attentionNaiveForward ${JSON.stringify(c)}: ${eo} ${ep}`);
  const out = new Float32Array(q.length);
  const probs = new Float32Array(np);
  refKernels.attentionNaiveForward(out, probs, q, k, v, d);
  const errs = await compareKernel(be, "attentionNaiveBackward", [
    output(randArray(q.length, rng)),
    output(randArray(k.length, rng)),
    output(randArray(k.length, rng)),
    input(dout),
    input(q),
    input(k),
    input(v),
    input(probs),
    d,
  ]);
  assert.ok(Math.max(...errs) < 10 * tol, `attentionNaiveBackward ${JSON.stringify(c)}: ${errs}`);
}

test("tiled attention: head size 64, ragged T, causal and not, GQA", async () => {
  for (const T of [1, 3, 31, 33, 70]) {
    for (const causal of [true, false]) await checkTiled({ B: 2, T, H: 4, G: 2, K: 64, causal });
  }
  await checkTiled({ B: 1, T: 40, H: 3, G: 3, K: 64, causal: true });
  await checkTiled({ B: 1, T: 17, H: 4, G: 1, K: 64, causal: false });
});

test("tiled attention: head sizes 16, 128, 256 and odd 6 and 36", async () => {
  for (const K of [16, 128, 256, 6, 36]) {
    await checkTiled({ B: 1, T: 19, H: 2, G: 1, K, causal: true });
    await checkTiled({ B: 1, T: 9, H: 2, G: 2, K, causal: false });
  }
});

test("tiled attention: KV cache (qOffset > 0, spare cache rows), decode step", async () => {
  await checkTiled({ B: 2, T: 5, H: 4, G: 2, K: 64, causal: true, past: 37, spare: 6 });
  await checkTiled({ B: 1, T: 1, H: 2, G: 1, K: 32, causal: true, past: 70, spare: 3 });
  await checkTiled({ B: 1, T: 33, H: 2, G: 2, K: 16, causal: true, past: 31 });
  await checkTiled({ B: 1, T: 3, H: 2, G: 1, K: 128, causal: false, past: 10, spare: 2 });
});

/** One query row against `S` cached keys (split-K decoding kernels), query at position qOffset. */
async function checkDecode(B: number, S: number, H: number, G: number, K: number, qOffset = S - 1, causal = true, spare = 3): Promise<void> {
  const be = await gpuBackend();
  const d: AttentionDims = { B, T: 1, S, H, G, K, scale: 1 / Math.sqrt(K), causal, qOffset, kvRows: S + spare };
  const { q, k, v } = inputs(d);
  const [eo, el] = await compareKernel(be, "attentionForward", [output(randArray(q.length, rng)), output(randArray(B * H, rng)), input(q), input(k), input(v), d]);
  assert.ok(eo < 3e-6 && el < 3e-6, `decode ${JSON.stringify(d)}: out ${eo} lse ${el}`);
}

test("decoding attention (one query row, keys split over workgroups): chunk edges, head sizes, GQA, partial and empty visibility", async () => {
  for (const S of [1, 5, 127, 128, 129, 300, 1000]) await checkDecode(2, S, 6, 2, 64);
  for (const K of [6, 36, 16, 128, 256]) await checkDecode(1, 200, 4, 4, K);
  await checkDecode(1, 260, 12, 3, 64, 130); // sees keys 0..130 of 260: chunk 1 partly, chunk 2 not at all
  await checkDecode(2, 90, 4, 1, 32, 40, false); // not causal: every key, whatever the position
  // no visible key: zeros and lse = -inf, as ref
  const be = await gpuBackend();
  const d: AttentionDims = { B: 1, T: 1, S: 8, H: 2, G: 1, K: 8, scale: 0.3, causal: true, qOffset: -1, kvRows: 8 };
  const { q, k, v } = inputs(d);
  const [eo, el] = await compareKernel(be, "attentionForward", [output(randArray(16, rng), "f32", true), output(randArray(2, rng), "f32", true), input(q), input(k), input(v), d]);
  assert.deepEqual([eo, el], [0, 0]);
});

test("materialised attention: forward and backward on the same cases", async () => {
  await checkNaive({ B: 2, T: 33, H: 4, G: 2, K: 16, causal: true });
  await checkNaive({ B: 1, T: 7, H: 2, G: 1, K: 64, causal: false });
  await checkNaive({ B: 1, T: 3, H: 2, G: 2, K: 8, causal: true, past: 20, spare: 4 });
  await checkNaive({ B: 1, T: 1, H: 1, G: 1, K: 256, causal: true, past: 65 });
});
