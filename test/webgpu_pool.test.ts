/**
 * The webgpu buffer pool's bookkeeping, against a stand-in device (no GPU needed): reuse by size
 * class in creation order, the cap on free bytes, and which buffers go when it is reached.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { BufferPool, sizeClass } from "../src/backend/webgpu/pool.js";

interface FakeBuffer {
  size: number;
  id: number;
  destroyed: boolean;
  destroy(): void;
}

function fakeDevice(): { device: GPUDevice; made: FakeBuffer[] } {
  const made: FakeBuffer[] = [];
  const device = {
    createBuffer({ size }: { size: number }) {
      const b: FakeBuffer = { size, id: made.length, destroyed: false, destroy() { this.destroyed = true; } };
      made.push(b);
      return b;
    },
  } as unknown as GPUDevice;
  return { device, made };
}

test("pool: a released buffer comes back for the same size class, oldest first", () => {
  const { device, made } = fakeDevice();
  const pool = new BufferPool(device, 1 << 20);
  const a = pool.acquire(1000);
  const b = pool.acquire(1000);
  pool.release(b);
  pool.release(a);
  assert.equal(pool.acquire(900), a, "lowest creation number first");
  assert.equal(pool.acquire(1000), b);
  assert.equal(made.length, 2);
  assert.equal(pool.liveBytes, 2 * sizeClass(1000));
  assert.equal(pool.pooledBytes, 0);
});

test("pool: over the bound, the buffers released longest ago are destroyed, not the newest", () => {
  const { device, made } = fakeDevice();
  const pool = new BufferPool(device, 0);
  // three workloads in turn, each three buffers of its own size class live at once
  const phases = [4608, 5120, 5632].map((bytes) => {
    const bufs = [pool.acquire(bytes), pool.acquire(bytes), pool.acquire(bytes)];
    for (const b of bufs) pool.release(b);
    return bufs;
  });
  pool.afterSubmit();
  const destroyed = (bufs: GPUBuffer[]) => bufs.map((b) => (b as unknown as FakeBuffer).destroyed);
  assert.equal(pool.peakLiveBytes, 3 * 5632);
  assert.deepEqual(destroyed(phases[0]), [true, true, true], "the first workload's buffers went");
  assert.deepEqual(destroyed(phases[1]).concat(destroyed(phases[2])), [false, false, false, false, false, false]);
  assert.ok(pool.liveBytes + pool.pooledBytes <= 2 * pool.peakLiveBytes);
  // the newest workload runs again without new buffers
  const again = [pool.acquire(5632), pool.acquire(5632), pool.acquire(5632)];
  assert.deepEqual(new Set(again), new Set(phases[2]));
  assert.equal(made.length, 9);
});

test("pool: the cap grows to the most bytes ever live at once", () => {
  const { device, made } = fakeDevice();
  const pool = new BufferPool(device, 4096);
  const a = pool.acquire(1 << 20);
  const b = pool.acquire(1 << 20);
  assert.equal(pool.peakLiveBytes, 2 << 20);
  pool.release(a);
  pool.release(b);
  pool.afterSubmit();
  assert.equal(pool.pooledBytes, 2 << 20, "both kept: that much was live");
  assert.ok(made.every((x) => !x.destroyed));
  pool.acquire(1 << 20);
  pool.acquire(1 << 20);
  assert.equal(made.length, 2, "the second round reuses them");
});

test("pool: trim gives every free buffer back", () => {
  const { device, made } = fakeDevice();
  const pool = new BufferPool(device, 1 << 20);
  for (const n of [100, 5000, 70000]) pool.release(pool.acquire(n));
  const peak = pool.peakLiveBytes;
  pool.trim();
  pool.afterSubmit();
  assert.equal(pool.pooledBytes, 0);
  assert.ok(peak > 0 && pool.peakLiveBytes === 0, "the peak starts afresh");
  assert.ok(made.every((b) => b.destroyed));
  pool.acquire(100);
  assert.equal(made.length, 4, "a new buffer after trim");
});

test("pool: a large request with no free buffer of its class takes one of up to twice its size", () => {
  const MiB = 1 << 20;
  const { device, made } = fakeDevice();
  const pool = new BufferPool(device, 64 * MiB);
  const a = pool.acquire(12 * MiB);
  pool.release(a);
  assert.equal(pool.acquire(7 * MiB), a, "12 MiB serve a 7 MiB class");
  pool.release(a);
  assert.notEqual(pool.acquire(5 * MiB), a, "but not a 5 MiB one");
  // small requests keep to their class (decoding steps reuse the same buffers for the bind-group cache)
  const s = pool.acquire(3000);
  pool.release(s);
  assert.notEqual(pool.acquire(2000), s);
  assert.equal(made.length, 4);
  // two classes used in turn, never live together: the first round's buffer serves both
  const { device: d2, made: m2 } = fakeDevice();
  const p2 = new BufferPool(d2, 0);
  for (let round = 0; round < 5; round++) {
    p2.release(p2.acquire(32 * MiB));
    p2.release(p2.acquire(24 * MiB));
  }
  assert.equal(m2.length, 1, "one buffer for both, every round");
});

test("pool: live + free bytes stay within twice the peak live bytes (or live + the floor) and the accounting matches", () => {
  const { device, made } = fakeDevice();
  const floor = 64 * 1024;
  const pool = new BufferPool(device, floor);
  let seed = 7;
  const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const live: GPUBuffer[] = [];
  for (let step = 0; step < 3000; step++) {
    // phases of different sizes, like forwards at growing lengths
    const scale = 256 << Math.floor(step / 500);
    if (live.length > 0 && rand() < 0.5) pool.release(live.splice(Math.floor(rand() * live.length), 1)[0]);
    else live.push(pool.acquire(Math.ceil(rand() * scale)));
    pool.afterSubmit();
    const held = made.filter((b) => !b.destroyed).reduce((a, b) => a + b.size, 0);
    assert.equal(held, pool.liveBytes + pool.pooledBytes, "the accounting matches the buffers alive");
    assert.equal(pool.liveBytes, live.reduce((a, b) => a + b.size, 0));
    assert.ok(held <= Math.max(2 * pool.peakLiveBytes, pool.liveBytes + floor), `step ${step}: ${held} held`);
  }
});
