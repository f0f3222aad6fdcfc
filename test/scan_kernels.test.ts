/**
 * The state-space kernels and ops: float64 finite-difference gradchecks of conv1d, the
 * selective scan and SSD; prefill-from-state and one-token steps against the full forward;
 * chunked SSD against the plain sequential recurrence on ragged lengths and chunk sizes.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as ops from "../src/ops/index.js";
import { empty, full, zeros } from "../src/backend/alloc.js";
import { backward, noGrad } from "../src/autograd/tape.js";
import { tidy } from "../src/tensor/scope.js";
import type { Tensor } from "../src/tensor/tensor.js";
import type { Backend } from "../src/backend/backend.js";
import type { HostArray } from "../src/tensor/dtype.js";
import { ssdSequentialForward } from "../src/backend/ref/ssd.js";
import { Rng } from "../src/util/rng.js";
import { gradcheck, maxAbsDiff, randn, ref32, ref64, uniform, values } from "./helpers.js";

const TOL = 1e-6;
const rng = new Rng(11);

/** Rows [t0, t1) of a (B, T, ...) tensor, as a new tensor. */
function timeSlice(x: Tensor, t0: number, t1: number): Tensor {
  const [B, T, ...rest] = x.shape;
  const row = rest.reduce((a, b) => a * b, 1);
  const out = empty(x.device as Backend, [B, t1 - t0, ...rest]);
  (x.device as Backend).kernels.copy2d(out.handle, x.handle, B, (t1 - t0) * row, (t1 - t0) * row, 0, T * row, t0 * row, false);
  return out;
}

/** Interleave per-time slices (B, Ti, R) back into (B, sum Ti, R). */
function joinTime(parts: Float64Array[], B: number, lengths: number[], row: number): Float64Array {
  const T = lengths.reduce((a, b) => a + b, 0);
  const out = new Float64Array(B * T * row);
  let t0 = 0;
  parts.forEach((p, i) => {
    for (let b = 0; b < B; b++) out.set(p.subarray(b * lengths[i] * row, (b + 1) * lengths[i] * row), (b * T + t0) * row);
    t0 += lengths[i];
  });
  return out;
}

// ---------------------------------------------------------------- conv1d

test("conv1d gradcheck: bias on and off, with and without an initial window, widths 1..4", () => {
  for (const W of [1, 2, 4]) {
    for (const withBias of [true, false]) {
      for (const withState of [false, true]) {
        const [B, T, D] = [2, 5, 3];
        const x = randn(ref64, [B, T, D], rng, 1, true);
        const w = randn(ref64, [D, W], rng, 1, true);
        const bias = withBias ? randn(ref64, [D], rng, 1, true) : null;
        const s0 = withState ? randn(ref64, [B, W - 1, D], rng, 1, true) : null;
        const inputs = [x, w, ...(bias ? [bias] : []), ...(s0 ? [s0] : [])];
        const err = gradcheck((ins) => {
          const [x, w] = ins;
          const b = bias ? ins[2] : null;
          const s = s0 ? ins[ins.length - 1] : null;
          return ops.causalConv1d(x, w, b, { initial: s });
        }, inputs);
        assert.ok(err < TOL, `W=${W} bias=${withBias} state=${withState}: ${err}`);
      }
    }
  }
});

test("conv1d: prefill in pieces through the window state, and one-token steps, equal the full forward", () => {
  noGrad(() => {
    for (const W of [1, 3, 4]) {
      const [B, T, D] = [2, 9, 5];
      const x = randn(ref32, [B, T, D], rng);
      const w = randn(ref32, [D, W], rng);
      const bias = randn(ref32, [D], rng);
      const full = values(ops.causalConv1d(x, w, bias));
      // pieces shorter and longer than the window
      const cuts = [0, 1, 2, 6, 9];
      const state = zeros(ref32, [B, W - 1, D]);
      const parts: Float64Array[] = [];
      for (let i = 0; i + 1 < cuts.length; i++) {
        parts.push(values(ops.causalConv1d(timeSlice(x, cuts[i], cuts[i + 1]), w, bias, { initial: state, final: state })));
      }
      const lengths = cuts.slice(1).map((c, i) => c - cuts[i]);
      assert.ok(maxAbsDiff(joinTime(parts, B, lengths, D), full) < 1e-6, `pieces W=${W}`);
      const stepState = zeros(ref32, [B, W - 1, D]);
      const steps: Float64Array[] = [];
      for (let t = 0; t < T; t++) {
        steps.push(values(ops.causalConv1dStep(timeSlice(x, t, t + 1).reshape([B, D]), w, bias, stepState)));
      }
      assert.ok(maxAbsDiff(joinTime(steps, B, new Array(T).fill(1), D), full) < 1e-6, `steps W=${W}`);
    }
  });
});

// ---------------------------------------------------------------- selective scan

interface ScanInputs {
  u: Tensor;
  dt: Tensor;
  A: Tensor;
  Bm: Tensor;
  Cm: Tensor;
  Dskip: Tensor;
  z: Tensor;
  dtBias: Tensor;
}

function scanInputs(be: Backend, B: number, T: number, D: number, N: number, grad = false): ScanInputs {
  return {
    u: randn(be, [B, T, D], rng, 1, grad),
    dt: randn(be, [B, T, D], rng, 0.5, grad),
    A: uniform(be, [D, N], rng, -1.5, -0.2, grad),
    Bm: randn(be, [B, T, N], rng, 1, grad),
    Cm: randn(be, [B, T, N], rng, 1, grad),
    Dskip: randn(be, [D], rng, 1, grad),
    z: randn(be, [B, T, D], rng, 1, grad),
    dtBias: randn(be, [D], rng, 0.5, grad),
  };
}

test("selective scan gradcheck: gate on and off, initial state, checkpoints across chunk boundaries", () => {
  const [B, T, D, N] = [2, 7, 3, 4];
  for (const gate of [true, false]) {
    for (const withState of [false, true]) {
      for (const every of [3, 64]) {
        const s = scanInputs(ref64, B, T, D, N, true);
        const h0 = withState ? randn(ref64, [B, D, N], rng, 1, true) : null;
        const names = ["u", "dt", "A", "Bm", "Cm", "Dskip", "dtBias", ...(gate ? ["z"] : [])] as (keyof ScanInputs)[];
        const inputs = [...names.map((n) => s[n]), ...(h0 ? [h0] : [])];
        const err = gradcheck((ins) => {
          const v = Object.fromEntries(names.map((n, i) => [n, ins[i]])) as unknown as ScanInputs;
          return ops.selectiveScan(v.u, v.dt, v.A, v.Bm, v.Cm, {
            Dskip: v.Dskip,
            dtBias: v.dtBias,
            z: gate ? v.z : null,
            initial: h0 ? ins[ins.length - 1] : null,
            checkpointEvery: every,
          });
        }, inputs);
        assert.ok(err < TOL, `gate=${gate} state=${withState} every=${every}: ${err}`);
      }
    }
  }
  // without softplus, Dskip or dt bias (the bare recurrence)
  const s = scanInputs(ref64, B, T, D, N, true);
  s.dt = uniform(ref64, [B, T, D], rng, 0.1, 1, true);
  const err = gradcheck(([u, dt, A, Bm, Cm]) => ops.selectiveScan(u, dt, A, Bm, Cm, { dtSoftplus: false, checkpointEvery: 2 }), [
    s.u,
    s.dt,
    s.A,
    s.Bm,
    s.Cm,
  ]);
  assert.ok(err < TOL, `bare: ${err}`);
});

test("selective scan: the saved checkpoints do not change the forward, and prefill continues from a state", () => {
  const [B, T, D, N] = [2, 11, 4, 3];
  const s = scanInputs(ref64, B, T, D, N);
  const run = (u: Tensor, dt: Tensor, Bm: Tensor, Cm: Tensor, z: Tensor, state?: Tensor) =>
    ops.selectiveScan(u, dt, s.A, Bm, Cm, { Dskip: s.Dskip, z, dtBias: s.dtBias, initial: state, final: state });
  const full = values(noGrad(() => run(s.u, s.dt, s.Bm, s.Cm, s.z)));
  const u = randn(ref64, [B, T, D], rng, 1, true);
  (u.handle as Float64Array).set(s.u.handle as Float64Array);
  assert.ok(maxAbsDiff(values(ops.selectiveScan(u, s.dt, s.A, s.Bm, s.Cm, { Dskip: s.Dskip, z: s.z, dtBias: s.dtBias, checkpointEvery: 4 })), full) < 1e-12);
  noGrad(() => {
    const state = zeros(ref64, [B, D, N]);
    const cuts = [0, 4, 5, 11];
    const parts = cuts.slice(1).map((c, i) => {
      const sl = (x: Tensor) => timeSlice(x, cuts[i], c);
      return values(run(sl(s.u), sl(s.dt), sl(s.Bm), sl(s.Cm), sl(s.z), state));
    });
    assert.ok(maxAbsDiff(joinTime(parts, B, [4, 1, 6], D), full) < 1e-12, "prefill pieces");
    const stepState = zeros(ref64, [B, D, N]);
    const steps: Float64Array[] = [];
    for (let t = 0; t < T; t++) {
      const sl = (x: Tensor) => timeSlice(x, t, t + 1).reshape([B, x.shape[2]]);
      steps.push(values(ops.selectiveScanStep(sl(s.u), sl(s.dt), s.A, sl(s.Bm), sl(s.Cm), stepState, { Dskip: s.Dskip, z: sl(s.z), dtBias: s.dtBias })));
    }
    assert.ok(maxAbsDiff(joinTime(steps, B, new Array(T).fill(1), D), full) < 1e-12, "steps");
    assert.ok(maxAbsDiff(values(stepState), values(state)) < 1e-12, "final states agree");
  });
});

// ---------------------------------------------------------------- Mamba-2 SSD

interface SsdInputs {
  x: Tensor;
  dt: Tensor;
  A: Tensor;
  Bm: Tensor;
  Cm: Tensor;
  Dskip: Tensor;
  dtBias: Tensor;
}

function ssdInputs(be: Backend, B: number, T: number, H: number, P: number, G: number, N: number, grad = false): SsdInputs {
  return {
    x: randn(be, [B, T, H, P], rng, 1, grad),
    dt: randn(be, [B, T, H], rng, 0.7, grad),
    A: uniform(be, [H], rng, -2, -0.3, grad),
    Bm: randn(be, [B, T, G, N], rng, 1, grad),
    Cm: randn(be, [B, T, G, N], rng, 1, grad),
    Dskip: randn(be, [H], rng, 1, grad),
    dtBias: randn(be, [H], rng, 0.5, grad),
  };
}

function sequential(s: SsdInputs, opts: ops.SsdOptions, h0: Tensor | null): { y: Float64Array; state: Float64Array } {
  const [B, T, H, P] = s.x.shape;
  const [G, N] = s.Bm.shape.slice(2);
  const y = new Float64Array(B * T * H * P);
  const state = new Float64Array(B * H * P * N);
  const [dtMin, dtMax] = opts.dtLimit ?? [0, Infinity];
  const h = (t: Tensor) => t.handle as HostArray;
  ssdSequentialForward(y, state, h(s.x), h(s.dt), h(s.A), h(s.Bm), h(s.Cm), h(s.Dskip), h(s.dtBias), h0 ? h(h0) : null, {
    B, T, H, P, N, G, chunk: T, dtSoftplus: true, dtMin, dtMax,
  });
  return { y, state };
}

test("SSD: chunked equals the sequential recurrence on ragged lengths, chunk sizes, groups and dt limits", () => {
  noGrad(() => {
    for (const [T, chunk] of [[1, 4], [5, 5], [7, 3], [13, 4], [40, 7], [40, 12], [33, 64], [17, 1]]) {
      for (const [H, G] of [[4, 1], [4, 2], [6, 3]]) {
        const [B, P, N] = [2, 3, 5];
        const s = ssdInputs(ref64, B, T, H, P, G, N);
        const h0 = randn(ref64, [B, H, P, N], rng);
        const dtLimit: [number, number] = T % 2 ? [0.01, 0.6] : [0, Infinity];
        const opts = { chunk, Dskip: s.Dskip, dtBias: s.dtBias, dtLimit };
        const final = zeros(ref64, [B, H, P, N]);
        const y = values(ops.ssd(s.x, s.dt, s.A, s.Bm, s.Cm, { ...opts, initial: h0, final }));
        const want = sequential(s, opts, h0);
        const scale = Math.max(...want.y.map(Math.abs));
        assert.ok(maxAbsDiff(y, want.y) < 1e-10 * scale, `y T=${T} chunk=${chunk} H=${H} G=${G}`);
        assert.ok(maxAbsDiff(values(final), want.state) < 1e-10 * scale, `state T=${T} chunk=${chunk} H=${H} G=${G}`);
      }
    }
  });
});

test("SSD gradcheck: groups > 1, partial last chunk, initial state, dt clamp", () => {
  const [B, T, H, P, G, N] = [2, 7, 4, 2, 2, 3];
  for (const [chunk, dtLimit] of [
    [3, [0, Infinity]],
    [4, [0.05, 0.9]],
    [16, [0, Infinity]],
  ] as [number, [number, number]][]) {
    const s = ssdInputs(ref64, B, T, H, P, G, N, true);
    const h0 = randn(ref64, [B, H, P, N], rng, 1, true);
    const err = gradcheck(
      ([x, dt, A, Bm, Cm, Dskip, dtBias, h0]) => ops.ssd(x, dt, A, Bm, Cm, { chunk, Dskip, dtBias, dtLimit, initial: h0 }),
      [s.x, s.dt, s.A, s.Bm, s.Cm, s.Dskip, s.dtBias, h0],
    );
    assert.ok(err < TOL, `chunk=${chunk} limit=${dtLimit}: ${err}`);
  }
  const s = ssdInputs(ref64, 1, 5, 2, 2, 1, 2, true);
  const err = gradcheck(([x, dt, A, Bm, Cm]) => ops.ssd(x, dt, A, Bm, Cm, { chunk: 2 }), [s.x, s.dt, s.A, s.Bm, s.Cm]);
  assert.ok(err < TOL, `no skip, no bias, no state: ${err}`);
});

test("SSD: prefill from a state and one-token steps equal the full forward (float32)", () => {
  noGrad(() => {
    const [B, T, H, P, G, N] = [2, 10, 4, 3, 2, 4];
    const s = ssdInputs(ref32, B, T, H, P, G, N);
    const opts = { chunk: 4, Dskip: s.Dskip, dtBias: s.dtBias };
    const full = values(ops.ssd(s.x, s.dt, s.A, s.Bm, s.Cm, opts));
    const state = zeros(ref32, [B, H, P, N]);
    const cuts = [0, 3, 4, 10];
    const parts = cuts.slice(1).map((c, i) => {
      const sl = (x: Tensor) => timeSlice(x, cuts[i], c);
      return values(ops.ssd(sl(s.x), sl(s.dt), s.A, sl(s.Bm), sl(s.Cm), { ...opts, initial: state, final: state }));
    });
    assert.ok(maxAbsDiff(joinTime(parts, B, [3, 1, 6], H * P), full) < 1e-5, "prefill pieces");
    const stepState = zeros(ref32, [B, H, P, N]);
    const steps: Float64Array[] = [];
    for (let t = 0; t < T; t++) {
      const sl = (x: Tensor) => timeSlice(x, t, t + 1).reshape([B, ...x.shape.slice(2)]);
      steps.push(values(ops.ssdStep(sl(s.x), sl(s.dt), s.A, sl(s.Bm), sl(s.Cm), stepState, opts)));
    }
    assert.ok(maxAbsDiff(joinTime(steps, B, new Array(T).fill(1), H * P), full) < 1e-5, "steps");
    assert.ok(maxAbsDiff(values(stepState), values(state)) < 1e-5, "final states agree");
  });
});

// ---------------------------------------------------------------- training memory

/** Peak bytes per token of a forward + backward, above what the inputs hold. */
function trainingBytesPerToken(T: number, setup: (T: number) => { leaves: Tensor[]; forward: () => Tensor }): number {
  const be = ref32;
  return tidy(() => {
    const { leaves, forward } = setup(T);
    const base = be.memory().bytesInUse;
    be.resetPeak();
    tidy(() => {
      const out = forward();
      backward(out, full(be, out.shape, 1));
    });
    const peak = be.memory().peakBytes - base;
    for (const l of leaves) {
      l.grad?.dispose();
      l.grad = null;
    }
    return peak / T;
  });
}

test("training memory of the selective scan and SSD is linear in T and far below keeping every state", () => {
  const [D, N] = [16, 32];
  const scan = (T: number) => {
    const s = scanInputs(ref32, 1, T, D, N, true);
    return { leaves: Object.values(s), forward: () => ops.selectiveScan(s.u, s.dt, s.A, s.Bm, s.Cm, { Dskip: s.Dskip, z: s.z, dtBias: s.dtBias }) };
  };
  const [H, P, G] = [4, 4, 1];
  const ssd = (T: number) => {
    const s = ssdInputs(ref32, 1, T, H, P, G, N, true);
    return { leaves: Object.values(s), forward: () => ops.ssd(s.x, s.dt, s.A, s.Bm, s.Cm, { chunk: 32, Dskip: s.Dskip, dtBias: s.dtBias }) };
  };
  for (const [name, setup, stateBytes] of [
    ["selective scan", scan, D * N * 4],
    ["ssd", ssd, H * P * N * 4],
  ] as const) {
    const perToken = [256, 1024, 4096].map((T) => trainingBytesPerToken(T, setup));
    assert.ok(Math.max(...perToken) / Math.min(...perToken) < 1.05, `${name}: ${perToken}`);
    // keeping h_t for every step would add stateBytes per token on its own
    assert.ok(perToken[2] < 0.75 * stateBytes, `${name}: ${perToken[2]} bytes per token vs ${stateBytes} per state`);
  }
});
