/**
 * The cpu backend's plumbing: the heap allocator (alignment, reuse, merging, growth, views
 * surviving a grow, the 4 GiB limit), exact memory accounting, handles that the reference
 * kernels accept, the report of native kernels, and worker shutdown.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { WasmHeap, ALIGN, PAGE } from "../src/backend/cpu/heap.js";
import { CpuBackend } from "../src/backend/cpu/backend.js";
import { relaxedSimdAvailable } from "../src/backend/cpu/wasm_module.js";
import { createBackend } from "../src/backend/registry.js";
import { refKernels } from "../src/backend/ref/index.js";
import { fromArray, toArraySync } from "../src/backend/alloc.js";
import * as ops from "../src/ops/index.js";
import { SeqlabError } from "../src/util/errors.js";
import { tidy } from "../src/tensor/scope.js";

test("heap: aligned blocks, exact-size reuse, best fit with split", () => {
  const heap = new WasmHeap(1000, PAGE);
  const a = heap.alloc(10);
  const b = heap.alloc(100);
  const c = heap.alloc(64);
  for (const p of [a, b, c]) assert.equal(p % ALIGN, 0);
  assert.ok(a >= 1000 && b >= a + 64 && c >= b + 128);
  heap.free(b, 100);
  assert.equal(heap.alloc(128), b, "an exactly sized free block is reused");
  heap.free(b, 128);
  heap.coalesce(); // small blocks wait unmerged in exact-size lists until coalesced
  assert.equal(heap.alloc(10), b, "a larger free block is split");
  assert.equal(heap.alloc(64), b + 64, "and its rest reused");
  assert.equal(heap.stats().freeBlocks, 0);
});

test("heap: freed neighbours merge, and the top of the heap shrinks back", () => {
  const heap = new WasmHeap(0, PAGE);
  const blocks = [0, 1, 2, 3].map(() => heap.alloc(256));
  const top = heap.stats().top;
  heap.free(blocks[1], 256);
  heap.free(blocks[2], 256);
  assert.deepEqual([heap.stats().freeBlocks, heap.stats().freeBytes], [2, 512], "small blocks wait in exact-size lists");
  heap.coalesce(); // blocks[2] merges with blocks[1]
  assert.deepEqual([heap.stats().freeBlocks, heap.stats().freeBytes], [1, 512]);
  assert.equal(heap.alloc(512), blocks[1], "merged space holds a block twice the size");
  heap.free(blocks[1], 512);
  heap.free(blocks[3], 256);
  heap.coalesce(); // merges with the free 512 bytes, and all of it is at the top
  assert.equal(heap.stats().freeBlocks, 0);
  assert.equal(heap.stats().top, top - 768);
  assert.equal(heap.stats().liveBytes, 256);
});

test("heap: freed small blocks are reused as they are, and coalesced before the memory grows", () => {
  const heap = new WasmHeap(0, PAGE);
  const small = Array.from({ length: 8 }, () => heap.alloc(PAGE / 16));
  const grownAt = heap.stats().memoryBytes;
  for (const p of small) heap.free(p, PAGE / 16);
  assert.equal(heap.alloc(PAGE / 16), small[7], "the last freed block of the size comes back");
  heap.free(small[7], PAGE / 16);
  // half the page is free in eight pieces: a request for all of it merges them rather than grow
  const big = heap.alloc(PAGE / 2);
  assert.equal(big, small[0]);
  assert.equal(heap.stats().memoryBytes, grownAt);
  assert.deepEqual([heap.stats().freeBlocks, heap.stats().liveBytes], [0, PAGE / 2]);
});

test("heap: the memory grows on demand and views made before a grow stay valid", () => {
  const heap = new WasmHeap(0, PAGE);
  const p = heap.alloc(1024);
  const before = heap.view(Float32Array, p, 256);
  before.fill(3);
  const q = heap.alloc(8 * PAGE);
  assert.ok(heap.stats().memoryBytes >= q + 8 * PAGE);
  const after = heap.view(Float32Array, p, 256);
  assert.notEqual(after.buffer, before.buffer, "the memory exposes a new buffer after growing");
  assert.equal(after[7], 3);
  before[9] = -1; // writes through the old view land in the same memory
  assert.equal(after[9], -1);
  assert.ok(heap.owns(before) && heap.owns(after) && !heap.owns(new Float32Array(4)));
});

test("heap: a request past the 4 GiB wasm32 limit is a clear SeqlabError", () => {
  const heap = new WasmHeap(0, PAGE);
  assert.throws(
    () => heap.alloc(5 * 2 ** 30, "a f32 tensor of 1342177280 elements"),
    (e: unknown) => e instanceof SeqlabError && /4 GiB/.test(e.message) && /f32 tensor/.test(e.message) && !e.message.includes("\n"),
  );
});

test("backend: exact memory accounting, typed views, ref kernels on the same handles", async () => {
  const be = await CpuBackend.create({ threads: 2 });
  try {
    assert.equal(be.describe(), (await relaxedSimdAvailable()) ? "cpu (wasm simd128 + relaxed FMA, 2 threads)" : "cpu (wasm simd128, 2 threads)");
    assert.equal(be.memory().bytesInUse, 0);
    const f = be.allocate("f32", 10);
    const i = be.allocate("i32", 3);
    const h = be.allocate("bf16", 5);
    assert.ok(f instanceof Float32Array && i instanceof Int32Array && h instanceof Uint16Array);
    assert.deepEqual(be.memory(), { bytesInUse: 40 + 12 + 10, peakBytes: 62, allocations: 3 });
    be.release(f);
    be.resetPeak();
    assert.deepEqual(be.memory(), { bytesInUse: 22, peakBytes: 22, allocations: 2 });
    be.release(i);
    be.release(h);
    assert.equal(be.memory().bytesInUse, 0);
    // tensors made through the ops layer: the same handles work with the reference kernels
    const x = fromArray(be, [1, -2, 3, -4], [2, 2]);
    const y = tidy(() => ops.unary("relu", x));
    const viaRef = new Float32Array(4);
    refKernels.unaryForward("relu", viaRef, x.handle as Float32Array, 4);
    assert.deepEqual(Array.from(toArraySync(y)), Array.from(viaRef));
    refKernels.fill(y.handle as Float32Array, 2, 4); // the reference writes into wasm memory
    assert.deepEqual(Array.from(toArraySync(y)), [2, 2, 2, 2]);
    x.dispose();
    y.dispose();
    assert.equal(be.memory().bytesInUse, 0);
    // every core kernel is native; whatever is not is listed by name
    const native = new Set(be.nativeKernels());
    for (const k of ["fill", "cast", "matmul", "attentionForward", "attentionBackward", "crossEntropyBackward", "ropeForward"]) assert.ok(native.has(k as never), k);
    for (const k of be.refKernels()) assert.ok(!native.has(k) && be.describe().includes(k));
    assert.ok(!be.refKernels().includes("sigmoid" as never), "scalar helpers of the reference are not kernels");
    // storage from elsewhere is refused, not silently misread
    assert.throws(() => be.kernels.fill(new Float32Array(4), 1, 4), /not cpu-backend storage/);
    // a tensor larger than the initial memory grows it; earlier handles keep working in kernels
    const small = be.allocate("f32", 8) as Float32Array;
    small.fill(2);
    const big = be.allocate("f32", 6 << 20) as Float32Array;
    assert.ok(be.heapStats().memoryBytes >= 24 << 20);
    be.kernels.fill(big, 1, big.length);
    be.kernels.axpby(small, 3, small, 0, small, 8);
    assert.deepEqual(Array.from(small), new Array(8).fill(6));
    assert.equal(big[big.length - 1], 1);
    be.release(small);
    be.release(big);
  } finally {
    await be.dispose();
  }
});

test("backend: registry, thread option, and shutdown", async () => {
  const be = (await createBackend("cpu", { threads: 3 })) as CpuBackend;
  assert.equal(be.threads, 3);
  const a = be.allocate("f32", 1 << 18) as Float32Array;
  be.kernels.fill(a, 1, a.length); // large enough to use every thread
  assert.ok(a.every((v) => v === 1));
  await be.dispose();
  await be.dispose(); // idempotent
  assert.throws(() => be.kernels.fill(a, 2, a.length), /after dispose/);
  await assert.rejects(createBackend("cpu", { threads: 0 }), SeqlabError);
  await assert.rejects(createBackend("cpu", { precision: "f64" }), SeqlabError);
});

test("backend: the instruction set is chosen, named, and refused when unknown", async () => {
  const plain = await CpuBackend.create({ threads: 1, isa: "simd128" });
  assert.equal(plain.describe(), "cpu (wasm simd128, 1 thread)");
  await plain.dispose();
  if (await relaxedSimdAvailable()) {
    const fused = (await createBackend("cpu", { threads: 1, cpuIsa: "relaxed" })) as CpuBackend;
    assert.equal(fused.describe(), "cpu (wasm simd128 + relaxed FMA, 1 thread)");
    await fused.dispose();
  }
  await assert.rejects(
    CpuBackend.create({ threads: 1, isa: "avx512" as never }),
    (e: unknown) => e instanceof SeqlabError && e.message === "cpu backend: isa must be one of simd128, relaxed, got avx512",
  );
});
