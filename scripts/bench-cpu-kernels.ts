/**
 * Benchmark of the cpu backend's kernels (`seqlab bench cpu` measures matmuls and whole models): the machine's measured
 * f32x4 peak, matmul GFLOP/s at prefill shapes and a decoding matrix-vector product, attention
 * forward (and backward) times, and the cost of one dispatch to the worker threads; on 1 and on
 * N threads. Prints a table and writes JSON.
 *
 *   npx tsx scripts/bench-cpu-kernels.ts [--threads 1,2] [--out out/bench-cpu-kernels.json] [--quick]
 *
 * Counting: a matmul does 2 M N K flops; its floor is max(flops / peak, bytes / bandwidth).
 * Causal attention over T queries does 2 products of T (T + 1) / 2 x K per head, 2 flops each.
 * Times are the best of several runs (the machine may be shared; the best is the least disturbed);
 * the peak is the best of short runs before and after the kernels, so the fractions are, if
 * anything, underestimates on a busy machine. The load average is printed with the results.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import * as os from "node:os";
import { CpuBackend } from "../src/backend/cpu/backend.js";
import type { AttentionDims } from "../src/backend/kernels.js";
import { bestSeconds, benchMatmul as benchMatmulCase, simdPeakGflops, type MatmulCase } from "../src/bench/cpu_kernels.js";
import { intListFlag } from "../src/cli/args.js";

const argv = process.argv.slice(2);
const flag = (name: string) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : undefined;
};
const quick = argv.includes("--quick");
const threadList = intListFlag("bench-cpu-kernels", "threads", flag("threads"), [1, os.availableParallelism()], 1, 256);
const outPath = flag("out") ?? "out/bench-cpu-kernels.json";
const REPS = quick ? 3 : 15;

const best = (fn: () => void, reps = REPS) => bestSeconds(fn, reps);

function randomView(be: CpuBackend, n: number): Float32Array {
  const a = be.allocate("f32", n) as Float32Array;
  for (let i = 0; i < n; i++) a[i] = Math.random() - 0.5;
  return a;
}

const peak = (be: CpuBackend) => simdPeakGflops(be, quick ? 1000 : 3000);

const MATMULS: MatmulCase[] = [
  { name: "prefill 768x768x768 (x W^T)", d: { M: 768, N: 768, K: 768, transA: false, transB: true, accumulate: false } },
  { name: "MLP up 512x2048x768 (x W^T)", d: { M: 512, N: 2048, K: 768, transA: false, transB: true, accumulate: false } },
  { name: "weight grad 768x768, K=512 (dy^T x)", d: { M: 768, N: 768, K: 512, transA: true, transB: false, accumulate: false } },
  { name: "decode matvec 1x2048x768 (x W^T)", d: { M: 1, N: 2048, K: 768, transA: false, transB: true, accumulate: false } },
  { name: "decode matvec, bf16 weights", d: { M: 1, N: 2048, K: 768, transA: false, transB: true, accumulate: false, bDtype: "bf16" } },
  { name: "decode matvec 1x4096x4096 (16 MiB > L2)", d: { M: 1, N: 4096, K: 4096, transA: false, transB: true, accumulate: false } },
  { name: "decode matvec 4096x4096, bf16 weights", d: { M: 1, N: 4096, K: 4096, transA: false, transB: true, accumulate: false, bDtype: "bf16" } },
  { name: "decode matvec 4096x4096, f16 weights", d: { M: 1, N: 4096, K: 4096, transA: false, transB: true, accumulate: false, bDtype: "f16" } },
];

function attentionDims(T: number, S = T): AttentionDims {
  return { B: 1, T, S, H: 12, G: 12, K: 64, scale: 0.125, causal: true, qOffset: S - T, kvRows: S };
}

function benchAttention(be: CpuBackend, T: number, backward: boolean, S = T) {
  const d = attentionDims(T, S);
  const nq = d.B * d.T * d.H * d.K;
  const nkv = d.B * d.kvRows * d.G * d.K;
  const q = randomView(be, nq);
  const k = randomView(be, nkv);
  const v = randomView(be, nkv);
  const out = be.allocate("f32", nq) as Float32Array;
  const lse = be.allocate("f32", d.B * d.H * d.T) as Float32Array;
  const reps = T >= 4096 ? Math.min(REPS, 3) : REPS;
  let t = best(() => be.kernels.attentionForward(out, lse, q, k, v, d), reps);
  const bufs = [q, k, v, out, lse];
  if (backward) {
    const dout = randomView(be, nq);
    const dq = be.allocate("f32", nq) as Float32Array;
    const dk = be.allocate("f32", nkv) as Float32Array;
    const dv = be.allocate("f32", nkv) as Float32Array;
    t = best(() => be.kernels.attentionBackward(dq, dk, dv, dout, q, k, v, out, lse, d), reps);
    bufs.push(dout, dq, dk, dv);
  }
  for (const x of bufs) be.release(x);
  // visible (query, key) pairs under the causal mask, each costing 2 K-long products (4 K flops)
  const pairs = d.H * (T === S ? (T * (T + 1)) / 2 : T * S);
  const flops = pairs * 4 * d.K * (backward ? 2.5 : 1);
  return { seconds: t, ms: t * 1e3, gflops: flops / t / 1e9 };
}

/** Microseconds per kernel call of a tiny kernel split across every thread (the pool's round trip). */
async function dispatchOverhead(threads: number): Promise<number> {
  const be = await CpuBackend.create({ threads, forceThreads: true });
  const x = be.allocate("f32", 64) as Float32Array;
  const n = 20000;
  const t = best(() => {
    for (let i = 0; i < n; i++) be.kernels.fill(x, 1, 64);
  }, 3);
  await be.dispose();
  return (t / n) * 1e6;
}

const pad = (s: string | number, n: number) => String(s).padStart(n);
const results: Record<string, unknown>[] = [];
const lines: string[] = [];
const log = (l: string) => {
  lines.push(l);
  console.log(l);
};

log(`seqlab cpu kernel benchmark: ${os.cpus()[0]?.model ?? "cpu"}, ${os.availableParallelism()} cores, node ${process.version}, load average ${os.loadavg()[0].toFixed(1)}`);
for (const threads of threadList) {
  const be = await CpuBackend.create({ threads });
  const pkBefore = peak(be);
  const matmuls = MATMULS.map((c) => ({ c, r: benchMatmulCase(be, c, REPS) }));
  const attn: [string, number, boolean, number?][] = [
    ["forward T=1024", 1024, false],
    ["forward T=4096", 4096, false],
    ["backward T=1024", 1024, true],
    ["decode step (T=1, S=4096)", 1, false, 4096],
  ];
  const attns = attn.filter(([, T]) => !(quick && T === 4096)).map(([name, T, backward, S]) => ({ name, T, backward, S: S ?? T, r: benchAttention(be, T, backward, S ?? T) }));
  const pk = Math.max(pkBefore, peak(be));
  log("");
  log(`${be.describe()}: measured f32x4 multiply-add peak ${pk.toFixed(1)} GFLOP/s (${(pk / threads).toFixed(1)} per thread; load average ${os.loadavg()[0].toFixed(1)})`);
  log(`  ${"matmul".padEnd(40)} ${pad("ms", 9)} ${pad("GFLOP/s", 9)} ${pad("of peak", 8)} ${pad("GB/s", 7)}`);
  for (const { c, r } of matmuls) {
    const frac = r.gflops / pk;
    log(`  ${c.name.padEnd(40)} ${pad((r.seconds * 1e3).toFixed(3), 9)} ${pad(r.gflops.toFixed(1), 9)} ${pad((100 * frac).toFixed(0) + "%", 8)} ${pad(r.gbytesPerSecond.toFixed(1), 7)}`);
    results.push({ kind: "matmul", threads, name: c.name, dims: c.d, ...r, peakGflops: pk, fractionOfPeak: frac });
  }
  log(`  ${"attention (B=1, H=12, K=64, causal)".padEnd(40)} ${pad("ms", 9)} ${pad("GFLOP/s", 9)} ${pad("of peak", 8)}`);
  for (const { name, T, backward, S, r } of attns) {
    log(`  ${name.padEnd(40)} ${pad(r.ms.toFixed(3), 9)} ${pad(r.gflops.toFixed(1), 9)} ${pad(((100 * r.gflops) / pk).toFixed(0) + "%", 8)}`);
    results.push({ kind: "attention", threads, name, T, S, backward, ...r, peakGflops: pk, fractionOfPeak: r.gflops / pk });
  }
  await be.dispose();
  if (threads > 1) {
    const us = await dispatchOverhead(threads);
    log(`  dispatch round trip to ${threads - 1} worker${threads > 2 ? "s" : ""}: ${us.toFixed(1)} us per kernel call`);
    results.push({ kind: "dispatch", threads, microseconds: us });
  }
}

// thread scaling: time on the fewest threads over time on each other count, per case
if (threadList.length > 1) {
  const base = Math.min(...threadList);
  log("");
  log(`speedup over ${base} thread${base === 1 ? "" : "s"} (same case, best times):`);
  for (const r of results.filter((x) => x.threads === base && x.kind !== "dispatch")) {
    const others = threadList.filter((t) => t !== base).map((t) => {
      const o = results.find((x) => x.threads === t && x.name === r.name);
      return o ? `${t} threads ${((r.seconds as number) / (o.seconds as number)).toFixed(2)}x` : "";
    });
    log(`  ${String(r.name).padEnd(40)} ${others.join("  ")}`);
  }
}

fs.mkdirSync(path.dirname(outPath), { recursive: true });
fs.writeFileSync(outPath, JSON.stringify({ machine: { cpu: os.cpus()[0]?.model, cores: os.availableParallelism(), node: process.version }, results }, null, 2));
console.log(`\nwrote ${outPath}`);
