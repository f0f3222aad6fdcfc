/**
 * The scaling section's choice of lengths (nextLength), on simulated costs: the planned lengths,
 * then doublings while a fixed per-forward cost may still bend the fitted slope, within the
 * memory budget, the time per point and the largest length allowed.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { nextLength, type ScalingPoint } from "../src/experiments/scaling.js";
import { logLogSlope } from "../src/experiments/measure.js";

const plan = {
  lengths: [256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536], // the default plan's
  maxLength: 1 << 20,
  fixedCostShare: 0.1,
  minSecondsAtLargest: 0.5,
  memoryBudgetBytes: 2 ** 30,
  secondsPerPoint: 20,
};

/** Run the schedule against a cost model; returns the points and why it stopped. */
function simulate(o: typeof plan, seconds: (T: number) => number, bytes: (T: number) => number): { points: ScalingPoint[]; stop: string } {
  const points: ScalingPoint[] = [];
  for (;;) {
    const next = nextLength(o, points);
    if ("stop" in next) return { points, stop: next.stop };
    points.push({ T: next.T, seconds: seconds(next.T), peakBytes: bytes(next.T) });
    assert.ok(points.length < 100, "the schedule ends");
  }
}

test("scaling lengths: a cost far above the fixed cost keeps the planned lengths", () => {
  const { points, stop } = simulate(plan, (T) => 1e-4 + 1e-5 * T, (T) => 1000 * T);
  assert.deepEqual(points.map((p) => p.T), plan.lengths);
  assert.equal(stop, "reached the largest length, 65536");
});

test("scaling lengths: a 1 ms fixed cost (a GPU's dispatches) pushes T on until it weighs under 10%", () => {
  const fixed = 1e-3;
  const perToken = 1e-7; // 6.6 ms of T-dependent work at 64k tokens
  const { points, stop } = simulate({ ...plan, minSecondsAtLargest: 0 }, (T) => fixed + perToken * T, (T) => 1000 * T);
  const window = points.slice(-3);
  assert.ok(points.length > plan.lengths.length, "extended past the plan");
  assert.ok(points[0].seconds / window[0].seconds <= 0.1, "fixed cost under 10% of the fit's smallest point");
  const beforeLast = points.slice(-4, -1);
  assert.ok(points[0].seconds / beforeLast[0].seconds > 0.1, "and not one doubling further than needed");
  assert.match(stop, /^reached T = \d+, where the fixed cost is at most/);
  const k = logLogSlope(window.map((p) => p.T), window.map((p) => p.seconds));
  assert.ok(k > 0.9 && k <= 1, `slope over the window ${k} is near the true exponent 1`);
});

test("scaling lengths: a quadratic with a large linear term goes on until its largest point takes long enough", () => {
  // tiled attention on a GPU: the linear work (projections, MLP) still weighs at 32k
  const seconds = (T: number) => 1.3e-3 + 1.5e-7 * T + 8e-12 * T * T;
  const { points, stop } = simulate({ ...plan, memoryBudgetBytes: 4 * 2 ** 30 }, seconds, (T) => 2800 * T);
  const last = points.at(-1)!;
  assert.ok(last.seconds >= 0.5 && last.T > 65536, `stopped at ${last.T}, ${last.seconds} s`);
  assert.ok(points.at(-2)!.seconds < 0.5, "one doubling past half a second, no more");
  assert.match(stop, /^reached T = /);
  const w = points.slice(-3);
  const k = logLogSlope(w.map((p) => p.T), w.map((p) => p.seconds));
  assert.ok(k > 1.6, `slope ${k} over ${w.map((p) => p.T)}`);
});

test("scaling lengths: the memory budget, the time per point and maxLength still bound the extension", () => {
  const flat = (T: number) => 1e-3 + 1e-12 * T; // never leaves the fixed-cost regime
  const mem = simulate(plan, flat, (T) => 4096 * T);
  assert.match(mem.stop, /over the 1\.00 GiB memory budget/);
  assert.ok(mem.points.at(-1)!.peakBytes <= plan.memoryBudgetBytes);
  const capped = simulate({ ...plan, maxLength: 1 << 18 }, flat, (T) => T);
  assert.equal(capped.points.at(-1)!.T, 1 << 18);
  assert.equal(capped.stop, `reached the largest length allowed, ${1 << 18}`);
  const slow = simulate(plan, (T) => 1 + 1e-9 * T * T, (T) => T);
  assert.match(slow.stop, /s allowed per point/);
  assert.ok(slow.points.every((p) => p.seconds <= 20 * 1.5));
});

test("scaling lengths: quick mode's maxLength equal to the last planned length never extends", () => {
  const quick = { ...plan, lengths: [256, 512, 1024, 2048, 4096], maxLength: 4096, minSecondsAtLargest: 0 };
  const { points, stop } = simulate(quick, (T) => 1e-3 + 1e-9 * T, (T) => T);
  assert.deepEqual(points.map((p) => p.T), quick.lengths);
  assert.equal(stop, "reached the largest length allowed, 4096");
});

test("scaling: a tensor over the device's largest buffer ends the series with that reason", async () => {
  const { RefBackend } = await import("../src/backend/ref/index.js");
  const { TensorTooLargeError } = await import("../src/util/errors.js");
  const { runScaling } = await import("../src/experiments/scaling.js");
  const { ARCHS } = await import("../src/experiments/zoo.js");
  const { DTYPE_BYTES } = await import("../src/tensor/dtype.js");
  const be = new RefBackend();
  const allocate = be.allocate.bind(be);
  const limit = 256 * 1024;
  be.allocate = ((dtype: keyof typeof DTYPE_BYTES, size: number) => {
    if (size * DTYPE_BYTES[dtype] > limit) throw new TensorTooLargeError(`a tensor of ${size * DTYPE_BYTES[dtype]} bytes exceeds the test's largest buffer (${limit} bytes)`);
    return allocate(dtype, size);
  }) as typeof be.allocate;
  const [s] = await runScaling(be, [ARCHS["attention-naive"]], {
    lengths: [32, 64, 128, 256, 512],
    maxLength: 512,
    fixedCostShare: 0.1,
    minSecondsAtLargest: 0,
    memoryBudgetBytes: 2 ** 30,
    secondsPerPoint: 20,
    minSecondsPerPoint: 0,
    model: { vocab: 32, width: 16, layers: 1 },
    seed: 0,
  });
  // the (B, H, T, T) scores pass 256 KiB between T = 128 and T = 256 (heads of the preset)
  assert.ok(s.points.length >= 2 && s.points.at(-1)!.T < 512, `points at ${s.points.map((p) => p.T)}`);
  assert.match(s.stop, /^T=\d+: a tensor of \d+ bytes exceeds the test's largest buffer/);
});
