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

test("pool: over the cap, the buffers released longest ago are destroyed, not the newest", () => {
  const { device, made } = fakeDevice();
  const cls = sizeClass(4096);
  const pool = new BufferPool(device, 3 * cls);
  // a workload at one length fills the pool with its size class ...
  const old = [pool.acquire(4096), pool.acquire(4096), pool.acquire(4096)];
  for (const b of old) pool.release(b);
  assert.equal(pool.pooledBytes, 3 * cls);
  // ... then another length repeats acquire/release of a different class
  const big = pool.acquire(2 * 4096);
  pool.release(big);
  pool.afterSubmit();
  assert.equal((big as unknown as FakeBuffer).destroyed, false, "the newest release is kept");
  assert.equal(made.filter((b) => b.destroyed).length, 2, "two of the old class made room");
  assert.ok(pool.pooledBytes <= 3 * cls);
  for (let i = 0; i < 5; i++) {
    const again = pool.acquire(2 * 4096);
    assert.equal(again, big, "the repeated size is served from the pool");
    pool.release(again);
  }
  assert.equal(made.length, 4, "no buffer created after the first of the new class");
  // the survivor of the old class is still there for its size
  assert.equal(pool.acquire(4096), old[2]);
});

test("pool: a buffer larger than the whole cap is destroyed after the next submit", () => {
  const { device } = fakeDevice();
  const pool = new BufferPool(device, 4096);
  const small = pool.acquire(1024);
  pool.release(small);
  const huge = pool.acquire(1 << 20) as unknown as FakeBuffer;
  pool.release(huge as unknown as GPUBuffer);
  assert.equal(huge.destroyed, false, "not before the recorded work is submitted");
  pool.afterSubmit();
  assert.equal(huge.destroyed, true);
  assert.equal(pool.acquire(1024), small, "the pool kept what fits");
});

test("pool: trim gives every free buffer back", () => {
  const { device, made } = fakeDevice();
  const pool = new BufferPool(device, 1 << 20);
  for (const n of [100, 5000, 70000]) pool.release(pool.acquire(n));
  pool.trim();
  pool.afterSubmit();
  assert.equal(pool.pooledBytes, 0);
  assert.ok(made.every((b) => b.destroyed));
  pool.acquire(100);
  assert.equal(made.length, 4, "a new buffer after trim");
});
