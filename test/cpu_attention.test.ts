/**
 * cpu attention (tiled and materialised, forward and backward) against the reference: grouped
 * KV heads, causal and not, a KV cache (qOffset > 0, kvRows > S), decoding (T = 1), head sizes
 * that are not multiples of the vector width, and blocks that cross the kernel's tile edges.
 */
import { test } from "node:test";
import { refKernels as ref } from "../src/backend/ref/index.js";
import type { AttentionDims } from "../src/backend/kernels.js";
import { Rng } from "../src/util/rng.js";
import { f32ToF16 } from "../src/util/half.js";
import { cpuBackends, randf, close, release, type Cpu } from "./cpu_helpers.js";

const cpus = cpuBackends();
const rng = new Rng(3);

type Case = Omit<AttentionDims, "scale" | "qOffset" | "kvRows"> & { qOffset?: number; kvRows?: number };

const CASES: Case[] = [
  { B: 2, T: 33, S: 33, H: 4, G: 2, K: 16, causal: true }, // GQA, prefill
  { B: 1, T: 1, S: 70, H: 3, G: 3, K: 32, causal: true, qOffset: 69, kvRows: 80 }, // decoding from a cache
  { B: 1, T: 70, S: 45, H: 2, G: 1, K: 12, causal: false }, // MQA, not causal, K % 8 != 0
  { B: 1, T: 40, S: 100, H: 3, G: 1, K: 8, causal: true, qOffset: 60, kvRows: 128 }, // chunk after a cached prefix
  { B: 2, T: 65, S: 130, H: 2, G: 2, K: 5, causal: true, qOffset: 65 }, // odd K, tile edges + 1
  { B: 1, T: 3, S: 3, H: 1, G: 1, K: 1, causal: true },
  { B: 1, T: 129, S: 129, H: 2, G: 1, K: 64, causal: true },
  // decoding (split-K over the keys): blocks of 64 keys, GQA, odd K, batch, a causal limit below S
  { B: 2, T: 1, S: 300, H: 4, G: 2, K: 5, causal: true, qOffset: 299, kvRows: 310 },
  { B: 1, T: 1, S: 1, H: 2, G: 1, K: 64, causal: true },
  { B: 1, T: 1, S: 150, H: 6, G: 3, K: 36, causal: false, kvRows: 160 },
  { B: 1, T: 1, S: 200, H: 2, G: 2, K: 16, causal: true, qOffset: 120, kvRows: 200 },
  // key rows read whole, four heads per pass: 12 heads over 3 KV heads, and 5 heads of odd size
  { B: 2, T: 1, S: 333, H: 12, G: 3, K: 64, causal: true, qOffset: 332, kvRows: 340 },
  { B: 1, T: 1, S: 77, H: 5, G: 5, K: 7, causal: true, qOffset: 76, kvRows: 77 },
];

function dims(c: Case): AttentionDims {
  return { ...c, scale: 1 / Math.sqrt(c.K), qOffset: c.qOffset ?? c.S - c.T, kvRows: c.kvRows ?? c.S };
}

function run({ be, label }: Cpu, c: Case, naive: boolean): void {
  const d = dims(c);
  const nq = d.B * d.T * d.H * d.K;
  const nkv = d.B * d.kvRows * d.G * d.K;
  const q = randf(be, nq, rng);
  const k = randf(be, nkv, rng);
  const v = randf(be, nkv, rng);
  const name = `${label} ${naive ? "naive" : "tiled"} ${JSON.stringify(c)}`;
  const out = be.allocate("f32", nq) as Float32Array;
  const outRef = new Float32Array(nq);
  const saved = be.allocate("f32", naive ? d.B * d.H * d.T * d.S : d.B * d.H * d.T) as Float32Array;
  const savedRef = new Float32Array(saved.length);
  if (naive) {
    ref.attentionNaiveForward(outRef, savedRef, q, k, v, d);
    be.kernels.attentionNaiveForward(out, saved, q, k, v, d);
  } else {
    ref.attentionForward(outRef, savedRef, q, k, v, d);
    be.kernels.attentionForward(out, saved, q, k, v, d);
  }
  close(out, outRef, 2e-6, `${name} out`);
  close(saved, savedRef, 2e-6, `${name} ${naive ? "probs" : "lse"}`);
  const dout = randf(be, nq, rng);
  const grads = [be.allocate("f32", nq), be.allocate("f32", nkv), be.allocate("f32", nkv)] as Float32Array[];
  for (const g of grads) g.fill(NaN); // every element must be written
  const want = [new Float32Array(nq), new Float32Array(nkv), new Float32Array(nkv)];
  if (naive) {
    ref.attentionNaiveBackward(want[0], want[1], want[2], dout, q, k, v, saved, d);
    be.kernels.attentionNaiveBackward(grads[0], grads[1], grads[2], dout, q, k, v, saved, d);
  } else {
    ref.attentionBackward(want[0], want[1], want[2], dout, q, k, v, out, saved, d);
    be.kernels.attentionBackward(grads[0], grads[1], grads[2], dout, q, k, v, out, saved, d);
  }
  ["dq", "dk", "dv"].forEach((g, i) => close(grads[i], want[i], 1e-5, `${name} ${g}`));
  release(be, q, k, v, out, saved, dout, ...grads);
}

test("attentionForward and attentionBackward (tiled, online softmax)", () => {
  for (const cpu of cpus) for (const c of CASES) run(cpu, c, false);
});

test("attentionNaiveForward and attentionNaiveBackward (materialised probabilities)", () => {
  for (const cpu of cpus) for (const c of CASES) run(cpu, c, true);
});

test("attentionForward from an f16 KV cache (decoding and prefill over the cache) equals ref widening the same halves", () => {
  for (const cpu of cpus) {
    for (const c of CASES) {
      for (const variant of ["normal", "large query", "Inf key"] as const) {
        if (variant !== "normal" && c.T !== 1) continue;
        const d: AttentionDims = { ...dims(c), kvDtype: "f16" };
        const nq = d.B * d.T * d.H * d.K;
        const nkv = d.B * d.kvRows * d.G * d.K;
        const q = randf(cpu.be, nq, rng);
        if (variant === "large query") q[0] = 70000; // too large to pre-scale: the exact conversion
        const k = cpu.be.allocate("f16", nkv) as Uint16Array;
        const v = cpu.be.allocate("f16", nkv) as Uint16Array;
        for (let i = 0; i < nkv; i++) {
          k[i] = f32ToF16(rng.normal());
          v[i] = f32ToF16(rng.normal());
        }
        if (variant === "Inf key" && d.S > 2) k[d.G * d.K + 1] = 0x7c00; // key row 1: that block exactly
        const out = cpu.be.allocate("f32", nq) as Float32Array;
        const lse = cpu.be.allocate("f32", d.B * d.H * d.T) as Float32Array;
        const outRef = new Float32Array(nq);
        const lseRef = new Float32Array(lse.length);
        ref.attentionForward(outRef, lseRef, q, k, v, d);
        cpu.be.kernels.attentionForward(out, lse, q, k, v, d);
        const name = `${cpu.label} f16 KV ${variant} ${JSON.stringify(c)}`;
        close(out, outRef, 2e-6, `${name} out`);
        close(lse, lseRef, 2e-6, `${name} lse`);
        release(cpu.be, q, k, v, out, lse);
      }
    }
  }
});
