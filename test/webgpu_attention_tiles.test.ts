/**
 * The tiled attention kernels with tile shapes other than the ones SwiftShader's limits pick:
 * the shapes a 48 KiB GPU uses for head size 64 (64-row query blocks, 8 rows per thread, 4
 * threads per row, 16 threads per row, dQ over 64 rows), built here for head size 32 so that
 * they fit 32 KiB; row statistics through workgroup memory and through subgroup shuffles.
 * Compared with ref on ragged, cached and grouped cases.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import type { AttentionDims } from "../src/backend/kernels.js";
import { refKernels } from "../src/backend/ref/index.js";
import { chooseBackwardTiles, chooseForwardTiles, dispatchAttentionBackward, dispatchAttentionForward } from "../src/backend/webgpu/attention.js";
import type { ForwardTiles } from "../src/backend/webgpu/attention_forward.js";
import type { BackwardTile } from "../src/backend/webgpu/attention_backward.js";
import type { WebGpuBackend } from "../src/backend/webgpu/index.js";
import type { GpuTensorBuffer } from "../src/backend/webgpu/pool.js";
import { Rng } from "../src/util/rng.js";
import { relErr } from "./helpers.js";
import { gpuBackend, randArray } from "./webgpu_helpers.js";

const rng = new Rng(5);

const CASES: AttentionDims[] = [
  { B: 1, T: 150, S: 150, H: 2, G: 1, K: 32, scale: 0.17, causal: true, qOffset: 0, kvRows: 150 },
  { B: 2, T: 40, S: 77, H: 4, G: 2, K: 32, scale: 0.17, causal: true, qOffset: 37, kvRows: 80 },
  { B: 1, T: 65, S: 65, H: 2, G: 2, K: 32, scale: 0.17, causal: false, qOffset: 0, kvRows: 65 },
];

/** Upload inputs, run, read outputs (poisoned with NaN first, so unwritten elements show). */
async function run(be: WebGpuBackend, inputs: Float32Array[], sizes: number[], f: (outs: GpuTensorBuffer[], ins: GpuTensorBuffer[]) => void): Promise<Float32Array[]> {
  const ins = inputs.map((a) => be.upload("f32", a));
  const outs = sizes.map((n) => be.upload("f32", new Float32Array(n).fill(Number.NaN)));
  f(outs, ins);
  const got = [];
  for (let i = 0; i < outs.length; i++) got.push((await be.read(outs[i], "f32", sizes[i])) as Float32Array);
  for (const h of [...ins, ...outs]) be.release(h);
  return got;
}

async function checkForward(c: ForwardTiles, K = 32): Promise<void> {
  const be = await gpuBackend();
  for (const d of CASES.map((x) => ({ ...x, K }))) {
    const nq = d.B * d.T * d.H * d.K;
    const nkv = d.B * d.kvRows * d.G * d.K;
    const [q, k, v] = [randArray(nq, rng), randArray(nkv, rng), randArray(nkv, rng)];
    const out = new Float32Array(nq);
    const lse = new Float32Array(d.B * d.H * d.T);
    refKernels.attentionForward(out, lse, q, k, v, d);
    const [go, gl] = await run(be, [q, k, v], [nq, lse.length], ([o, l], [q_, k_, v_]) => dispatchAttentionForward(be.ctx, c, o, l, q_, k_, v_, d));
    const e = [relErr(Float64Array.from(go), Float64Array.from(out)), relErr(Float64Array.from(gl), Float64Array.from(lse))];
    assert.ok(e[0] < 3e-6 && e[1] < 3e-6, `forward ${JSON.stringify(c)} ${JSON.stringify(d)}: ${e}`);
  }
}

async function checkBackward(tiles: { dkv: BackwardTile; dq: BackwardTile }, K = 32): Promise<void> {
  const be = await gpuBackend();
  for (const d of CASES.map((x) => ({ ...x, K }))) {
    const nq = d.B * d.T * d.H * d.K;
    const nkv = d.B * d.kvRows * d.G * d.K;
    const [q, k, v, dout] = [randArray(nq, rng), randArray(nkv, rng), randArray(nkv, rng), randArray(nq, rng)];
    const out = new Float32Array(nq);
    const lse = new Float32Array(d.B * d.H * d.T);
    refKernels.attentionForward(out, lse, q, k, v, d);
    const want = [new Float32Array(nq), new Float32Array(nkv), new Float32Array(nkv)];
    refKernels.attentionBackward(want[0], want[1], want[2], dout, q, k, v, out, lse, d);
    const got = await run(be, [dout, q, k, v, out, lse], [nq, nkv, nkv], ([dq, dk, dv], x) => dispatchAttentionBackward(be.ctx, tiles, [dq, dk, dv], x[0], x[1], x[2], x[3], x[4], x[5], d));
    const e = got.map((g, i) => relErr(Float64Array.from(g), Float64Array.from(want[i])));
    assert.ok(Math.max(...e) < 3e-5, `backward ${JSON.stringify(tiles)} ${JSON.stringify(d)}: dq dk dv ${e}`);
  }
}

test("attention forward: 64-row blocks, 4 or 8 rows per thread, 4 to 16 threads per row, shuffles or workgroup memory", async () => {
  await checkForward({ BM: 64, BN: 32, TY: 16, TX: 8, shuffle: false });
  await checkForward({ BM: 64, BN: 32, TY: 8, TX: 8, shuffle: false });
  await checkForward({ BM: 64, BN: 32, TY: 16, TX: 4, shuffle: true });
  await checkForward({ BM: 32, BN: 32, TY: 8, TX: 16, shuffle: false });
  await checkForward({ BM: 32, BN: 16, TY: 8, TX: 4, shuffle: true });
});

test("attention backward: 32-key dK/dV blocks with 4, 8 or 16 threads per row, 64-query dQ blocks", async () => {
  await checkBackward({ dkv: { BM: 32, BN: 32, TY: 8, TX: 8 }, dq: { BM: 64, BN: 16, TY: 16, TX: 8 } });
  await checkBackward({ dkv: { BM: 32, BN: 32, TY: 8, TX: 4 }, dq: { BM: 32, BN: 32, TY: 8, TX: 4 } });
  await checkBackward({ dkv: { BM: 32, BN: 16, TY: 8, TX: 16 }, dq: { BM: 32, BN: 16, TY: 8, TX: 16 } });
});

test("attention forward: P by subgroup shuffles or over K's memory, 64-key steps, K and V in one tile, swizzled tiles, without prefetch", async () => {
  // 4 threads a row: SwiftShader's subgroups are narrower than the 8 an H200 uses
  const base = { TX: 4, shuffle: true } as const;
  await checkForward({ ...base, BM: 64, BN: 32, TY: 16, pv: "shfl" });
  await checkForward({ ...base, BM: 64, BN: 32, TY: 16, swz: true });
  await checkForward({ ...base, BM: 64, BN: 64, TY: 16, pv: "shfl", swz: true });
  await checkForward({ ...base, BM: 64, BN: 64, TY: 16, pv: "shfl", swz: true, pf: false });
  await checkForward({ ...base, BM: 64, BN: 64, TY: 16, pv: "alias", swz: true, pf: false });
  await checkForward({ ...base, BM: 64, BN: 64, TY: 8, pv: "shfl", swz: true, pf: false });
  await checkForward({ ...base, BM: 128, BN: 32, TY: 16, pv: "shfl", swz: true });
  await checkForward({ ...base, BM: 128, BN: 64, TY: 16, pv: "shfl", kvShared: true, swz: true });
  await checkForward({ ...base, BM: 128, BN: 64, TY: 16, pv: "shfl", kvShared: true, swz: true, pf: false });
  await checkForward({ ...base, BM: 64, BN: 32, TY: 16, kvShared: true, swz: true });
  // row statistics through workgroup memory with P over K
  await checkForward({ BM: 32, BN: 32, TY: 8, TX: 8, shuffle: false, pv: "alias", swz: true });
});

test("attention forward options: head sizes whose rows are not a power of two of vec4s (swizzle masks 0 and 1), scalar loads", async () => {
  for (const K of [36, 24, 6]) {
    await checkForward({ BM: 32, BN: 32, TY: 8, TX: 4, shuffle: true, pv: "shfl", swz: true }, K);
    await checkForward({ BM: 32, BN: 32, TY: 8, TX: 4, shuffle: true, pv: "alias", swz: true, pf: false }, K);
    await checkForward({ BM: 64, BN: 32, TY: 16, TX: 4, shuffle: true, pv: "shfl", kvShared: true, swz: true }, K);
  }
});

test("attention forward: the default's options at head size 64 (64-row blocks in SwiftShader's 32 KiB), and what the chooser picks on a 48 KiB GPU", async () => {
  await checkForward({ BM: 64, BN: 64, TY: 16, TX: 4, shuffle: true, pv: "shfl", kvShared: true, swz: true, pf: false }, 64);
  await checkForward({ BM: 64, BN: 32, TY: 8, TX: 4, shuffle: true, pv: "shfl", kvShared: true, swz: true, pf: "k" }, 64);
  await checkForward({ BM: 64, BN: 64, TY: 16, TX: 4, shuffle: true, pv: "shfl", kvShared: true, swz: true, pf: "b" }, 64);
  await checkForward({ BM: 64, BN: 32, TY: 8, TX: 4, shuffle: true, pv: "shfl", kvShared: true, swz: true, pf: "v" }, 36);
});

test("attention forward: workgroups over heads first (hx), K and V in one tile or apart, head sizes 64 and 30", async () => {
  const base = { TX: 4, shuffle: true, pv: "shfl", swz: true, pf: false, hx: true } as const;
  await checkForward({ ...base, BM: 64, BN: 64, TY: 16, kvShared: true }, 64);
  await checkForward({ ...base, BM: 64, BN: 64, TY: 16, kvShared: true });
  await checkForward({ ...base, BM: 64, BN: 32, TY: 8, swz: false });
  await checkForward({ BM: 32, BN: 32, TY: 8, TX: 8, shuffle: false, hx: true });
  await checkForward({ ...base, BM: 32, BN: 32, TY: 8, kvShared: true, pf: "b" }, 30);
});

test("attention forward: Q read from global memory (no Q tile), K and V apart or in one tile", async () => {
  await checkForward({ BM: 128, BN: 64, TY: 16, TX: 4, shuffle: true, pv: "shfl", swz: true, pf: false, qg: true }, 64);
  await checkForward({ BM: 128, BN: 64, TY: 16, TX: 4, shuffle: true, pv: "shfl", kvShared: true, swz: true, pf: false, qg: true });
  await checkForward({ BM: 128, BN: 32, TY: 16, TX: 4, shuffle: true, pv: "shfl", swz: true, qg: true });
  await checkForward({ BM: 64, BN: 32, TY: 16, TX: 8, shuffle: false, qg: true });
  await checkForward({ BM: 32, BN: 32, TY: 8, TX: 4, shuffle: true, pv: "shfl", swz: true, pf: "k", qg: true }, 36);
  const h200 = { bytes: 48 * 1024, invocations: 1024 };
  const long = { BM: 128, BN: 64, TY: 16, TX: 8, shuffle: true, pv: "shfl", kvShared: true, swz: true, pf: false };
  assert.deepEqual(chooseForwardTiles(64, h200, 32), long);
  // up to 16k rows the longest blocks of all heads start first
  assert.deepEqual(chooseForwardTiles(64, h200, 32, 1024), { ...long, hx: true });
  assert.deepEqual(chooseForwardTiles(64, h200, 32, 16384), { ...long, hx: true });
  assert.deepEqual(chooseForwardTiles(64, h200, 32, 16385), long);
  // short sequences (decoding) and larger heads keep the 64 x 32 kernel; without subgroups P cannot be shuffled
  assert.deepEqual(chooseForwardTiles(64, h200, 32, 1), { BM: 64, BN: 32, TY: 16, TX: 8, shuffle: true });
  assert.equal(chooseForwardTiles(128, h200, 32).pv, undefined);
  assert.deepEqual(chooseForwardTiles(64, h200, 0), { BM: 64, BN: 32, TY: 16, TX: 8, shuffle: false });
});

test("attention backward: P and dS by subgroup shuffles, swizzled tiles, 64-row blocks, dQ over one streamed tile (st1), heads first (hx)", async () => {
  // 4 threads a row: SwiftShader's subgroups are narrower than the 8 an H200 uses
  const base = { TX: 4, shfl: true, swz: true } as const;
  await checkBackward({ dkv: { ...base, BM: 64, BN: 32, TY: 16 }, dq: { ...base, BM: 64, BN: 32, TY: 16 } });
  await checkBackward({ dkv: { ...base, BM: 64, BN: 32, TY: 16, hx: true }, dq: { ...base, BM: 64, BN: 64, TY: 16, st1: true, hx: true } });
  await checkBackward({ dkv: { ...base, BM: 32, BN: 64, TY: 8, hx: true }, dq: { ...base, BM: 32, BN: 64, TY: 8, hx: true } });
  await checkBackward({ dkv: { ...base, BM: 32, BN: 32, TY: 8, swz: false }, dq: { ...base, BM: 32, BN: 16, TY: 4, st1: true } });
  // the exchange through workgroup memory with swizzled operand tiles
  await checkBackward({ dkv: { BM: 32, BN: 32, TY: 8, TX: 4, swz: true }, dq: { BM: 32, BN: 32, TY: 8, TX: 8, swz: true, st1: true } });
  await checkBackward({ dkv: { BM: 32, BN: 32, TY: 8, TX: 8, hx: true }, dq: { BM: 32, BN: 32, TY: 8, TX: 4, st1: true } });
});

test("attention backward options: head sizes 64 (in SwiftShader's 32 KiB) and 36, 30, 6 (swizzle masks 0 and 1, scalar loads); the chooser on a 48 KiB GPU", async () => {
  const base = { TX: 4, shfl: true, swz: true } as const;
  await checkBackward({ dkv: { ...base, BM: 32, BN: 32, TY: 8 }, dq: { ...base, BM: 32, BN: 64, TY: 8, st1: true } }, 64);
  for (const K of [36, 30, 6]) {
    await checkBackward({ dkv: { ...base, BM: 64, BN: 32, TY: 16 }, dq: { ...base, BM: 64, BN: 32, TY: 16, st1: true } }, K);
    await checkBackward({ dkv: { ...base, BM: 32, BN: 32, TY: 8, hx: true }, dq: { ...base, BM: 32, BN: 32, TY: 8 } }, K);
  }
  const h200 = { bytes: 48 * 1024, invocations: 1024 };
  const shfl = { shfl: true, swz: true } as const;
  const dkv = { BM: 64, BN: 32, TY: 16, TX: 8, ...shfl };
  const dq = { BM: 64, BN: 64, TY: 8, TX: 16, ...shfl, st1: true };
  const short = { BM: 32, BN: 64, TY: 8, TX: 16, ...shfl, hx: true };
  assert.deepEqual(chooseBackwardTiles("dkv", 64, h200, 32, 1024), short);
  assert.deepEqual(chooseBackwardTiles("dq", 64, h200, 32, 2047), short);
  assert.deepEqual(chooseBackwardTiles("dkv", 64, h200, 32, 4096), { ...dkv, hx: true });
  assert.deepEqual(chooseBackwardTiles("dq", 64, h200, 32, 2048), { ...dq, hx: true });
  assert.deepEqual(chooseBackwardTiles("dkv", 64, h200, 32, 4097), dkv);
  assert.deepEqual(chooseBackwardTiles("dq", 64, h200, 32), dq);
  // without shuffles wide enough (or an unknown width), and for heads over 64, the 32 x 32 kernel
  const generic = { BM: 32, BN: 32, TY: 8, TX: 16 };
  assert.deepEqual(chooseBackwardTiles("dkv", 64, h200, 4, 4096), generic);
  assert.deepEqual(chooseBackwardTiles("dq", 64, h200), generic);
  assert.equal(chooseBackwardTiles("dkv", 128, h200, 32).shfl, undefined);
});
