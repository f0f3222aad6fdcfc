/**
 * RWKV kernels and ops: WKV-4 against its closed form (also at keys far beyond exp's range in
 * float32), WKV-7 against explicit matrix products, step == sequence, split sequences through
 * the carried state, chunked backward == per-step backward, and float64 finite-difference
 * gradients of every op, including the gradient through initial and final states.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as ops from "../src/ops/index.js";
import { fromArray } from "../src/backend/alloc.js";
import { backward, noGrad } from "../src/autograd/tape.js";
import { tidy } from "../src/tensor/scope.js";
import type { Tensor } from "../src/tensor/tensor.js";
import { Rng } from "../src/util/rng.js";
import { gradcheck, maxAbsDiff, randn, ref64, relErr, uniform, values } from "./helpers.js";

const sharedRng = new Rng(2024);
const rng = sharedRng;
const TOL = 1e-6;

/** Concatenate flattened outputs so one gradcheck covers all of them. */
function flat(...ts: Tensor[]): Tensor {
  return ops.concat(ts.map((t) => t.reshape([1, t.size])));
}

// ---------------------------------------------------------------- WKV-4

interface Wkv4Inputs {
  w: Tensor; // (D) log decay < 0
  u: Tensor; // (D)
  k: Tensor; // (B, T, D)
  v: Tensor;
  state0: Tensor; // (B, 3, D)
}

function wkv4Inputs(B: number, T: number, D: number, kStd = 1, grad = false): Wkv4Inputs {
  const w = uniform(ref64, [D], rng, -1.5, -0.05, grad);
  const u = randn(ref64, [D], rng, 1, grad);
  const k = randn(ref64, [B, T, D], rng, kStd, grad);
  const v = randn(ref64, [B, T, D], rng, 1, grad);
  const s = new Float64Array(B * 3 * D);
  for (let b = 0; b < B; b++) {
    for (let c = 0; c < D; c++) {
      s[b * 3 * D + c] = rng.normal();
      s[b * 3 * D + D + c] = 0.5 + rng.uniform();
      s[b * 3 * D + 2 * D + c] = rng.normal();
    }
  }
  const state0 = fromArray(ref64, s, [B, 3, D]);
  state0.requiresGrad = grad;
  return { w, u, k, v, state0 };
}

/** The WKV-4 closed form with real exponentials (valid in float64 while exponents stay < ~700). */
function wkv4Closed(x: Wkv4Inputs, B: number, T: number, D: number, withState: boolean): Float64Array {
  const [w, u, k, v, s] = [x.w, x.u, x.k, x.v, x.state0].map(values);
  const y = new Float64Array(B * T * D);
  for (let b = 0; b < B; b++) {
    for (let c = 0; c < D; c++) {
      const A0 = withState ? s[b * 3 * D + c] * Math.exp(s[b * 3 * D + 2 * D + c]) : 0;
      const B0 = withState ? s[b * 3 * D + D + c] * Math.exp(s[b * 3 * D + 2 * D + c]) : 0;
      for (let t = 0; t < T; t++) {
        let num = Math.exp(t * w[c]) * A0;
        let den = Math.exp(t * w[c]) * B0;
        for (let i = 0; i < t; i++) {
          const e = Math.exp((t - 1 - i) * w[c] + k[(b * T + i) * D + c]);
          num += e * v[(b * T + i) * D + c];
          den += e;
        }
        const e = Math.exp(u[c] + k[(b * T + t) * D + c]);
        y[(b * T + t) * D + c] = (num + e * v[(b * T + t) * D + c]) / (den + e);
      }
    }
  }
  return y;
}

test("wkv4 forward equals the closed form, from the empty state and from a given one, also with huge keys", () => {
  for (const [T, kStd] of [
    [1, 1],
    [7, 1],
    [33, 1],
    [40, 60], // exponents up to ~200: overflow float32 without the max tracking
  ]) {
    const B = 2;
    const D = 5;
    const x = wkv4Inputs(B, T, D, kStd);
    for (const withState of [false, true]) {
      const { y } = ops.wkv4(x.w, x.u, x.k, x.v, withState ? x.state0 : null);
      const err = relErr(values(y), wkv4Closed(x, B, T, D, withState));
      assert.ok(err < 1e-12, `T=${T} kStd=${kStd} state=${withState}: ${err}`);
    }
  }
});

test("wkv4: step by step == whole sequence == two segments through the carried state", () => {
  const [B, T, D] = [2, 9, 4];
  const x = wkv4Inputs(B, T, D, 3);
  const whole = ops.wkv4(x.w, x.u, x.k, x.v, x.state0);
  // steps
  const state = ops.copy(x.state0);
  const kv = [values(x.k), values(x.v)];
  const ySteps = new Float64Array(B * T * D);
  for (let t = 0; t < T; t++) {
    const pick = (a: Float64Array) => fromArray(ref64, Float64Array.from({ length: B * D }, (_, i) => a[(Math.floor(i / D) * T + t) * D + (i % D)]), [B, D]);
    const yt = values(ops.wkv4Step(x.w, x.u, pick(kv[0]), pick(kv[1]), state));
    for (let i = 0; i < B * D; i++) ySteps[(Math.floor(i / D) * T + t) * D + (i % D)] = yt[i];
  }
  assert.ok(maxAbsDiff(ySteps, values(whole.y)) < 1e-12);
  assert.ok(maxAbsDiff(values(state), values(whole.state)) < 1e-9);
  // segments of 4 and 5
  const [k1, k2] = splitTime(x.k, 4);
  const [v1, v2] = splitTime(x.v, 4);
  const first = ops.wkv4(x.w, x.u, k1, v1, x.state0);
  const second = ops.wkv4(x.w, x.u, k2, v2, first.state);
  assert.ok(maxAbsDiff(joinTime(first.y, second.y), values(whole.y)) < 1e-12);
});

test("wkv4 gradients (w, u, k, v, initial state) through outputs and the final state, incl. its max exponent", () => {
  for (const [T, max0] of [
    [1, 0],
    [6, 0],
    [5, 8], // a large initial exponent that no key overtakes: the max path runs back to state0
  ]) {
    const x = wkv4Inputs(2, T, 3, 1.5, true);
    if (max0) {
      const s = x.state0.handle as Float64Array;
      for (let b = 0; b < 2; b++) for (let c = 0; c < 3; c++) s[b * 9 + 6 + c] = max0;
      (x.w.handle as Float64Array).fill(-0.1);
      // no key overtakes the decayed initial exponent: max_T = max_0 + T w
      const maxT = values(ops.wkv4(x.w, x.u, x.k, x.v, x.state0).state).filter((_, i) => Math.floor(i / 3) % 3 === 2);
      assert.ok(maxT.every((m) => Math.abs(m - (max0 - 0.1 * T)) < 1e-12));
    }
    const err = gradcheck(([w, u, k, v, s0]) => {
      const r = ops.wkv4(w, u, k, v, s0);
      return flat(r.y, r.state);
    }, [x.w, x.u, x.k, x.v, x.state0]);
    assert.ok(err < TOL, `T=${T} max0=${max0}: ${err}`);
  }
  // from the empty state, the state chained into a second segment
  const x = wkv4Inputs(1, 7, 4, 2, true);
  const err = gradcheck(([w, u, k, v]) => {
    const [k1, k2] = splitTime(k, 3);
    const [v1, v2] = splitTime(v, 3);
    const a = ops.wkv4(w, u, k1, v1);
    const b = ops.wkv4(w, u, k2, v2, a.state);
    return flat(a.y, b.y);
  }, [x.w, x.u, x.k, x.v]);
  assert.ok(err < TOL, `chained: ${err}`);
});

// ---------------------------------------------------------------- WKV-7

function wkv7Inputs(B: number, T: number, H: number, N: number, grad = false, rng = sharedRng): Tensor[] {
  const shape = [B, T, H, N];
  const r = randn(ref64, shape, rng, 1, grad);
  const w = uniform(ref64, shape, rng, 0.55, 0.99, grad);
  const k = randn(ref64, shape, rng, 0.5, grad);
  const v = randn(ref64, shape, rng, 1, grad);
  const a = randn(ref64, shape, rng, 0.3, grad);
  const b = randn(ref64, shape, rng, 0.3, grad);
  const s0 = randn(ref64, [B, H, N, N], rng, 0.5, grad);
  return [r, w, k, v, a, b, s0];
}

/** S_t = S diag(w) + (S a) b^T + v k^T, y = S_t r, written with explicit matrices. */
function wkv7Explicit(inputs: Tensor[], B: number, T: number, H: number, N: number): { y: Float64Array; S: Float64Array } {
  const [r, w, k, v, a, b, s0] = inputs.map(values);
  const y = new Float64Array(B * T * H * N);
  const S = Float64Array.from(s0);
  for (let bi = 0; bi < B; bi++) {
    for (let h = 0; h < H; h++) {
      const M = (i: number, j: number) => ((bi * H + h) * N + i) * N + j;
      for (let t = 0; t < T; t++) {
        const at = (x: Float64Array, i: number) => x[((bi * T + t) * H + h) * N + i];
        const old = Float64Array.from({ length: N * N }, (_, ij) => S[M(Math.floor(ij / N), ij % N)]);
        for (let i = 0; i < N; i++) {
          for (let j = 0; j < N; j++) {
            let Sa = 0;
            for (let l = 0; l < N; l++) Sa += old[i * N + l] * at(a, l);
            S[M(i, j)] = old[i * N + j] * at(w, j) + Sa * at(b, j) + at(v, i) * at(k, j);
          }
        }
        for (let i = 0; i < N; i++) {
          let s = 0;
          for (let j = 0; j < N; j++) s += S[M(i, j)] * at(r, j);
          y[((bi * T + t) * H + h) * N + i] = s;
        }
      }
    }
  }
  return { y, S };
}

test("wkv7 forward equals explicit matrix products; steps and split segments agree", () => {
  const [B, T, H, N] = [2, 11, 3, 4];
  const x = wkv7Inputs(B, T, H, N);
  const whole = ops.wkv7(x[0], x[1], x[2], x[3], x[4], x[5], x[6]);
  const want = wkv7Explicit(x, B, T, H, N);
  assert.ok(relErr(values(whole.y), want.y) < 1e-12);
  assert.ok(relErr(values(whole.state), want.S) < 1e-12);
  // one step at a time
  const state = ops.copy(x[6]);
  const ys: Float64Array[] = [];
  for (let t = 0; t < T; t++) {
    const step = x.slice(0, 6).map((z) => fromArray(ref64, sliceTime(values(z), B, T, H * N, t), [B, H, N]));
    ys.push(values(noGrad(() => ops.wkv7Step(step[0], step[1], step[2], step[3], step[4], step[5], state))));
  }
  const yWhole = values(whole.y);
  for (let t = 0; t < T; t++) assert.ok(maxAbsDiff(ys[t], sliceTime(yWhole, B, T, H * N, t)) < 1e-12, `step ${t}`);
  assert.ok(maxAbsDiff(values(state), values(whole.state)) < 1e-12);
  // segments of 5 and 6
  const parts = x.slice(0, 6).map((z) => splitTime(z, 5));
  const first = ops.wkv7(...(parts.map((p) => p[0]) as [Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]), x[6]);
  const second = ops.wkv7(...(parts.map((p) => p[1]) as [Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]), first.state);
  assert.ok(maxAbsDiff(joinTime(first.y, second.y), yWhole) < 1e-12);
});

test("wkv7 chunked backward (checkpoints every c steps) equals the per-step backward for every c", () => {
  const [B, T, H, N] = [2, 13, 2, 3];
  const grads = (chunk: number): Float64Array[] =>
    tidy(() => {
      const x = wkv7Inputs(B, T, H, N, true, new Rng(77));
      const r = ops.wkv7(x[0], x[1], x[2], x[3], x[4], x[5], x[6], { chunk });
      const out = flat(r.y, r.state);
      const seed = fromArray(ref64, Float64Array.from({ length: out.size }, (_, i) => Math.sin(i)), out.shape);
      backward(out, seed);
      return x.map((t) => values(t.grad!));
    });
  const sequential = grads(1); // every state kept: nothing recomputed
  for (const chunk of [2, 3, 5, 13, 40]) {
    const chunked = grads(chunk);
    chunked.forEach((g, i) => assert.ok(relErr(g, sequential[i]) < 1e-12, `chunk ${chunk}, input ${i}`));
  }
});

test("wkv7 gradients (r, w, k, v, a, b, initial state) through outputs and final state", () => {
  for (const [T, chunk] of [
    [1, 4],
    [7, 3],
  ]) {
    const x = wkv7Inputs(2, T, 2, 3, true);
    const err = gradcheck(([r, w, k, v, a, b, s0]) => {
      const o = ops.wkv7(r, w, k, v, a, b, s0, { chunk });
      return flat(o.y, o.state);
    }, x);
    assert.ok(err < TOL, `T=${T} chunk=${chunk}: ${err}`);
  }
});

// ---------------------------------------------------------------- small ops

test("token shift (zeros or a carried input at t = 0) and its gradient", () => {
  const x = randn(ref64, [2, 4, 3], rng, 1, true);
  const prev = randn(ref64, [2, 3], rng, 1, true);
  const y = values(ops.tokenShift(x, prev));
  const xv = values(x);
  assert.deepEqual(Array.from(y.slice(0, 3)), Array.from(values(prev).slice(0, 3)));
  assert.deepEqual(Array.from(y.slice(3, 6)), Array.from(xv.slice(0, 3)));
  assert.deepEqual(Array.from(values(ops.tokenShift(x)).slice(12, 15)), [0, 0, 0]);
  assert.ok(gradcheck(([x, p]) => ops.tokenShift(x, p), [x, prev]) < TOL);
  assert.ok(gradcheck(([x]) => ops.tokenShift(x), [x]) < TOL);
  const one = randn(ref64, [2, 1, 3], rng, 1, true);
  assert.ok(gradcheck(([x, p]) => ops.tokenShift(x, p), [one, prev]) < TOL);
});

test("group norm, per-group L2 normalisation, group sums and repeats", () => {
  const x = randn(ref64, [2, 3, 8], rng, 2, true);
  const w = randn(ref64, [8], rng, 1, true);
  const b = randn(ref64, [8], rng, 1, true);
  assert.ok(gradcheck(([x, w, b]) => ops.groupNorm(x, w, b, 4, 64e-5), [x, w, b]) < TOL);
  assert.ok(gradcheck(([x]) => ops.l2normalize(x, 4), [x]) < TOL);
  const n = values(ops.l2normalize(x, 4));
  for (let g = 0; g < 12; g++) {
    let s = 0;
    for (let i = 0; i < 4; i++) s += n[g * 4 + i] ** 2;
    assert.ok(Math.abs(s - 1) < 1e-12);
  }
  assert.ok(gradcheck(([x]) => ops.groupSum(x, 2), [x]) < TOL);
  const s = randn(ref64, [2, 3, 4], rng, 1, true);
  assert.ok(gradcheck(([s]) => ops.groupRepeat(s, 3), [s]) < TOL);
  assert.deepEqual(Array.from(values(ops.groupRepeat(fromArray(ref64, [1, 2], [1, 2]), 2))), [1, 1, 2, 2]);
});

// ---------------------------------------------------------------- helpers

/** Split (B, T, ...) at time t into two tensors (differentiable: through concat/split on a view). */
function splitTime(x: Tensor, t: number): [Tensor, Tensor] {
  const [B, T] = x.shape;
  const rest = x.size / (B * T);
  const [a, b] = ops.split(x.reshape([B, T * rest]), [t * rest, (T - t) * rest]);
  return [a.reshape([B, t, ...x.shape.slice(2)]), b.reshape([B, T - t, ...x.shape.slice(2)])];
}

function joinTime(a: Tensor, b: Tensor): Float64Array {
  const B = a.shape[0];
  return values(ops.concat([a.reshape([B, -1]), b.reshape([B, -1])]));
}

function sliceTime(x: Float64Array, B: number, T: number, row: number, t: number): Float64Array {
  const out = new Float64Array(B * row);
  for (let b = 0; b < B; b++) out.set(x.subarray((b * T + t) * row, (b * T + t + 1) * row), b * row);
  return out;
}
