/** WGSL embeddings, norms, rotary embedding and cross-entropy against ref on SwiftShader. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { Rng } from "../src/util/rng.js";
import { gpuBackend, compareKernel, input, output, randArray } from "./webgpu_helpers.js";

const rng = new Rng(5);

function ids(n: number, V: number, repeat = false): Int32Array {
  return Int32Array.from({ length: n }, () => (repeat ? rng.int(0, Math.min(3, V)) : rng.int(0, V)));
}

test("embedding forward and backward (repeated ids accumulate deterministically)", async () => {
  const be = await gpuBackend();
  for (const [n, C, V] of [[1, 1, 1], [3, 33, 5], [257, 31, 7], [40, 64, 1000]]) {
    for (const repeat of [false, true]) {
      const id = input(ids(n, V, repeat), "i32");
      const [ef] = await compareKernel(be, "embeddingForward", [output(randArray(n * C, rng)), id, input(randArray(V * C, rng)), n, C]);
      assert.equal(ef, 0, `embedding forward n=${n} C=${C}`);
      const [eb] = await compareKernel(be, "embeddingBackward", [output(randArray(V * C, rng)), input(randArray(n * C, rng)), id, n, C]);
      assert.ok(eb < 1e-6, `embedding backward n=${n} C=${C}: ${eb}`);
    }
  }
});

test("rmsnorm forward and backward, offset 0 and 1, rows past one chunk", async () => {
  const be = await gpuBackend();
  for (const [rows, C] of [[1, 5], [3, 33], [31, 255], [300, 64], [2, 1000]]) {
    for (const offset of [0, 1]) {
      const x = randArray(rows * C, rng);
      const w = randArray(C, rng);
      const [eo, er] = await compareKernel(be, "rmsnormForward", [output(randArray(rows * C, rng)), output(randArray(rows, rng)), input(x), input(w), rows, C, 1e-5, offset]);
      assert.ok(eo < 2e-6 && er < 2e-6, `rmsnorm forward ${rows}x${C}: ${eo} ${er}`);
      const rstd = new Float32Array(rows);
      for (let r = 0; r < rows; r++) {
        let ss = 0;
        for (let c = 0; c < C; c++) ss += x[r * C + c] ** 2;
        rstd[r] = 1 / Math.sqrt(ss / C + 1e-5);
      }
      const [edx, edw] = await compareKernel(be, "rmsnormBackward", [
        output(randArray(rows * C, rng)),
        output(randArray(C, rng)),
        input(randArray(rows * C, rng)),
        input(x),
        input(w),
        input(rstd),
        rows,
        C,
        offset,
      ]);
      assert.ok(edx < 2e-6 && edw < 2e-6, `rmsnorm backward ${rows}x${C}: ${edx} ${edw}`);
    }
  }
});

test("layernorm forward and backward, with and without bias", async () => {
  const be = await gpuBackend();
  for (const [rows, C] of [[1, 1], [3, 33], [300, 17], [2, 1000]]) {
    for (const bias of [false, true]) {
      const x = randArray(rows * C, rng);
      const w = randArray(C, rng);
      const b = bias ? input(randArray(C, rng)) : null;
      const errs = await compareKernel(be, "layernormForward", [output(randArray(rows * C, rng)), output(randArray(rows, rng)), output(randArray(rows, rng)), input(x), input(w), b, rows, C, 1e-5]);
      assert.ok(Math.max(...errs) < 2e-6, `layernorm forward ${rows}x${C}: ${errs}`);
      const mean = new Float32Array(rows);
      const rstd = new Float32Array(rows);
      for (let r = 0; r < rows; r++) {
        let mu = 0;
        for (let c = 0; c < C; c++) mu += x[r * C + c] / C;
        let v = 0;
        for (let c = 0; c < C; c++) v += (x[r * C + c] - mu) ** 2 / C;
        mean[r] = mu;
        rstd[r] = 1 / Math.sqrt(v + 1e-5);
      }
      const db = bias ? output(randArray(C, rng)) : null;
      const errsB = await compareKernel(be, "layernormBackward", [
        output(randArray(rows * C, rng)),
        output(randArray(C, rng)),
        db,
        input(randArray(rows * C, rng)),
        input(x),
        input(w),
        input(mean),
        input(rstd),
        rows,
        C,
      ]);
      assert.ok(Math.max(...errsB) < 2e-6, `layernorm backward ${rows}x${C} bias=${bias}: ${errsB}`);
    }
  }
});

test("rope: full and partial rotary, inverse, large positions, attention scaling", async () => {
  const be = await gpuBackend();
  for (const [B, T, H, K, rotDim, pos0] of [[1, 1, 1, 2, 2, 0], [2, 3, 3, 16, 16, 5], [1, 33, 2, 64, 32, 70000], [1, 4, 1, 6, 4, 1]]) {
    for (const inverse of [false, true]) {
      const invFreq = Float32Array.from({ length: rotDim / 2 }, (_, i) => 1 / 10000 ** ((2 * i) / rotDim));
      const n = B * T * H * K;
      const [e] = await compareKernel(be, "ropeForward", [output(randArray(n, rng)), input(randArray(n, rng)), input(invFreq), { B, T, H, K, rotDim, pos0, attnScaling: 1.25, inverse }]);
      assert.ok(e < 2e-6, `rope B${B} T${T} H${H} K${K} rot${rotDim} pos0 ${pos0}: ${e}`);
    }
  }
});

test("cross-entropy forward and backward with ignored rows (-100), and all rows ignored", async () => {
  const be = await gpuBackend();
  for (const [N, V] of [[1, 1], [3, 33], [31, 257], [5, 5000]]) {
    const logits = randArray(N * V, rng, 3);
    const targets = Int32Array.from({ length: N }, (_, i) => (i % 3 === 1 ? -100 : rng.int(0, V)));
    const lse = new Float32Array(N);
    const [eloss, else_] = await compareKernel(be, "crossEntropyForward", [output(new Float32Array(1)), output(lse), input(logits), input(targets, "i32"), N, V]);
    assert.ok(eloss < 2e-6 && else_ < 2e-6, `cross-entropy forward ${N}x${V}: ${eloss} ${else_}`);
    for (let r = 0; r < N; r++) {
      let m = -Infinity;
      for (let j = 0; j < V; j++) m = Math.max(m, logits[r * V + j]);
      let s = 0;
      for (let j = 0; j < V; j++) s += Math.exp(logits[r * V + j] - m);
      lse[r] = m + Math.log(s);
    }
    const [ed] = await compareKernel(be, "crossEntropyBackward", [output(randArray(N * V, rng)), input(Float32Array.of(0.7)), input(logits), input(lse), input(targets, "i32"), N, V]);
    assert.ok(ed < 2e-6, `cross-entropy backward ${N}x${V}: ${ed}`);
  }
  const none = Int32Array.from({ length: 4 }, () => -100);
  const [eloss] = await compareKernel(be, "crossEntropyForward", [output(Float32Array.of(5)), output(new Float32Array(4)), input(randArray(12, rng)), input(none, "i32"), 4, 3]);
  assert.equal(eloss, 0, "no counted rows gives loss 0");
});
