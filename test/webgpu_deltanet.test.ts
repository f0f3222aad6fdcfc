/** WGSL Gated DeltaNet kernels against ref on SwiftShader: l2norm, conv, the delta rule (ragged chunks, key-head sharing, states). */
import { test } from "node:test";
import assert from "node:assert/strict";
import { refKernels } from "../src/backend/ref/index.js";
import { Rng } from "../src/util/rng.js";
import { gpuBackend, compareKernel, input, output, randArray } from "./webgpu_helpers.js";

const rng = new Rng(41);

function uniformArray(n: number, lo: number, hi: number): Float32Array {
  return Float32Array.from({ length: n }, () => lo + (hi - lo) * rng.uniform());
}

test("l2norm forward and backward", async () => {
  const be = await gpuBackend();
  for (const [rows, C] of [[1, 3], [5, 33], [70, 128]]) {
    const x = randArray(rows * C, rng);
    const [eo, er] = await compareKernel(be, "l2normForward", [output(randArray(rows * C, rng)), output(randArray(rows, rng)), input(x), rows, C, 1e-6]);
    assert.ok(eo < 1e-6 && er < 1e-6, `l2norm fwd ${rows}x${C}: ${eo} ${er}`);
    const rn = new Float32Array(rows);
    refKernels.l2normForward(new Float32Array(rows * C), rn, x, rows, C, 1e-6);
    const [ed] = await compareKernel(be, "l2normBackward", [output(randArray(rows * C, rng)), input(randArray(rows * C, rng)), input(x), input(rn), rows, C]);
    assert.ok(ed < 1e-5, `l2norm bwd ${rows}x${C}: ${ed}`);
  }
});

test("deltanet conv forward and backward, window on and off", async () => {
  const be = await gpuBackend();
  // (the last two: the filter gradient's runs of rows cross sequences, and grow past 16 rows)
  for (const [B, T, D, W] of [[1, 1, 1, 1], [2, 7, 5, 4], [1, 2, 40, 3], [3, 37, 70, 4], [2, 2100, 3, 3]]) {
    for (const withWin of [false, true]) {
      const d = { B, T, D, W };
      const x = randArray(B * T * D, rng);
      const w = randArray(D * W, rng);
      const win = withWin ? input(randArray(B * (W - 1) * D, rng)) : null;
      const errs = await compareKernel(be, "deltanetConvForward", [output(randArray(B * T * D, rng)), output(randArray(B * (W - 1) * D, rng)), input(x), input(w), win, d]);
      assert.ok(Math.max(...errs) < 1e-6, `conv fwd ${[B, T, D, W]}: ${errs}`);
      const errsB = await compareKernel(be, "deltanetConvBackward", [output(randArray(B * T * D, rng)), output(randArray(D * W, rng)), input(randArray(B * T * D, rng)), input(x), input(w), win, d]);
      assert.ok(Math.max(...errsB) < 1e-5, `conv bwd ${[B, T, D, W]}: ${errsB}`);
    }
  }
});

test("delta rule forward, backward and step: ragged chunks, key heads shared, states on and off", async () => {
  const be = await gpuBackend();
  for (const [B, T, H, G, Dk, Dv, chunk] of [[1, 1, 1, 1, 1, 1, 1], [2, 9, 4, 2, 3, 5, 4], [1, 21, 2, 1, 16, 8, 8], [1, 6, 2, 2, 8, 32, 64]]) {
    for (const withState of [false, true]) {
      const d = { B, T, H, G, Dk, Dv, scale: 1 / Math.sqrt(Dk), chunk };
      const nq = B * T * G * Dk;
      const unit = (n: number) => {
        const a = randArray(n, rng);
        for (let i = 0; i < n; i += Dk) {
          let s = 0;
          for (let j = 0; j < Dk; j++) s += a[i + j] ** 2;
          for (let j = 0; j < Dk; j++) a[i + j] /= Math.sqrt(s);
        }
        return a;
      };
      const q = unit(nq);
      const k = unit(nq);
      const v = randArray(B * T * H * Dv, rng);
      const g = uniformArray(B * T * H, -1, -0.01);
      const beta = uniformArray(B * T * H, 0.1, 0.9);
      const S = B * H * Dk * Dv;
      const s0 = withState ? randArray(S, rng) : null;
      const K = Math.ceil(T / chunk);
      const errs = await compareKernel(be, "deltanetForward", [
        output(randArray(B * T * H * Dv, rng)), output(randArray(S, rng)), output(randArray(K * S, rng)), input(q), input(k), input(v), input(g), input(beta), s0 && input(s0), d,
      ]);
      assert.ok(Math.max(...errs) < 1e-5, `delta fwd ${[B, T, H, G, Dk, Dv, chunk]}: ${errs}`);
      const cs = new Float32Array(K * S);
      refKernels.deltanetForward(new Float32Array(B * T * H * Dv), null, cs, q, k, v, g, beta, s0, d);
      const errsB = await compareKernel(be, "deltanetBackward", [
        output(randArray(nq, rng)), output(randArray(nq, rng)), output(randArray(B * T * H * Dv, rng)), output(randArray(B * T * H, rng)), output(randArray(B * T * H, rng)),
        input(randArray(B * T * H * Dv, rng)), input(q), input(k), input(v), input(g), input(beta), input(cs), d,
      ]);
      assert.ok(Math.max(...errsB) < 1e-4, `delta bwd ${[B, T, H, G, Dk, Dv, chunk]}: ${errsB}`);
      const one = { ...d, T: 1 };
      const errsS = await compareKernel(be, "deltanetStep", [
        output(randArray(B * H * Dv, rng)), output(randArray(S, rng)), input(unit(B * G * Dk)), input(unit(B * G * Dk)), input(randArray(B * H * Dv, rng)),
        input(uniformArray(B * H, -1, -0.01)), input(uniformArray(B * H, 0.1, 0.9)), one,
      ]);
      assert.ok(Math.max(...errsS) < 1e-5, `delta step ${[B, H, Dk, Dv]}: ${errsS}`);
    }
  }
});
