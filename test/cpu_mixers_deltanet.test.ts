/**
 * The cpu backend's Gated DeltaNet kernels against their reference twins: l2 norm, the causal
 * conv (no bias, dw accumulating), the delta rule's forward (chunk states on and off, key heads
 * shared by value heads, ragged chunks), backward and step; on 1, 2 and 3 threads with identical bits.
 */
import { describe, test } from "node:test";
import { refKernels as ref } from "../src/backend/ref/index.js";
import type { DeltaNetDims } from "../src/backend/kernels_deltanet.js";
import { Rng } from "../src/util/rng.js";
import { cpuBackends, close } from "./cpu_helpers.js";
import { compare, moveTo, onEveryThreadCount } from "./cpu_mixer_helpers.js";

const cpus = cpuBackends();
const rng = new Rng(17);

function normal(n: number, std = 1): Float32Array {
  return Float32Array.from({ length: n }, () => std * rng.normal());
}

function uniformIn(n: number, lo: number, hi: number): Float32Array {
  return Float32Array.from({ length: n }, () => lo + (hi - lo) * rng.uniform());
}

/** Rows of length C scaled to unit norm (DeltaNet's l2-normalised keys and queries). */
function unitRows(rows: number, C: number): Float32Array {
  const x = normal(rows * C);
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let c = 0; c < C; c++) s += x[r * C + c] ** 2;
    for (let c = 0; c < C; c++) x[r * C + c] /= Math.sqrt(s) || 1;
  }
  return x;
}

describe("cpu Gated DeltaNet", () => {
  test("l2normForward / l2normBackward vs ref on ragged rows", () => {
    for (const [rows, C] of [[1, 1], [3, 31], [33, 32], [257, 33], [5, 128]]) {
      const x = normal(rows * C);
      const dy = normal(rows * C);
      const rnorm = new Float32Array(rows);
      ref.l2normForward(new Float32Array(rows * C), rnorm, x, rows, C, 1e-6);
      // dx = rnorm dy - (its projection on x) cancels when C is tiny: compare against the size of rnorm dy
      let termSq = 0;
      for (let i = 0; i < rows * C; i++) termSq += (rnorm[Math.floor(i / C)] * dy[i]) ** 2;
      onEveryThreadCount(cpus, `rows${rows} C${C}`, (be, put, label) => [
        ...compare(be, "l2normForward", [rows * C, rows], [put(x), rows, C, 1e-6], 1e-6, label).got,
        ...compare(be, "l2normBackward", [rows * C], [put(dy), put(x), put(rnorm), rows, C], 1e-6, label, { floor: Math.sqrt(termSq) }).got,
      ]);
    }
  });

  const shapes: [number, number, number, number, number, number, number][] = [
    // B, T, H, G, Dk, Dv, chunk
    [1, 1, 1, 1, 1, 1, 64],
    [2, 3, 2, 1, 3, 5, 2],
    [1, 31, 4, 2, 4, 4, 8],
    [2, 33, 2, 2, 16, 17, 16],
    [1, 65, 3, 1, 8, 3, 64],
    [1, 20, 4, 2, 5, 8, 7],
  ];
  test("forward, backward and step vs ref: ragged sizes and chunks, shared key heads, states on and off", () => {
    for (const [B, T, H, G, Dk, Dv, chunk] of shapes) {
      for (const withState of [false, true]) {
        const d: DeltaNetDims = { B, T, H, G, Dk, Dv, scale: 1 / Math.sqrt(Dk), chunk };
        const nChunks = Math.ceil(T / chunk);
        const q = unitRows(B * T * G, Dk);
        const k = unitRows(B * T * G, Dk);
        const v = normal(B * T * H * Dv);
        const g = uniformIn(B * T * H, -1, -0.01);
        const beta = uniformIn(B * T * H, 0.05, 1);
        const s0 = withState ? normal(B * H * Dk * Dv, 0.5) : null;
        const st = s0 ?? normal(B * H * Dk * Dv, 0.5);
        const states = new Float32Array(B * H * nChunks * Dk * Dv);
        ref.deltanetForward(new Float32Array(B * T * H * Dv), null, states, q, k, v, g, beta, s0, d);
        const dout = normal(B * T * H * Dv);
        const label = `B${B} T${T} H${H} G${G} Dk${Dk} Dv${Dv} chunk${chunk} state=${withState}`;
        onEveryThreadCount(cpus, label, (be, put, label) => {
          const ins = [put(q), put(k), put(v), put(g), put(beta)] as const;
          const f = compare(be, "deltanetForward", [B * T * H * Dv, B * H * Dk * Dv, B * H * nChunks * Dk * Dv], [...ins, put(s0), d], 1e-5, label, {
            names: ["out", "finalState", "chunkStates"],
          });
          const b = compare(be, "deltanetBackward", [B * T * G * Dk, B * T * G * Dk, B * T * H * Dv, B * T * H, B * T * H], [put(dout), ...ins, put(states), d], 2e-5, label, {
            names: ["dq", "dk", "dv", "dg", "dbeta"],
          });
          const one = { ...d, T: 1 };
          const s = compare(
            be, "deltanetStep", [B * H * Dv, B * H * Dk * Dv],
            [put(q.subarray(0, B * G * Dk)), put(k.subarray(0, B * G * Dk)), put(v.subarray(0, B * H * Dv)), put(g.subarray(0, B * H)), put(beta.subarray(0, B * H)), one],
            1e-5, label, { init: [null, st], names: ["out", "state"] },
          );
          return [...f.got, ...b.got, ...s.got];
        });
      }
    }
  });

  test("the forward's final state may overwrite its initial state", () => {
    const [B, T, H, G, Dk, Dv] = [2, 9, 2, 1, 4, 6];
    const d: DeltaNetDims = { B, T, H, G, Dk, Dv, scale: 0.5, chunk: 4 };
    const ins = [unitRows(B * T * G, Dk), unitRows(B * T * G, Dk), normal(B * T * H * Dv), uniformIn(B * T * H, -1, -0.1), uniformIn(B * T * H, 0.1, 1)];
    const s0 = normal(B * H * Dk * Dv);
    for (const { be, label } of cpus) {
      const st = moveTo(be, s0);
      const out = be.allocate("f32", B * T * H * Dv) as Float32Array;
      const [q, k, v, g, beta] = ins.map((a) => moveTo(be, a));
      be.kernels.deltanetForward(out, st, null, q, k, v, g, beta, st, d);
      const want = new Float32Array(out.length);
      const wantState = s0.slice();
      ref.deltanetForward(want, wantState, null, ins[0], ins[1], ins[2], ins[3], ins[4], wantState, d);
      close(out, want, 1e-5, `${label} out`);
      close(st, wantState, 1e-5, `${label} state`);
    }
  });
});
