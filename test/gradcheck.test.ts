/** Every backward rule against central finite differences in float64 on tiny sizes. */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as ops from "../src/ops/index.js";
import { fromArray } from "../src/backend/alloc.js";
import { Rng } from "../src/util/rng.js";
import { gradcheck, randn, ref64, uniform } from "./helpers.js";
import type { UnaryOp } from "../src/backend/kernels.js";

const TOL = 1e-6;
const rng = new Rng(7);

test("linear (with and without bias) and the (in, out) Conv1D layout", () => {
  for (const bias of [true, false]) {
    const x = randn(ref64, [2, 3, 5], rng, 1, true);
    const W = randn(ref64, [4, 5], rng, 1, true);
    const b = bias ? randn(ref64, [4], rng, 1, true) : null;
    assert.ok(gradcheck(([x, W, b]) => ops.linear(x, W, b ?? null), b ? [x, W, b] : [x, W]) < TOL);
    const Wkn = randn(ref64, [5, 4], rng, 1, true);
    assert.ok(gradcheck(([x, W]) => ops.matmulKN(x, W, null), [x, Wkn]) < TOL);
  }
});

test("elementwise binary ops with broadcasting", () => {
  for (const op of ["add", "sub", "mul"] as const) {
    const a = randn(ref64, [3, 4], rng, 1, true);
    const full = randn(ref64, [3, 4], rng, 1, true);
    const row = randn(ref64, [4], rng, 1, true);
    assert.ok(gradcheck(([a, b]) => ops.binary(op, a, b), [a, full]) < TOL, `${op} same shape`);
    assert.ok(gradcheck(([a, b]) => ops.binary(op, a, b), [a, row]) < TOL, `${op} row broadcast`);
  }
  const a = randn(ref64, [2, 3], rng, 1, true);
  assert.ok(gradcheck(([a]) => ops.scale(a, -1.7), [a]) < TOL);
});

test("unary ops", () => {
  const ops_: UnaryOp[] = ["silu", "gelu", "gelu_tanh", "relu", "relu_sq", "sigmoid", "softplus", "exp", "tanh", "neg", "square"];
  for (const op of ops_) {
    // keep away from relu's kink at 0
    const x = uniform(ref64, [17], rng, -3, 3, true);
    const data = x.handle as Float64Array;
    for (let i = 0; i < data.length; i++) if (Math.abs(data[i]) < 0.05) data[i] += 0.2;
    assert.ok(gradcheck(([x]) => ops.unary(op, x), [x]) < TOL, op);
  }
});

test("swiglu", () => {
  const g = randn(ref64, [2, 7], rng, 1, true);
  const u = randn(ref64, [2, 7], rng, 1, true);
  assert.ok(gradcheck(([g, u]) => ops.swiglu(g, u), [g, u]) < TOL);
});

test("rmsnorm (plain and 1 + w) and layernorm (with and without bias)", () => {
  for (const offset of [0, 1]) {
    const x = randn(ref64, [3, 6], rng, 1, true);
    const w = randn(ref64, [6], rng, 1, true);
    assert.ok(gradcheck(([x, w]) => ops.rmsnorm(x, w, 1e-5, offset), [x, w]) < TOL);
  }
  const x = randn(ref64, [3, 6], rng, 1, true);
  const w = randn(ref64, [6], rng, 1, true);
  const b = randn(ref64, [6], rng, 1, true);
  assert.ok(gradcheck(([x, w, b]) => ops.layernorm(x, w, b, 1e-5), [x, w, b]) < TOL);
  assert.ok(gradcheck(([x, w]) => ops.layernorm(x, w, null, 1e-5), [x, w]) < TOL);
});

test("embedding (repeated ids accumulate)", () => {
  const table = randn(ref64, [5, 3], rng, 1, true);
  const ids = fromArray(ref64, [1, 4, 1, 0], [2, 2], "i32");
  assert.ok(gradcheck(([t]) => ops.embedding(ids, t), [table]) < TOL);
});

test("rope (full and partial rotary, offset positions)", () => {
  for (const rotDim of [8, 4]) {
    const x = randn(ref64, [2, 3, 2, 8], rng, 1, true);
    const inv = fromArray(ref64, Float64Array.from({ length: rotDim / 2 }, (_, i) => 1 / 10000 ** ((2 * i) / rotDim)), [rotDim / 2]);
    assert.ok(gradcheck(([x]) => ops.rope(x, inv, { pos0: 5, rotDim, attnScaling: 1.3 }), [x]) < TOL);
  }
});

test("attention, tiled and naive, causal and not, grouped KV heads", () => {
  for (const impl of ["tiled", "naive"] as const) {
    for (const causal of [true, false]) {
      for (const [H, G] of [
        [2, 2],
        [4, 2],
        [3, 1],
      ]) {
        const T = 5;
        const K = 3;
        const q = randn(ref64, [2, T, H, K], rng, 1, true);
        const k = randn(ref64, [2, T, G, K], rng, 1, true);
        const v = randn(ref64, [2, T, G, K], rng, 1, true);
        const err = gradcheck(([q, k, v]) => ops.attention(q, k, v, { impl, causal }), [q, k, v]);
        assert.ok(err < TOL, `${impl} causal=${causal} H=${H} G=${G}: ${err}`);
      }
    }
  }
});

test("cross-entropy with ignored targets", () => {
  const logits = randn(ref64, [2, 3, 7], rng, 2, true);
  const targets = fromArray(ref64, [3, -100, 0, 6, 2, -100], [6], "i32");
  assert.ok(gradcheck(([l]) => ops.crossEntropy(l, targets), [logits]) < TOL);
});

test("split and concat along the last dim, and reshape views", () => {
  const x = randn(ref64, [2, 3, 7], rng, 1, true);
  assert.ok(gradcheck(([x]) => ops.concat(ops.split(x, [2, 4, 1]).reverse()), [x]) < TOL);
  assert.ok(gradcheck(([x]) => ops.split(x, [3, 4])[1].reshape([6, 4]), [x]) < TOL);
  // an output of a split that is not used gets no gradient, which must not break the others
  assert.ok(gradcheck(([x]) => ops.mul(ops.split(x, [2, 5])[0], ops.split(x, [2, 5])[0]), [x]) < TOL);
});
