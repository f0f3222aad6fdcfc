/**
 * The cpu backend's state-space kernels (conv1d, selective scan, SSD) against their reference
 * twins: ragged sizes, every optional input on and off, states aliased in place, and native
 * results identical bit for bit on 1, 2 and 3 threads (the multi-thread backends split every
 * kernel, however small).
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { refKernels as ref } from "../src/backend/ref/index.js";
import type { Conv1dDims, SelectiveScanDims, SsdDims } from "../src/backend/kernels_scan.js";
import { Rng } from "../src/util/rng.js";
import { cpuBackends, close } from "./cpu_helpers.js";
import { compare, moveTo, onEveryThreadCount } from "./cpu_mixer_helpers.js";

const cpus = cpuBackends();
const rng = new Rng(5);

function normal(n: number, std = 1, mean = 0): Float32Array {
  return Float32Array.from({ length: n }, () => mean + std * rng.normal());
}

function uniformIn(n: number, lo: number, hi: number): Float32Array {
  return Float32Array.from({ length: n }, () => lo + (hi - lo) * rng.uniform());
}

describe("cpu conv1d", () => {
  const shapes: [number, number, number, number][] = [[1, 1, 1, 1], [2, 3, 5, 4], [1, 31, 33, 4], [3, 9, 32, 3], [2, 33, 7, 2], [1, 2, 31, 4], [2, 257, 16, 4], [1, 5, 3, 6]];
  test("conv1dForward / conv1dBackward / conv1dStep vs ref: bias and window state on and off", () => {
    for (const [B, T, D, W] of shapes) {
      for (const withBias of [true, false]) {
        for (const withState of [false, true]) {
          const d: Conv1dDims = { B, T, D, W };
          const S = W - 1;
          const x = normal(B * T * D);
          const w = normal(D * W, 0.5);
          const bias = withBias ? normal(D) : null;
          const s0 = withState ? normal(B * S * D) : null;
          const dout = normal(B * T * D);
          const st = s0 ?? normal(B * S * D);
          const label = `B${B} T${T} D${D} W${W} bias=${withBias} state=${withState}`;
          onEveryThreadCount(cpus, label, (be, put, label) => {
            const ins = [put(x), put(w), put(bias), put(s0)] as const;
            const f = compare(be, "conv1dForward", [B * T * D, withState ? B * S * D : null], [...ins, d], 1e-6, label, { names: ["out", "stateOut"] });
            const g = compare(be, "conv1dBackward", [B * T * D, D * W, withBias ? D : null, withState ? B * S * D : null], [put(dout), ins[0], ins[1], ins[3], d], 1e-6, label, {
              names: ["dx", "dweight", "dbias", "dstateIn"],
            });
            // one token through the window state (in place)
            const s = compare(be, "conv1dStep", [B * D, B * S * D], [put(x.subarray(0, B * D)), ins[1], ins[2], d], 1e-6, label, { init: [null, st], names: ["out", "state"] });
            // ... with the mixer's activation fused (decoding)
            const sa = compare(be, "conv1dStep", [B * D, B * S * D], [put(x.subarray(0, B * D)), ins[1], ins[2], { ...d, act: withBias ? "silu" : "gelu" }], 1e-6, `${label} act`, {
              init: [null, st],
              names: ["out", "state"],
            });
            return [...f.got, ...g.got, ...s.got, ...sa.got];
          });
        }
      }
    }
  });

  test("conv1dForward with the window state updated in place (stateOut = stateIn)", () => {
    for (const [B, T, D, W] of [[2, 1, 5, 4], [1, 2, 33, 4], [2, 7, 3, 3]] as const) {
      const d: Conv1dDims = { B, T, D, W };
      const x = normal(B * T * D);
      const w = normal(D * W);
      const s0 = normal(B * (W - 1) * D);
      for (const { be, label } of cpus) {
        const st = moveTo(be, s0);
        const out = be.allocate("f32", B * T * D) as Float32Array;
        be.kernels.conv1dForward(out, st, moveTo(be, x), moveTo(be, w), null, st, d);
        const wantState = s0.slice();
        const want = new Float32Array(B * T * D);
        ref.conv1dForward(want, wantState, x, w, null, wantState, d);
        close(out, want, 1e-6, `${label} out`);
        close(st, wantState, 0, `${label} state`);
      }
    }
  });

  test("deltanetConvForward / deltanetConvBackward (no bias, dw accumulates)", () => {
    for (const [B, T, D, W] of shapes) {
      for (const withState of [false, true]) {
        const d = { B, T, D, W };
        const x = normal(B * T * D);
        const w = normal(D * W, 0.5);
        const s0 = withState ? normal(B * (W - 1) * D) : null;
        const dy = normal(B * T * D);
        const dw0 = normal(D * W);
        onEveryThreadCount(cpus, `B${B} T${T} D${D} W${W} state=${withState}`, (be, put, label) => {
          const f = compare(be, "deltanetConvForward", [B * T * D, W > 1 ? B * (W - 1) * D : null], [put(x), put(w), put(s0), d], 1e-6, label);
          const g = compare(be, "deltanetConvBackward", [B * T * D, D * W], [put(dy), put(x), put(w), put(s0), d], 1e-6, label, { init: [null, dw0] });
          return [...f.got, ...g.got];
        });
      }
    }
  });
});

interface ScanOpts {
  z: boolean;
  Dskip: boolean;
  dtBias: boolean;
  state: boolean;
  softplus: boolean;
}

/** Option sets: each option on and off at least once, and the common Mamba setting (all on). */
const SCAN_OPTS: ScanOpts[] = [
  { z: true, Dskip: true, dtBias: true, state: false, softplus: true },
  { z: false, Dskip: false, dtBias: false, state: false, softplus: true },
  { z: true, Dskip: false, dtBias: true, state: true, softplus: true },
  { z: false, Dskip: true, dtBias: false, state: true, softplus: false },
];

describe("cpu selective scan", () => {
  const shapes: [number, number, number, number, number][] = [
    // B, T, D, N, chunk
    [1, 1, 1, 1, 64],
    [2, 3, 3, 4, 2],
    [1, 31, 5, 3, 8],
    [2, 33, 32, 16, 16],
    [1, 65, 33, 17, 64],
    [3, 20, 8, 16, 7],
    [1, 257, 4, 16, 64],
  ];
  test("forward, backward and step vs ref on ragged sizes, every optional input on and off", () => {
    for (const [B, T, D, N, chunk] of shapes) {
      for (const o of SCAN_OPTS) {
        const d: SelectiveScanDims = { B, T, D, N, chunk, deltaSoftplus: o.softplus };
        const chunks = Math.ceil(T / chunk);
        const u = normal(B * T * D);
        const dt = o.softplus ? normal(B * T * D, 1, -1) : uniformIn(B * T * D, 0.01, 0.2);
        // softplus off: A of both signs (the general exp); on: A < 0 as Mamba's -exp(A_log)
        const A = o.softplus ? uniformIn(D * N, -4, -0.2) : normal(D * N, 0.5);
        const Bm = normal(B * T * N);
        const Cm = normal(B * T * N);
        const Dskip = o.Dskip ? normal(D) : null;
        const z = o.z ? normal(B * T * D) : null;
        const dtBias = o.dtBias ? normal(D, 0.5) : null;
        const s0 = o.state ? normal(B * D * N) : null;
        const dout = normal(B * T * D);
        const ckpt = new Float32Array(B * chunks * D * N);
        ref.selectiveScanForward(new Float32Array(B * T * D), null, ckpt, u, dt, A, Bm, Cm, Dskip, z, dtBias, s0, d);
        const st = s0 ?? normal(B * D * N);
        const label = `B${B} T${T} D${D} N${N} chunk${chunk} ${JSON.stringify(o)}`;
        onEveryThreadCount(cpus, label, (be, put, label) => {
          const ins = [put(u), put(dt), put(A), put(Bm), put(Cm), put(Dskip), put(z), put(dtBias)] as const;
          const f = compare(be, "selectiveScanForward", [B * T * D, B * D * N, B * chunks * D * N], [...ins, put(s0), d], 2e-6, label, {
            names: ["out", "stateOut", "checkpoints"],
          });
          const g = compare(
            be, "selectiveScanBackward",
            [B * T * D, B * T * D, D * N, B * T * N, B * T * N, o.Dskip ? D : null, o.z ? B * T * D : null, o.dtBias ? D : null, o.state ? B * D * N : null],
            [put(dout), ...ins, put(ckpt), d], 2e-5, label,
            { names: ["du", "ddt", "dA", "dB", "dC", "dDskip", "dz", "ddtBias", "dstateIn"] },
          );
          const one = { ...d, T: 1 };
          const s = compare(
            be, "selectiveScanStep", [B * D, B * D * N],
            [put(u.subarray(0, B * D)), put(dt.subarray(0, B * D)), ins[2], put(Bm.subarray(0, B * N)), put(Cm.subarray(0, B * N)), ins[5], o.z ? put(z!.subarray(0, B * D)) : null, ins[7], one],
            2e-6, label, { init: [null, st], names: ["out", "state"] },
          );
          return [...f.got, ...g.got, ...s.got];
        });
      }
    }
  });

  test("a gradient output may be absent while its input is present (dz, dDskip, ddtBias, dstateIn null)", () => {
    const [B, T, D, N, chunk] = [2, 9, 6, 4, 4];
    const d: SelectiveScanDims = { B, T, D, N, chunk, deltaSoftplus: true };
    const u = normal(B * T * D);
    const dt = normal(B * T * D);
    const A = uniformIn(D * N, -2, -0.5);
    const Bm = normal(B * T * N);
    const Cm = normal(B * T * N);
    const z = normal(B * T * D);
    const Dskip = normal(D);
    const dtBias = normal(D);
    const ckpt = new Float32Array(B * Math.ceil(T / chunk) * D * N);
    ref.selectiveScanForward(new Float32Array(B * T * D), null, ckpt, u, dt, A, Bm, Cm, Dskip, z, dtBias, null, d);
    const dout = normal(B * T * D);
    for (const { be, label } of cpus) {
      const put = <T extends Float32Array | null>(a: T) => moveTo(be, a);
      compare(be, "selectiveScanBackward", [B * T * D, B * T * D, D * N, B * T * N, B * T * N, null, null, null, null], [put(dout), put(u), put(dt), put(A), put(Bm), put(Cm), put(Dskip), put(z), put(dtBias), put(ckpt), d], 2e-5, label);
    }
  });

  test("the forward's final state may overwrite its initial state (stateOut = stateIn)", () => {
    const [B, T, D, N] = [2, 5, 7, 5];
    const d: SelectiveScanDims = { B, T, D, N, chunk: 64, deltaSoftplus: true };
    const ins = [normal(B * T * D), normal(B * T * D), uniformIn(D * N, -3, -0.1), normal(B * T * N), normal(B * T * N)];
    const s0 = normal(B * D * N);
    for (const { be, label } of cpus) {
      const st = moveTo(be, s0);
      const out = be.allocate("f32", B * T * D) as Float32Array;
      const [u, dt, A, Bm, Cm] = ins.map((a) => moveTo(be, a));
      be.kernels.selectiveScanForward(out, st, null, u, dt, A, Bm, Cm, null, null, null, st, d);
      const wantState = s0.slice();
      const want = new Float32Array(B * T * D);
      ref.selectiveScanForward(want, wantState, null, ins[0], ins[1], ins[2], ins[3], ins[4], null, null, null, wantState, d);
      close(out, want, 2e-6, `${label} out`);
      close(st, wantState, 2e-6, `${label} state`);
    }
  });
});

describe("cpu SSD (Mamba-2)", () => {
  const shapes: [number, number, number, number, number, number, number][] = [
    // B, T, H, P, N, G, chunk
    [1, 1, 1, 1, 1, 1, 64],
    [2, 3, 2, 3, 5, 1, 2],
    [1, 31, 4, 4, 16, 2, 8],
    [2, 33, 2, 16, 16, 2, 16],
    [1, 65, 3, 5, 3, 3, 64],
    [2, 20, 4, 17, 4, 1, 7],
    [1, 257, 1, 8, 8, 1, 64],
  ];
  const opts = [
    { Dskip: true, dtBias: true, state: false, softplus: true, clamp: false },
    { Dskip: false, dtBias: false, state: true, softplus: true, clamp: true },
    { Dskip: true, dtBias: false, state: true, softplus: false, clamp: false },
    { Dskip: false, dtBias: true, state: false, softplus: true, clamp: true },
  ];
  test("forward, backward and step vs ref on ragged sizes, every optional input on and off, groups shared by heads", () => {
    for (const [B, T, H, P, N, G, chunk] of shapes) {
      for (const o of opts) {
        const d: SsdDims = { B, T, H, P, N, G, chunk, dtSoftplus: o.softplus, dtMin: o.clamp ? 0.05 : 0, dtMax: o.clamp ? 0.5 : Infinity };
        const chunks = Math.ceil(T / chunk);
        const x = normal(B * T * H * P);
        const dt = o.softplus ? normal(B * T * H, 1, -1) : uniformIn(B * T * H, 0.01, 0.3);
        const A = o.softplus ? uniformIn(H, -3, -0.2) : normal(H, 0.5);
        const Bm = normal(B * T * G * N);
        const Cm = normal(B * T * G * N);
        const Dskip = o.Dskip ? normal(H) : null;
        const dtBias = o.dtBias ? normal(H, 0.5) : null;
        const s0 = o.state ? normal(B * H * P * N) : null;
        const st = s0 ?? normal(B * H * P * N);
        const dy = normal(B * T * H * P);
        const ckpt = new Float32Array(B * chunks * H * P * N);
        ref.ssdForward(new Float32Array(B * T * H * P), null, ckpt, x, dt, A, Bm, Cm, Dskip, dtBias, s0, d);
        const label = `B${B} T${T} H${H} P${P} N${N} G${G} chunk${chunk} ${JSON.stringify(o)}`;
        onEveryThreadCount(cpus, label, (be, put, label) => {
          const ins = [put(x), put(dt), put(A), put(Bm), put(Cm), put(Dskip), put(dtBias)] as const;
          const f = compare(be, "ssdForward", [B * T * H * P, B * H * P * N, B * chunks * H * P * N], [...ins, put(s0), d], 1e-5, label, {
            names: ["y", "stateOut", "checkpoints"],
          });
          const g = compare(
            be, "ssdBackward",
            [B * T * H * P, B * T * H, H, B * T * G * N, B * T * G * N, o.Dskip ? H : null, o.dtBias ? H : null, o.state ? B * H * P * N : null],
            [put(dy), ...ins, put(ckpt), d], 2e-5, label,
            { names: ["dx", "ddt", "dA", "dB", "dC", "dDskip", "ddtBias", "dstateIn"] },
          );
          const one = { ...d, T: 1 };
          const s = compare(
            be, "ssdStep", [B * H * P, B * H * P * N],
            [put(x.subarray(0, B * H * P)), put(dt.subarray(0, B * H)), ins[2], put(Bm.subarray(0, B * G * N)), put(Cm.subarray(0, B * G * N)), ins[5], ins[6], one],
            1e-5, label, { init: [null, st], names: ["y", "state"] },
          );
          return [...f.got, ...g.got, ...s.got];
        });
      }
    }
  });

  test("the forward's final state may overwrite its initial state (stateOut = stateIn)", () => {
    const [B, T, H, P, N, G] = [2, 9, 3, 5, 4, 1];
    const d: SsdDims = { B, T, H, P, N, G, chunk: 4, dtSoftplus: true, dtMin: 0, dtMax: Infinity };
    const ins = [normal(B * T * H * P), normal(B * T * H), uniformIn(H, -2, -0.5), normal(B * T * G * N), normal(B * T * G * N)];
    const s0 = normal(B * H * P * N);
    for (const { be, label } of cpus) {
      const st = moveTo(be, s0);
      const y = be.allocate("f32", B * T * H * P) as Float32Array;
      const [x, dt, A, Bm, Cm] = ins.map((a) => moveTo(be, a));
      be.kernels.ssdForward(y, st, null, x, dt, A, Bm, Cm, null, null, st, d);
      const wantState = s0.slice();
      const want = new Float32Array(B * T * H * P);
      ref.ssdForward(want, wantState, null, ins[0], ins[1], ins[2], ins[3], ins[4], null, null, wantState, d);
      close(y, want, 2e-6, `${label} y`);
      close(st, wantState, 2e-6, `${label} state`);
    }
  });
});

test("two cpu backends in one process: growing one memory keeps the other's new views its own", async () => {
  const { CpuBackend } = await import("../src/backend/cpu/backend.js");
  const [a, b] = [await CpuBackend.create({ threads: 1 }), await CpuBackend.create({ threads: 1 })];
  try {
    const big = a.allocate("f32", 1 << 23); // grows a's memory, which renews b's buffer object in V8
    const x = b.allocate("f32", 10) as Float32Array;
    b.kernels.fill(x, 3, 10);
    close(x, new Float32Array(10).fill(3), 0, "fill on the second backend");
    a.release(big);
  } finally {
    await a.dispose();
    await b.dispose();
  }
});

test("every kernel of the table runs natively: describe() names no reference kernel", () => {
  for (const { be } of cpus) {
    const onRef = be.refKernels();
    assert.deepEqual(onRef, [], `on ref: ${onRef.join(", ")}`);
    assert.ok(!be.describe().includes("on ref"), be.describe());
    for (const k of ["selectiveScanBackward", "ssdForward", "wkv7Backward", "moeRouterForward", "deltanetBackward", "adamwStep"] as const) {
      assert.ok(be.nativeKernels().includes(k), k);
    }
  }
});
