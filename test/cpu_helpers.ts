/**
 * Helpers for the cpu backend tests: backends with 1, 2 and 3 threads (the multi-thread ones
 * split every kernel however small, so partition edges are exercised on small sizes) on the
 * default instruction set, and one on plain simd128 (wasm_module.ts: the default is relaxed SIMD
 * wherever the engine runs it, so both builds of every kernel meet the reference), random
 * views in the wasm memory, and comparison with the reference kernels on the same handles.
 */
import { after, before } from "node:test";
import assert from "node:assert/strict";
import { CpuBackend } from "../src/backend/cpu/backend.js";
import type { HostArray } from "../src/tensor/dtype.js";
import { Rng } from "../src/util/rng.js";

export interface Cpu {
  be: CpuBackend;
  label: string;
}

/** Backends created before the file's tests and disposed after them. */
export function cpuBackends(): Cpu[] {
  const list: Cpu[] = [];
  before(async () => {
    list.push({ be: await CpuBackend.create({ threads: 1 }), label: "1 thread" });
    list.push({ be: await CpuBackend.create({ threads: 2, forceThreads: true }), label: "2 threads" });
    list.push({ be: await CpuBackend.create({ threads: 3, forceThreads: true }), label: "3 threads" });
    list.push({ be: await CpuBackend.create({ threads: 2, forceThreads: true, isa: "simd128" }), label: "2 threads, simd128" });
  });
  after(async () => {
    for (const c of list) await c.be.dispose();
  });
  return list;
}

export function randf(be: CpuBackend, n: number, rng: Rng, std = 1, mean = 0): Float32Array {
  const a = be.allocate("f32", n) as Float32Array;
  for (let i = 0; i < n; i++) a[i] = mean + std * rng.normal();
  return a;
}

export function zerosf(be: CpuBackend, n: number): Float32Array {
  const a = be.allocate("f32", n) as Float32Array;
  a.fill(0);
  return a;
}

/** A cpu view holding a copy of `a`. */
export function copyOf<T extends HostArray>(be: CpuBackend, a: T): T {
  const dtype = a instanceof Float32Array ? "f32" : a instanceof Int32Array ? "i32" : "f16";
  return be.upload(dtype, a) as T;
}

/** A plain host copy (for the reference kernel's outputs). */
export function hostCopy<T extends HostArray>(a: T): T {
  return a.slice() as T;
}

/**
 * Relative L2 error below tol; NaNs must match position for position. `floor` replaces ||want||
 * when that is smaller (results that cancel to near zero are compared against the size of their terms).
 */
export function close(got: ArrayLike<number>, want: ArrayLike<number>, tol: number, what: string, floor = 0): void {
  assert.equal(got.length, want.length, `${what}: length`);
  const g: number[] = [];
  const w: number[] = [];
  for (let i = 0; i < want.length; i++) {
    if (Number.isNaN(want[i]) || Number.isNaN(got[i])) {
      assert.ok(Number.isNaN(want[i]) && Number.isNaN(got[i]), `${what}: NaN at ${i} (got ${got[i]}, want ${want[i]})`);
      continue;
    }
    if (!Number.isFinite(want[i]) || !Number.isFinite(got[i])) {
      assert.equal(got[i], want[i], `${what}: at ${i}`);
      continue;
    }
    g.push(got[i]);
    w.push(want[i]);
  }
  let num = 0;
  let den = 0;
  for (let i = 0; i < w.length; i++) {
    num += (g[i] - w[i]) ** 2;
    den += w[i] ** 2;
  }
  const e = den > 0 || floor > 0 ? Math.sqrt(num) / Math.max(Math.sqrt(den), floor) : Math.sqrt(num);
  assert.ok(e <= tol, `${what}: relative error ${e.toExponential(2)} > ${tol}`);
}

/** Elementwise: |got - want| <= rel * |want| + abs everywhere. */
export function closeEach(got: ArrayLike<number>, want: ArrayLike<number>, rel: number, abs: number, what: string): void {
  assert.equal(got.length, want.length, `${what}: length`);
  for (let i = 0; i < want.length; i++) {
    if (Number.isNaN(want[i])) {
      assert.ok(Number.isNaN(got[i]), `${what}: at ${i} got ${got[i]}, want NaN`);
      continue;
    }
    if (!Number.isFinite(want[i])) {
      assert.equal(got[i], want[i], `${what}: at ${i}`);
      continue;
    }
    const d = Math.abs(got[i] - want[i]);
    assert.ok(d <= rel * Math.abs(want[i]) + abs, `${what}: at ${i} got ${got[i]}, want ${want[i]}`);
  }
}

export function release(be: CpuBackend, ...hs: HostArray[]): void {
  for (const h of hs) be.release(h);
}

/** ||a * b|| over a shared index (the size of the terms of a gradient like dy * w). */
export function termNorm(rows: number, C: number, f: (r: number, c: number) => number): number {
  let s = 0;
  for (let r = 0; r < rows; r++) for (let c = 0; c < C; c++) s += f(r, c) ** 2;
  return Math.sqrt(s);
}
