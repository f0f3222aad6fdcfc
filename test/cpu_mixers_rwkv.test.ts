/**
 * The cpu backend's RWKV kernels (WKV-4, WKV-7) against their reference twins: ragged sizes,
 * initial and final states on and off (and aliased), keys large enough to exercise WKV-4's
 * max tracking, and native results identical bit for bit on 1, 2 and 3 threads.
 */
import { describe, test } from "node:test";
import { refKernels as ref } from "../src/backend/ref/index.js";
import type { Wkv4Dims, Wkv7Dims } from "../src/backend/kernels_rwkv.js";
import { Rng } from "../src/util/rng.js";
import { cpuBackends, close } from "./cpu_helpers.js";
import { compare, moveTo, onEveryThreadCount } from "./cpu_mixer_helpers.js";

const cpus = cpuBackends();
const rng = new Rng(7);

function normal(n: number, std = 1, mean = 0): Float32Array {
  return Float32Array.from({ length: n }, () => mean + std * rng.normal());
}

function uniformIn(n: number, lo: number, hi: number): Float32Array {
  return Float32Array.from({ length: n }, () => lo + (hi - lo) * rng.uniform());
}

/** A valid WKV-4 state (B, 3, D): numerator, positive denominator, exponent. */
function wkv4State(B: number, D: number): Float32Array {
  const s = new Float32Array(B * 3 * D);
  for (let b = 0; b < B; b++) {
    for (let c = 0; c < D; c++) {
      s[b * 3 * D + c] = rng.normal();
      s[b * 3 * D + D + c] = 0.5 + rng.uniform();
      s[b * 3 * D + 2 * D + c] = rng.normal();
    }
  }
  return s;
}

describe("cpu WKV-4", () => {
  const shapes: [number, number, number, number][] = [[1, 1, 1, 1], [2, 3, 5, 1], [1, 31, 33, 1], [2, 33, 32, 6], [1, 257, 7, 2], [3, 9, 255, 1]];
  test("forward, backward and step vs ref: initial state and final-state gradient on and off", () => {
    for (const [B, T, D, kStd] of shapes) {
      for (const [withState, withGradT] of [[false, false], [true, true], [true, false], [false, true]]) {
        const d: Wkv4Dims = { B, T, D };
        const w = uniformIn(D, -1.5, -0.05);
        const u = normal(D);
        const k = normal(B * T * D, kStd);
        const v = normal(B * T * D);
        const s0 = withState ? wkv4State(B, D) : null;
        const y = new Float32Array(B * T * D);
        const saved = new Float32Array(B * T * 3 * D);
        ref.wkv4Forward(y, null, saved, w, u, k, v, s0, d);
        const dy = normal(B * T * D);
        const dT = withGradT ? normal(B * 3 * D) : null;
        const st = s0 ?? wkv4State(B, D);
        const label = `B${B} T${T} D${D} k~${kStd} state=${withState} dstateT=${withGradT}`;
        onEveryThreadCount(cpus, label, (be, put, label) => {
          const ins = [put(w), put(u), put(k), put(v)] as const;
          const f = compare(be, "wkv4Forward", [B * T * D, B * 3 * D, B * T * 3 * D], [...ins, put(s0), d], 2e-6, label, { names: ["y", "stateOut", "saved"] });
          const g = compare(
            be, "wkv4Backward", [B * D, B * D, B * T * D, B * T * D, withState ? B * 3 * D : null],
            [put(dy), put(dT), ...ins, put(y), put(saved), d], 2e-5, label, { names: ["dw", "du", "dk", "dv", "dstate0"] },
          );
          const s = compare(be, "wkv4Step", [B * D, B * 3 * D], [ins[0], ins[1], put(k.subarray(0, B * D)), put(v.subarray(0, B * D)), { B, D }], 2e-6, label, {
            init: [null, st], names: ["y", "state"],
          });
          return [...f.got, ...g.got, ...s.got];
        });
      }
    }
  });
});

function wkv7Inputs(B: number, T: number, H: number, N: number) {
  const n = B * T * H * N;
  const kk = new Float32Array(n);
  const b = new Float32Array(n);
  for (let row = 0; row < B * T * H; row++) {
    const x = normal(N);
    const norm = Math.hypot(...x) || 1;
    const rate = rng.uniform();
    for (let j = 0; j < N; j++) {
      kk[row * N + j] = x[j] / norm;
      b[row * N + j] = (x[j] / norm) * rate;
    }
  }
  return { r: normal(n), w: uniformIn(n, 0.5, 1), k: normal(n, 0.5), v: normal(n), a: kk.map((x) => -x), b };
}

describe("cpu WKV-7", () => {
  const shapes: [number, number, number, number, number][] = [
    // B, T, H, N, chunk
    [1, 1, 1, 1, 1],
    [2, 3, 2, 3, 2],
    [1, 31, 2, 4, 4],
    [2, 33, 3, 16, 16],
    [1, 65, 1, 17, 64],
    [1, 20, 2, 8, 7],
  ];
  test("forward, backward and step vs ref: ragged sizes and chunks, states on and off", () => {
    for (const [B, T, H, N, chunk] of shapes) {
      for (const [withState, withGradT] of [[false, false], [true, true], [false, true]]) {
        const d: Wkv7Dims = { B, T, H, N, chunk };
        const chunks = Math.ceil(T / chunk);
        const x = wkv7Inputs(B, T, H, N);
        const s0 = withState ? normal(B * H * N * N) : null;
        const ckpt = new Float32Array(B * chunks * H * N * N);
        ref.wkv7Forward(new Float32Array(B * T * H * N), null, ckpt, x.r, x.w, x.k, x.v, x.a, x.b, s0, d);
        const dy = normal(B * T * H * N);
        const dT = withGradT ? normal(B * H * N * N) : null;
        const st = s0 ?? normal(B * H * N * N);
        const m = B * T * H * N;
        const label = `B${B} T${T} H${H} N${N} chunk${chunk} state=${withState} dstateT=${withGradT}`;
        onEveryThreadCount(cpus, label, (be, put, label) => {
          const ins = [put(x.r), put(x.w), put(x.k), put(x.v), put(x.a), put(x.b)] as const;
          const f = compare(be, "wkv7Forward", [m, B * H * N * N, B * chunks * H * N * N], [...ins, put(s0), d], 2e-6, label, { names: ["y", "stateOut", "checkpoints"] });
          const g = compare(
            be, "wkv7Backward", [m, m, m, m, m, m, withState ? B * H * N * N : null], [put(dy), put(dT), ...ins, put(ckpt), d], 2e-5, label,
            { names: ["dr", "dw", "dk", "dv", "da", "db", "dstate0"] },
          );
          const one = B * H * N;
          const s = compare(be, "wkv7Step", [one, B * H * N * N], [...[x.r, x.w, x.k, x.v, x.a, x.b].map((a) => put(a.subarray(0, one))), { B, H, N }], 2e-6, label, {
            init: [null, st], names: ["y", "state"],
          });
          return [...f.got, ...g.got, ...s.got];
        });
      }
    }
  });

  test("forwards with the final state overwriting the initial state (stateOut = stateIn)", () => {
    const [B, T, H, N] = [2, 5, 2, 6];
    const d7: Wkv7Dims = { B, T, H, N, chunk: N };
    const x = wkv7Inputs(B, T, H, N);
    const s7 = normal(B * H * N * N);
    const d4: Wkv4Dims = { B, T, D: 9 };
    const [w4, u4, k4, v4] = [uniformIn(9, -1, -0.1), normal(9), normal(B * T * 9), normal(B * T * 9)];
    const s4 = wkv4State(B, 9);
    for (const { be, label } of cpus) {
      const st = moveTo(be, s7);
      const y = be.allocate("f32", B * T * H * N) as Float32Array;
      const ins = [x.r, x.w, x.k, x.v, x.a, x.b].map((a) => moveTo(be, a));
      be.kernels.wkv7Forward(y, st, null, ins[0], ins[1], ins[2], ins[3], ins[4], ins[5], st, d7);
      const want = new Float32Array(y.length);
      const wantState = s7.slice();
      ref.wkv7Forward(want, wantState, null, x.r, x.w, x.k, x.v, x.a, x.b, wantState, d7);
      close(y, want, 2e-6, `${label} wkv7 y`);
      close(st, wantState, 2e-6, `${label} wkv7 state`);
      const st4 = moveTo(be, s4);
      const y4 = be.allocate("f32", B * T * 9) as Float32Array;
      be.kernels.wkv4Forward(y4, st4, null, moveTo(be, w4), moveTo(be, u4), moveTo(be, k4), moveTo(be, v4), st4, d4);
      const want4 = new Float32Array(y4.length);
      const wantState4 = s4.slice();
      ref.wkv4Forward(want4, wantState4, null, w4, u4, k4, v4, wantState4, d4);
      close(y4, want4, 2e-6, `${label} wkv4 y`);
      close(st4, wantState4, 2e-6, `${label} wkv4 state`);
    }
  });
});
