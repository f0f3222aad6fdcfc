/** WGSL mixture-of-experts kernels against ref on SwiftShader: torch's top-k tie order, grouping, grouped matmuls, combine, load balancing. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { refKernels } from "../src/backend/ref/index.js";
import { Rng } from "../src/util/rng.js";
import { gpuBackend, compareKernel, input, output, randArray } from "./webgpu_helpers.js";

const rng = new Rng(51);

/** Logits with exact ties: a few distinct levels (and whole rows equal, as a zero router gives). */
function tiedLogits(N: number, E: number): Float32Array {
  return Float32Array.from({ length: N * E }, (_, i) => (Math.floor(i / E) % 3 === 0 ? 0 : rng.int(0, 3) * 0.5));
}

test("router forward and backward: torch's top-k order on ties, k*64 <= E and not, normalized or not", async () => {
  const be = await gpuBackend();
  for (const [N, E, k] of [[1, 1, 1], [7, 4, 1], [9, 8, 2], [5, 130, 2], [6, 64, 8], [3, 40, 40], [4, 300, 3]]) {
    for (const ties of [false, true]) {
      for (const normalize of [false, true]) {
        const logits = ties ? tiedLogits(N, E) : randArray(N * E, rng);
        const errs = await compareKernel(be, "moeRouterForward", [
          output(randArray(N * k, rng)), output(new Int32Array(N * k), "i32", true), output(randArray(N * E, rng)), input(logits), N, E, k, normalize,
        ]);
        assert.ok(errs[0] < 1e-6 && errs[1] === 0 && errs[2] < 1e-6, `router ${[N, E, k]} ties ${ties}: ${errs}`);
        const w = new Float32Array(N * k);
        const idx = new Int32Array(N * k);
        const probs = new Float32Array(N * E);
        refKernels.moeRouterForward(w, idx, probs, logits, N, E, k, normalize);
        for (const [dw, dp] of [[true, true], [true, false], [false, true]]) {
          const [e] = await compareKernel(be, "moeRouterBackward", [
            output(randArray(N * E, rng)), dw ? input(randArray(N * k, rng)) : null, dp ? input(randArray(N * E, rng)) : null, input(probs), input(idx, "i32"), N, E, k, normalize,
          ]);
          assert.ok(e < 1e-5, `router bwd ${[N, E, k]}: ${e}`);
        }
      }
    }
  }
});

test("grouping, gather, grouped matmuls, combine, row scale and load balancing", async () => {
  const be = await gpuBackend();
  for (const [N, E, k, C, Nout] of [[1, 1, 1, 1, 1], [9, 4, 2, 5, 3], [300, 6, 2, 7, 4], [40, 8, 3, 33, 17]]) {
    const idx = new Int32Array(N * k);
    for (let n = 0; n < N; n++) {
      const perm = Array.from({ length: E }, (_, e) => e).sort(() => rng.uniform() - 0.5);
      for (let s = 0; s < k; s++) idx[n * k + s] = perm[s];
    }
    if (E > 2) idx.fill(1, 0, Math.min(k, idx.length)); // an expert with many rows, some with none
    const errsG = await compareKernel(be, "moeGroup", [output(new Int32Array(N * k), "i32", true), output(new Int32Array(E + 1), "i32", true), input(idx, "i32"), N, E, k]);
    assert.deepEqual(errsG, [0, 0], `group ${[N, E, k]}`);
    const pos = new Int32Array(N * k);
    const offsets = new Int32Array(E + 1);
    refKernels.moeGroup(pos, offsets, idx, N, E, k);
    const M = N * k;
    const [eg] = await compareKernel(be, "moeGatherForward", [output(randArray(M * C, rng)), input(randArray(N * C, rng)), input(pos, "i32"), N, k, C]);
    const [egb] = await compareKernel(be, "moeGatherBackward", [output(randArray(N * C, rng)), input(randArray(M * C, rng)), input(pos, "i32"), N, k, C]);
    assert.ok(eg === 0 && egb < 1e-6, `gather ${eg} ${egb}`);
    const d = { E, M, N: Nout, K: C };
    const x = randArray(M * C, rng);
    const w = randArray(E * Nout * C, rng);
    const [em] = await compareKernel(be, "moeGroupedMatmulForward", [output(randArray(M * Nout, rng)), input(x), input(w), input(offsets, "i32"), d]);
    assert.ok(em < 1e-6, `grouped matmul ${em}`);
    for (const [wantDx, wantDw] of [[true, true], [true, false], [false, true]]) {
      const errs = await compareKernel(be, "moeGroupedMatmulBackward", [
        wantDx ? output(randArray(M * C, rng)) : null, wantDw ? output(randArray(E * Nout * C, rng)) : null, input(randArray(M * Nout, rng)), input(x), input(w), input(offsets, "i32"), d,
      ]);
      assert.ok(Math.max(...errs) < 1e-6, `grouped matmul bwd ${errs}`);
    }
    const ys = randArray(M * C, rng);
    const wts = randArray(N * k, rng);
    const [ec] = await compareKernel(be, "moeCombineForward", [output(randArray(N * C, rng)), input(ys), input(wts), input(pos, "i32"), N, k, C]);
    const errsCb = await compareKernel(be, "moeCombineBackward", [output(randArray(M * C, rng)), output(randArray(N * k, rng)), input(randArray(N * C, rng)), input(ys), input(wts), input(pos, "i32"), N, k, C]);
    assert.ok(ec < 1e-6 && Math.max(...errsCb) < 1e-6, `combine ${ec} ${errsCb}`);
    const s = randArray(N, rng);
    const [er] = await compareKernel(be, "rowScaleForward", [output(randArray(N * C, rng)), input(ys.subarray(0, N * C)), input(s), N, C]);
    const errsRb = await compareKernel(be, "rowScaleBackward", [output(randArray(N * C, rng)), output(randArray(N, rng)), input(randArray(N * C, rng)), input(ys.subarray(0, N * C)), input(s), N, C]);
    assert.ok(er < 1e-6 && Math.max(...errsRb) < 1e-6, `row scale ${er} ${errsRb}`);
    const probs = Float32Array.from(randArray(N * E, rng), Math.abs);
    const [el] = await compareKernel(be, "moeLoadBalancingForward", [output(new Float32Array(1)), input(probs), input(idx, "i32"), N, E, k]);
    const [elb] = await compareKernel(be, "moeLoadBalancingBackward", [output(randArray(N * E, rng)), input(Float32Array.of(0.7)), input(idx, "i32"), N, E, k]);
    assert.ok(el < 1e-6 && elb < 1e-6, `load balancing ${el} ${elb}`);
  }
});
