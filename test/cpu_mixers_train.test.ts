/**
 * The cpu backend's optimizer kernels against their reference twins: AdamW on ragged lengths
 * with weight decay, gradient scaling and bias correction, and the sum of squares (including its
 * NaN / Inf propagation) identical bit for bit on every thread count.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { refKernels as ref } from "../src/backend/ref/index.js";
import type { AdamwHyper } from "../src/backend/kernels_train.js";
import { RAGGED } from "./helpers.js";
import { Rng } from "../src/util/rng.js";
import { cpuBackends, close } from "./cpu_helpers.js";
import { moveTo } from "./cpu_mixer_helpers.js";

const cpus = cpuBackends();
const rng = new Rng(9);
const SIZES = [...RAGGED, 4095, 4096, 4097, 70000];

function normal(n: number, std = 1): Float32Array {
  return Float32Array.from({ length: n }, () => std * rng.normal());
}

describe("cpu optimizer kernels", () => {
  test("adamwStep vs ref: ragged sizes, several steps, weight decay and gradient scale", () => {
    for (const n of SIZES) {
      const p0 = normal(n);
      const grads = [normal(n), normal(n, 1e-3), normal(n, 10)];
      for (const { be, label } of cpus) {
        const [p, m, v] = [moveTo(be, p0), moveTo(be, new Float32Array(n)), moveTo(be, new Float32Array(n))];
        const [wp, wm, wv] = [p0.slice(), new Float32Array(n), new Float32Array(n)];
        grads.forEach((g, i) => {
          const h: AdamwHyper = { lr: 1e-3 * (i + 1), beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, step: i + 1, gradScale: i === 1 ? 0.5 : 1 };
          be.kernels.adamwStep(p, m, v, moveTo(be, g), n, h);
          ref.adamwStep(wp, wm, wv, g, n, h);
        });
        close(p, wp, 1e-6, `${label} n=${n} param`);
        close(m, wm, 1e-6, `${label} n=${n} m`);
        close(v, wv, 1e-6, `${label} n=${n} v`);
      }
    }
  });

  test("sumSquares vs ref, the same bits on every thread count, NaN and Inf propagate", () => {
    for (const n of [0, ...SIZES]) {
      const x = normal(n, 3);
      const want = new Float32Array(3);
      ref.sumSquares(want, x, n, 1);
      let first: number | null = null;
      for (const { be, label } of cpus) {
        const out = moveTo(be, new Float32Array(3).fill(7));
        be.kernels.sumSquares(out, moveTo(be, x), n, 1);
        assert.equal(out[0], 7);
        assert.equal(out[2], 7);
        close([out[1]], [want[1]], 1e-7, `${label} n=${n}`);
        if (first === null) first = out[1];
        else assert.equal(out[1], first, `${label} n=${n}: differs from 1 thread`);
      }
    }
    for (const bad of [NaN, Infinity]) {
      const x = normal(9000);
      x[8191] = bad;
      for (const { be } of cpus) {
        const out = moveTo(be, new Float32Array(1));
        be.kernels.sumSquares(out, moveTo(be, x), x.length, 0);
        if (Number.isNaN(bad)) assert.ok(Number.isNaN(out[0]));
        else assert.equal(out[0], Infinity);
      }
    }
  });
});
