/**
 * Gated DeltaNet: float64 gradient checks of the l2 norm, the gated RMSNorm, the causal conv and
 * the chunked delta rule (with a partial last chunk and grouped key heads); the chunked kernel
 * against the sequential recurrence (chunk sizes, initial and final states); the recurrent step
 * against the sequential form; the conv window carried across calls.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as ops from "../src/ops/index.js";
import { fromArray, toArraySync } from "../src/backend/alloc.js";
import { noGrad } from "../src/autograd/tape.js";
import { tidy } from "../src/tensor/scope.js";
import type { Tensor } from "../src/tensor/tensor.js";
import { Rng } from "../src/util/rng.js";
import { refKernels } from "../src/backend/ref/index.js";
import { deltanetSequentialForward } from "../src/backend/ref/deltanet_sequential.js";
import type { DeltaNetDims } from "../src/backend/kernels_deltanet.js";
import { gradcheck, maxAbsDiff, randn, ref64, uniform, values } from "./helpers.js";

const TOL = 1e-6;
const rng = new Rng(23);

test("gradcheck: l2norm and the z-gated RMSNorm", () => {
  const x = randn(ref64, [3, 2, 5], rng, 1, true);
  assert.ok(gradcheck(([x]) => ops.l2norm(x), [x]) < TOL);
  const z = randn(ref64, [3, 2, 5], rng, 1, true);
  const w = randn(ref64, [5], rng, 1, true);
  assert.ok(gradcheck(([x, z, w]) => ops.gatedRmsnorm(x, z, w, 1e-6), [x, z, w]) < TOL);
  const y = values(noGrad(() => ops.l2norm(x)));
  let ss = 0;
  for (let i = 0; i < 5; i++) ss += y[i] * y[i];
  assert.ok(Math.abs(ss - 1) < 1e-5);
});

test("gradcheck: causal depthwise conv (with and without a window)", () => {
  for (const W of [1, 3, 4]) {
    const x = randn(ref64, [2, 5, 3], rng, 1, true);
    const w = randn(ref64, [3, 1, W], rng, 1, true);
    assert.ok(gradcheck(([x, w]) => ops.deltanetConv(x, w), [x, w]) < TOL, `W=${W}`);
    const window = randn(ref64, [2, W - 1, 3], rng, 1);
    const saved = values(window);
    // the op advances the window in place; restore it before every evaluation
    const err = gradcheck(([x, w]) => {
      (window.handle as Float64Array).set(saved);
      return ops.deltanetConv(x, w, window);
    }, [x, w]);
    assert.ok(err < TOL, `W=${W} with window: ${err}`);
  }
});

test("conv window: two calls with the window equal one call over the whole sequence", () => {
  for (const [W, split] of [
    [4, 1],
    [4, 5],
    [3, 2],
  ]) {
    const T = 7;
    const x = randn(ref64, [2, T, 3], rng, 1);
    const w = randn(ref64, [3, 1, W], rng, 1);
    noGrad(() =>
      tidy(() => {
        const full = values(ops.deltanetConv(x, w));
        const window = fromArray(ref64, new Float64Array(2 * (W - 1) * 3), [2, W - 1, 3]);
        const [a, b] = ops.split(x.reshape([2, T * 3]), [split * 3, (T - split) * 3]);
        const ya = values(ops.deltanetConv(a.reshape([2, split, 3]), w, window));
        const yb = values(ops.deltanetConv(b.reshape([2, T - split, 3]), w, window));
        for (let bb = 0; bb < 2; bb++) {
          const got = [...ya.subarray(bb * split * 3, (bb + 1) * split * 3), ...yb.subarray(bb * (T - split) * 3, (bb + 1) * (T - split) * 3)];
          assert.ok(maxAbsDiff(got, full.subarray(bb * T * 3, (bb + 1) * T * 3)) < 1e-12, `W=${W} split=${split}`);
        }
        // the window holds the last W - 1 inputs
        const xv = values(x);
        const wv = values(window);
        for (let bb = 0; bb < 2; bb++) {
          assert.deepEqual(Array.from(wv.subarray(bb * (W - 1) * 3, (bb + 1) * (W - 1) * 3)), Array.from(xv.subarray((bb * T + T - (W - 1)) * 3, (bb + 1) * T * 3)));
        }
      }),
    );
  }
});

interface Inputs {
  q: Tensor;
  k: Tensor;
  v: Tensor;
  g: Tensor;
  beta: Tensor;
}

/** q, k l2-normalised (as the model feeds them), g <= 0, beta in (0, 1) */
function inputs(B: number, T: number, H: number, G: number, Dk: number, Dv: number, grad = false): Inputs {
  const q = noGrad(() => ops.l2norm(randn(ref64, [B, T, G, Dk], rng)));
  const k = noGrad(() => ops.l2norm(randn(ref64, [B, T, G, Dk], rng)));
  const gv = Float64Array.from({ length: B * T * H }, () => -Math.log1p(Math.exp(rng.normal())));
  const g = fromArray(ref64, gv, [B, T, H]);
  const beta = uniform(ref64, [B, T, H], rng, 0.05, 0.95);
  const v = randn(ref64, [B, T, H, Dv], rng);
  for (const t of [q, k, v, g, beta]) t.requiresGrad = grad;
  return { q, k, v, g, beta };
}

test("gradcheck: chunked delta rule, partial last chunk, grouped key heads", () => {
  for (const [T, chunk, H, G] of [
    [7, 3, 2, 1],
    [5, 5, 2, 2],
    [6, 4, 3, 1],
  ]) {
    const { q, k, v, g, beta } = inputs(2, T, H, G, 3, 2, true);
    const err = gradcheck(([q, k, v, g, beta]) => ops.deltaRule(q, k, v, g, beta, { scale: 0.7, chunk }), [q, k, v, g, beta]);
    assert.ok(err < TOL, `T=${T} chunk=${chunk} H=${H} G=${G}: ${err}`);
  }
});

function dims(B: number, T: number, H: number, G: number, Dk: number, Dv: number, chunk: number): DeltaNetDims {
  return { B, T, H, G, Dk, Dv, scale: 1 / Math.sqrt(Dk), chunk };
}

test("chunked delta rule equals the sequential recurrence (chunk sizes, initial and final states)", () => {
  const [B, T, H, G, Dk, Dv] = [2, 23, 6, 3, 4, 5];
  const x = inputs(B, T, H, G, Dk, Dv);
  const [q, k, v, g, beta] = [x.q, x.k, x.v, x.g, x.beta].map((t) => t.handle as Float64Array);
  const n = B * H * Dk * Dv;
  for (const withState of [false, true]) {
    const s0 = withState ? Float64Array.from({ length: n }, () => rng.normal()) : null;
    const wantOut = new Float64Array(B * T * H * Dv);
    const wantState = new Float64Array(n);
    deltanetSequentialForward(wantOut, wantState, q, k, v, g, beta, s0, dims(B, T, H, G, Dk, Dv, 1));
    for (const chunk of [1, 4, 7, 23, 64]) {
      const out = new Float64Array(wantOut.length);
      const state = s0 ? Float64Array.from(s0) : new Float64Array(n);
      const chunks = new Float64Array(B * H * Math.ceil(T / chunk) * Dk * Dv);
      // the final state written over the initial one (the in-place use of decoding)
      refKernels.deltanetForward(out, state, chunks, q, k, v, g, beta, s0 ? state : null, dims(B, T, H, G, Dk, Dv, chunk));
      assert.ok(maxAbsDiff(out, wantOut) < 1e-12, `out, chunk=${chunk} state=${withState}`);
      assert.ok(maxAbsDiff(state, wantState) < 1e-12, `final state, chunk=${chunk} state=${withState}`);
    }
  }
});

test("the recurrent step, token by token, equals the sequential form", () => {
  const [B, T, H, G, Dk, Dv] = [2, 6, 4, 2, 3, 3];
  const x = inputs(B, T, H, G, Dk, Dv);
  const [q, k, v, g, beta] = [x.q, x.k, x.v, x.g, x.beta].map((t) => t.handle as Float64Array);
  const want = new Float64Array(B * T * H * Dv);
  deltanetSequentialForward(want, null, q, k, v, g, beta, null, dims(B, T, H, G, Dk, Dv, 1));
  const state = fromArray(ref64, new Float64Array(B * H * Dk * Dv), [B, H, Dk, Dv]);
  const slice = (t: Tensor, i: number) => {
    const [, TT, ...rest] = t.shape;
    const per = rest.reduce((a, b) => a * b, 1);
    const src = t.handle as Float64Array;
    const out = new Float64Array(B * per);
    for (let b = 0; b < B; b++) out.set(src.subarray((b * TT + i) * per, (b * TT + i + 1) * per), b * per);
    return fromArray(ref64, out, [B, 1, ...rest]);
  };
  noGrad(() =>
    tidy(() => {
      for (let t = 0; t < T; t++) {
        const o = toArraySync(ops.deltaRuleStep(slice(x.q, t), slice(x.k, t), slice(x.v, t), slice(x.g, t), slice(x.beta, t), state, 1 / Math.sqrt(Dk)));
        for (let b = 0; b < B; b++) {
          const per = H * Dv;
          assert.ok(maxAbsDiff(o.subarray(b * per, (b + 1) * per), want.subarray((b * T + t) * per, (b * T + t + 1) * per)) < 1e-12, `t=${t}`);
        }
      }
    }),
  );
});
