/**
 * The cpu backend's mixture-of-experts kernels against their reference twins: the router with
 * torch's top-k tie order (exact ties from equal logits, both of torch's selection paths), the
 * grouping, gather / combine with each gradient output on and off, grouped matmuls with experts
 * that get no rows, the per-row gate and the load-balancing loss; on 1, 2 and 3 threads.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { refKernels as ref } from "../src/backend/ref/index.js";
import { Rng } from "../src/util/rng.js";
import { cpuBackends, close } from "./cpu_helpers.js";
import { compare, moveTo } from "./cpu_mixer_helpers.js";

const cpus = cpuBackends();
const rng = new Rng(13);

function normal(n: number, std = 1): Float32Array {
  return Float32Array.from({ length: n }, () => std * rng.normal());
}

/** Router logits with exact ties: some rows constant, some with repeated values. */
function tiedLogits(N: number, E: number): Float32Array {
  const l = normal(N * E);
  for (let n = 0; n < N; n++) {
    if (n % 3 === 0) l.fill(0, n * E, (n + 1) * E);
    if (n % 3 === 1) for (let e = 0; e < E; e++) l[n * E + e] = Math.round(l[n * E + e]);
  }
  return l;
}

/** Expert choices (N, k), distinct per token, with expert 0 never chosen when E > k (an empty group). */
function choices(N: number, E: number, k: number): Int32Array {
  const out = new Int32Array(N * k);
  const first = E > k ? 1 : 0;
  for (let n = 0; n < N; n++) {
    const pool = Array.from({ length: E - first }, (_, i) => i + first);
    for (let s = 0; s < k; s++) out[n * k + s] = pool.splice(rng.int(0, pool.length), 1)[0];
  }
  return out;
}

describe("cpu MoE", () => {
  test("router forward and backward vs ref: torch's tie order on both top-k paths, normalised or not", () => {
    for (const [N, E, k] of [[1, 1, 1], [5, 3, 2], [33, 4, 2], [31, 8, 1], [7, 64, 1], [9, 65, 2], [5, 130, 2], [3, 16, 16]]) {
      for (const normalize of [true, false]) {
        const logits = tiedLogits(N, E);
        const wantW = new Float32Array(N * k);
        const wantI = new Int32Array(N * k);
        const wantP = new Float32Array(N * E);
        ref.moeRouterForward(wantW, wantI, wantP, logits, N, E, k, normalize);
        const dw = normal(N * k);
        const dp = normal(N * E);
        for (const { be, label } of cpus) {
          const tag = `${label} N${N} E${E} k${k} normalize=${normalize}`;
          const w = be.allocate("f32", N * k) as Float32Array;
          const idx = be.allocate("i32", N * k) as Int32Array;
          const probs = be.allocate("f32", N * E) as Float32Array;
          be.kernels.moeRouterForward(w, idx, probs, moveTo(be, logits), N, E, k, normalize);
          assert.deepEqual(Array.from(idx), Array.from(wantI), `${tag} indices`);
          close(probs, wantP, 1e-6, `${tag} probs`);
          close(w, wantW, 1e-6, `${tag} weights`);
          for (const [withW, withP] of [[true, true], [true, false], [false, true]]) {
            compare(be, "moeRouterBackward", [N * E], [withW ? moveTo(be, dw) : null, withP ? moveTo(be, dp) : null, moveTo(be, wantP), moveTo(be, wantI), N, E, k, normalize], 1e-6, tag);
          }
        }
      }
    }
  });

  test("grouping, gather, combine, grouped matmuls, row gate and load balancing vs ref", () => {
    for (const [N, E, k, C, F] of [[1, 1, 1, 1, 1], [3, 4, 2, 5, 3], [31, 8, 2, 33, 17], [33, 3, 1, 32, 64], [257, 4, 2, 16, 40]]) {
      const idx = choices(N, E, k);
      const pos = new Int32Array(N * k);
      const offsets = new Int32Array(E + 1);
      ref.moeGroup(pos, offsets, idx, N, E, k);
      const x = normal(N * C);
      const xs = normal(N * k * C);
      const wts = normal(N * k);
      const dout = normal(N * C);
      const W = normal(E * F * C, 0.3);
      const dyF = normal(N * k * F);
      const probs = Float32Array.from(normal(N * E), Math.abs);
      const gate = normal(N);
      for (const { be, label } of cpus) {
        const tag = `${label} N${N} E${E} k${k} C${C} F${F}`;
        const put = <T extends Float32Array | Int32Array>(a: T) => moveTo(be, a);
        const gotPos = be.allocate("i32", N * k) as Int32Array;
        const gotOff = be.allocate("i32", E + 1) as Int32Array;
        be.kernels.moeGroup(gotPos, gotOff, put(idx), N, E, k);
        assert.deepEqual(Array.from(gotPos), Array.from(pos), `${tag} pos`);
        assert.deepEqual(Array.from(gotOff), Array.from(offsets), `${tag} offsets`);
        const [p, off] = [put(pos), put(offsets)];
        compare(be, "moeGatherForward", [N * k * C], [put(x), p, N, k, C], 0, tag);
        compare(be, "moeGatherBackward", [N * C], [put(xs), p, N, k, C], 1e-6, tag);
        compare(be, "moeCombineForward", [N * C], [put(xs), put(wts), p, N, k, C], 1e-6, tag);
        for (const [a, b] of [[true, true], [true, false], [false, true]]) {
          compare(be, "moeCombineBackward", [a ? N * k * C : null, b ? N * k : null], [put(dout), put(xs), put(wts), p, N, k, C], 1e-6, tag);
          compare(be, "rowScaleBackward", [a ? N * C : null, b ? N : null], [put(dout), put(x), put(gate), N, C], 1e-6, tag);
        }
        compare(be, "rowScaleForward", [N * C], [put(x), put(gate), N, C], 0, tag);
        const d = { E, M: N * k, N: F, K: C };
        compare(be, "moeGroupedMatmulForward", [N * k * F], [put(xs), put(W), off, d], 1e-6, tag);
        for (const [a, b] of [[true, true], [false, true], [true, false]]) {
          compare(be, "moeGroupedMatmulBackward", [a ? N * k * C : null, b ? E * F * C : null], [put(dyF), put(xs), put(W), off, d], 1e-6, tag, { floor: 1e-3 });
        }
        compare(be, "moeLoadBalancingForward", [1], [put(probs), put(idx), N, E, k], 1e-6, tag);
        compare(be, "moeLoadBalancingBackward", [N * E], [put(Float32Array.of(0.7)), put(idx), N, E, k], 1e-6, tag);
      }
    }
  });
});
