/**
 * Benchmark of the cpu backend's mixer kernels (scan, SSD, RWKV, MoE, DeltaNet, optimizer) at
 * showdown-like sizes: each kernel's time against its reference twin on the same handles (the
 * speedup), the bytes it must move at least (every input read once, every output written once)
 * as GB/s and as a fraction of the measured streaming bandwidth (the memory-bound floor), and
 * the training step time of the showdown's presets with native mixers against the same backend
 * running the reference mixers (the state before the mixers were ported).
 *
 *   npx tsx scripts/bench-cpu-mixers.ts [--threads N] [--clock wall|cpu] [--quick] [--no-train] [--out out/bench-cpu-mixers.json]
 *
 * `--clock cpu` (with --threads 1) times by the process's CPU time instead of the wall clock:
 * on a machine shared with other work, time spent descheduled then does not count.
 *
 * Times are the best of several runs (the machine may be shared); the reference kernels, which
 * are slow, run once or twice. Working sets of a few MiB sit in L2/L3, where a kernel can beat
 * the DRAM floor: the fraction is of the floor, not a bound.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import * as os from "node:os";
import { CpuBackend } from "../src/backend/cpu/backend.js";
import { cpuMixerKernels } from "../src/backend/cpu/mixers.js";
import { refKernels } from "../src/backend/ref/index.js";
import type { Kernels } from "../src/backend/kernels.js";
import type { HostArray } from "../src/tensor/dtype.js";
import { ARCHS, buildArch } from "../src/experiments/zoo.js";
import { train } from "../src/train/trainer.js";
import { makeTask } from "../src/tasks/registry.js";
import { intFlag } from "../src/cli/args.js";
import { Rng } from "../src/util/rng.js";
import { SeqlabError } from "../src/util/errors.js";

const argv = process.argv.slice(2);
const flag = (name: string) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : undefined;
};
const quick = argv.includes("--quick");
const threads = intFlag("bench-cpu-mixers", "threads", flag("threads"), os.availableParallelism(), 1, 256);
const outPath = flag("out") ?? "out/bench-cpu-mixers.json";
const clock = flag("clock") ?? "wall";
if (clock !== "wall" && clock !== "cpu") throw new SeqlabError(`bench-cpu-mixers: --clock must be wall or cpu, got ${clock}`);
if (clock === "cpu" && threads !== 1) throw new SeqlabError("bench-cpu-mixers: --clock cpu needs --threads 1 (CPU time adds up every thread)");

/** Seconds on the chosen clock. */
function now(): number {
  if (clock === "wall") return performance.now() / 1e3;
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}
const REPS = quick ? 3 : 10;
const rng = new Rng(1);

/** Best wall time of `reps` runs, in seconds, after one warm-up run. */
function best(fn: () => void, reps = REPS): number {
  fn();
  let t = Infinity;
  for (let r = 0; r < reps; r++) {
    const t0 = now();
    fn();
    t = Math.min(t, now() - t0);
  }
  return t;
}

type K = Kernels<HostArray>;

interface Case {
  family: string;
  name: string;
  /** runs the kernel through a table (native or reference) */
  run: (k: K) => void;
  /** minimum bytes moved */
  bytes: number;
  /** multiply-adds x 2, where the kernel is a product */
  flops?: number;
}

/** A random f32 view: normal(std, mean), or uniform in [lo, hi) when given. */
function f32(be: CpuBackend, n: number, o: { std?: number; mean?: number; lo?: number; hi?: number } = {}): Float32Array {
  const a = be.allocate("f32", n) as Float32Array;
  for (let i = 0; i < n; i++) a[i] = o.lo !== undefined ? o.lo + (o.hi! - o.lo) * rng.uniform() : (o.mean ?? 0) + (o.std ?? 1) * rng.normal();
  return a;
}

const out = (be: CpuBackend, n: number) => be.allocate("f32", n) as Float32Array;

function scanCases(be: CpuBackend): Case[] {
  const cases: Case[] = [];
  {
    const [B, T, D, N, chunk] = [16, 256, 128, 16, 64];
    const d = { B, T, D, N, chunk, deltaSoftplus: true };
    const chunks = Math.ceil(T / chunk);
    const [u, dt, z] = [f32(be, B * T * D), f32(be, B * T * D, { mean: -2 }), f32(be, B * T * D)];
    const A = f32(be, D * N, { lo: -16, hi: -1 });
    const [Bm, Cm] = [f32(be, B * T * N), f32(be, B * T * N)];
    const [Dskip, dtBias] = [f32(be, D), f32(be, D, { std: 0.5 })];
    const [y, ckpt, dout] = [out(be, B * T * D), out(be, B * chunks * D * N), f32(be, B * T * D)];
    const g = [out(be, B * T * D), out(be, B * T * D), out(be, D * N), out(be, B * T * N), out(be, B * T * N), out(be, D), out(be, B * T * D), out(be, D)];
    be.kernels.selectiveScanForward(y, null, ckpt, u, dt, A, Bm, Cm, Dskip, z, dtBias, null, d);
    const tag = `B=${B} T=${T} D=${D} N=${N}`;
    cases.push({
      family: "scan", name: `selectiveScanForward ${tag}`, bytes: 4 * (4 * B * T * D + 2 * B * T * N + D * N + B * chunks * D * N),
      run: (k) => k.selectiveScanForward(y, null, ckpt, u, dt, A, Bm, Cm, Dskip, z, dtBias, null, d),
    });
    cases.push({
      family: "scan", name: `selectiveScanBackward ${tag}`, bytes: 4 * (7 * B * T * D + 4 * B * T * N + 2 * D * N + B * chunks * D * N),
      run: (k) => k.selectiveScanBackward(g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7], null, dout, u, dt, A, Bm, Cm, Dskip, z, dtBias, ckpt, d),
    });
    const W = 4;
    const cd = { B, T, D, W };
    const [w, bias, cx, cdx, cdw, cdb] = [f32(be, D * W), f32(be, D), out(be, B * T * D), out(be, B * T * D), out(be, D * W), out(be, D)];
    cases.push({ family: "scan", name: `conv1dForward ${tag.replace(" N=16", "")} W=4`, bytes: 4 * 2 * B * T * D, run: (k) => k.conv1dForward(cx, null, u, w, bias, null, cd) });
    cases.push({ family: "scan", name: `conv1dBackward ${tag.replace(" N=16", "")} W=4`, bytes: 4 * 3 * B * T * D, run: (k) => k.conv1dBackward(cdx, cdw, cdb, null, dout, u, w, null, cd) });
  }
  {
    // decoding Mamba-130M: d_inner 1536, d_state 16, one token
    const [B, D, N, W] = [1, 1536, 16, 4];
    const d = { B, T: 1, D, N, chunk: 1, deltaSoftplus: true };
    const state = f32(be, B * D * N, { std: 0.1 });
    const A = f32(be, D * N, { lo: -16, hi: -1 });
    const [u, dt, z, y] = [f32(be, B * D), f32(be, B * D, { mean: -2 }), f32(be, B * D), out(be, B * D)];
    const [Bm, Cm, Dskip, dtBias] = [f32(be, B * N), f32(be, B * N), f32(be, D), f32(be, D)];
    cases.push({
      family: "scan", name: `selectiveScanStep B=1 D=${D} N=${N}`, bytes: 4 * (3 * B * D * N + 6 * D),
      run: (k) => k.selectiveScanStep(y, state, u, dt, A, Bm, Cm, Dskip, z, dtBias, d),
    });
    const [cs, w, bias] = [f32(be, B * (W - 1) * D), f32(be, D * W), f32(be, D)];
    cases.push({ family: "scan", name: `conv1dStep B=1 D=${D} W=4`, bytes: 4 * (2 * B * (W - 1) * D + D * W + 3 * D), run: (k) => k.conv1dStep(y, cs, u, w, bias, { B, T: 1, D, W }) });
  }
  {
    const [B, T, H, P, N, G, chunk] = [16, 256, 8, 16, 16, 1, 64];
    const d = { B, T, H, P, N, G, chunk, dtSoftplus: true, dtMin: 0, dtMax: Infinity };
    const chunks = Math.ceil(T / chunk);
    const [x, dt, A] = [f32(be, B * T * H * P), f32(be, B * T * H, { mean: -2 }), f32(be, H, { lo: -8, hi: -1 })];
    const [Bm, Cm, Dskip, dtBias] = [f32(be, B * T * G * N), f32(be, B * T * G * N), f32(be, H), f32(be, H)];
    const [y, ckpt, dy] = [out(be, B * T * H * P), out(be, B * chunks * H * P * N), f32(be, B * T * H * P)];
    const g = [out(be, B * T * H * P), out(be, B * T * H), out(be, H), out(be, B * T * G * N), out(be, B * T * G * N), out(be, H), out(be, H)];
    be.kernels.ssdForward(y, null, ckpt, x, dt, A, Bm, Cm, Dskip, dtBias, null, d);
    const tag = `B=${B} T=${T} H=${H} P=${P} N=${N}`;
    cases.push({
      family: "ssd", name: `ssdForward ${tag}`, bytes: 4 * (2 * B * T * H * P + B * T * H + 2 * B * T * G * N + B * chunks * H * P * N),
      run: (k) => k.ssdForward(y, null, ckpt, x, dt, A, Bm, Cm, Dskip, dtBias, null, d),
    });
    cases.push({
      family: "ssd", name: `ssdBackward ${tag}`, bytes: 4 * (3 * B * T * H * P + 2 * B * T * H + 4 * B * T * G * N + B * chunks * H * P * N),
      run: (k) => k.ssdBackward(g[0], g[1], g[2], g[3], g[4], g[5], g[6], null, dy, x, dt, A, Bm, Cm, Dskip, dtBias, ckpt, d),
    });
  }
  {
    // decoding Mamba-2-130M: 24 heads of 64, d_state 128
    const [B, H, P, N, G] = [1, 24, 64, 128, 1];
    const d = { B, T: 1, H, P, N, G, chunk: 256, dtSoftplus: true, dtMin: 0, dtMax: Infinity };
    const state = f32(be, B * H * P * N, { std: 0.1 });
    const [x, dt, A, Bm, Cm, Dskip, dtBias, y] = [f32(be, B * H * P), f32(be, B * H), f32(be, H, { lo: -8, hi: -1 }), f32(be, B * N), f32(be, B * N), f32(be, H), f32(be, H), out(be, B * H * P)];
    cases.push({ family: "ssd", name: `ssdStep B=1 H=${H} P=${P} N=${N}`, bytes: 4 * 2 * B * H * P * N, run: (k) => k.ssdStep(y, state, x, dt, A, Bm, Cm, Dskip, dtBias, d) });
  }
  return cases;
}

function rwkvCases(be: CpuBackend): Case[] {
  const cases: Case[] = [];
  {
    const [B, T, H, N] = [16, 256, 4, 16];
    const d = { B, T, H, N, chunk: N };
    const n = B * T * H * N;
    const chunks = Math.ceil(T / N);
    const ins = [f32(be, n), f32(be, n, { lo: 0.5, hi: 1 }), f32(be, n, { std: 0.5 }), f32(be, n), f32(be, n, { std: 0.2 }), f32(be, n, { std: 0.2 })];
    const [y, ckpt, dy] = [out(be, n), out(be, B * chunks * H * N * N), f32(be, n)];
    const g = Array.from({ length: 6 }, () => out(be, n));
    be.kernels.wkv7Forward(y, null, ckpt, ins[0], ins[1], ins[2], ins[3], ins[4], ins[5], null, d);
    const tag = `B=${B} T=${T} H=${H} N=${N}`;
    cases.push({ family: "rwkv", name: `wkv7Forward ${tag}`, bytes: 4 * (7 * n + B * chunks * H * N * N), run: (k) => k.wkv7Forward(y, null, ckpt, ins[0], ins[1], ins[2], ins[3], ins[4], ins[5], null, d) });
    cases.push({
      family: "rwkv", name: `wkv7Backward ${tag}`, bytes: 4 * (13 * n + B * chunks * H * N * N),
      run: (k) => k.wkv7Backward(g[0], g[1], g[2], g[3], g[4], g[5], null, dy, null, ins[0], ins[1], ins[2], ins[3], ins[4], ins[5], ckpt, d),
    });
  }
  {
    // decoding RWKV-7 0.1B: 12 heads of 64
    const [B, H, N] = [1, 12, 64];
    const n = B * H * N;
    const state = f32(be, B * H * N * N, { std: 0.1 });
    const ins = [f32(be, n), f32(be, n, { lo: 0.5, hi: 1 }), f32(be, n), f32(be, n), f32(be, n, { std: 0.1 }), f32(be, n, { std: 0.1 })];
    const y = out(be, n);
    cases.push({ family: "rwkv", name: `wkv7Step B=1 H=${H} N=${N}`, bytes: 4 * 2 * B * H * N * N, run: (k) => k.wkv7Step(y, state, ins[0], ins[1], ins[2], ins[3], ins[4], ins[5], { B, H, N }) });
  }
  {
    const [B, T, D] = [16, 256, 128];
    const d = { B, T, D };
    const [w, u, kk, v] = [f32(be, D, { lo: -1.5, hi: -0.05 }), f32(be, D), f32(be, B * T * D), f32(be, B * T * D)];
    const [y, saved, dy] = [out(be, B * T * D), out(be, B * T * 3 * D), f32(be, B * T * D)];
    const g = [out(be, B * D), out(be, B * D), out(be, B * T * D), out(be, B * T * D)];
    be.kernels.wkv4Forward(y, null, saved, w, u, kk, v, null, d);
    const tag = `B=${B} T=${T} D=${D}`;
    cases.push({ family: "rwkv", name: `wkv4Forward ${tag}`, bytes: 4 * 6 * B * T * D, run: (k) => k.wkv4Forward(y, null, saved, w, u, kk, v, null, d) });
    cases.push({ family: "rwkv", name: `wkv4Backward ${tag}`, bytes: 4 * 9 * B * T * D, run: (k) => k.wkv4Backward(g[0], g[1], g[2], g[3], null, dy, null, w, u, kk, v, y, saved, d) });
  }
  return cases;
}

function otherCases(be: CpuBackend): Case[] {
  const cases: Case[] = [];
  {
    // a MoE layer of the hybrid preset at width 64: 16 x 64 tokens, top-2 of 4 experts, expert width 64
    const [N, E, k, C, F] = [1024, 4, 2, 64, 64];
    const logits = f32(be, N * E);
    const [w, idx, probs] = [out(be, N * k), be.allocate("i32", N * k) as Int32Array, out(be, N * E)];
    be.kernels.moeRouterForward(w, idx, probs, logits, N, E, k, false);
    const [pos, offsets] = [be.allocate("i32", N * k) as Int32Array, be.allocate("i32", E + 1) as Int32Array];
    be.kernels.moeGroup(pos, offsets, idx, N, E, k);
    const [x, xs, W, ys, dys, dxs, dW, dx] = [f32(be, N * C), out(be, N * k * C), f32(be, E * F * C, { std: 0.1 }), out(be, N * k * F), f32(be, N * k * F), out(be, N * k * C), out(be, E * F * C), out(be, N * C)];
    const gd = { E, M: N * k, N: F, K: C };
    const flops = 2 * N * k * F * C;
    const tag = `N=${N} E=${E} k=${k} C=${C}`;
    const [dl, dw] = [out(be, N * E), f32(be, N * k)];
    cases.push({ family: "moe", name: `moeRouterForward ${tag}`, bytes: 4 * (2 * N * E + 2 * N * k), run: (kk) => kk.moeRouterForward(w, idx, probs, logits, N, E, k, false) });
    cases.push({ family: "moe", name: `moeRouterBackward ${tag}`, bytes: 4 * (2 * N * E + 2 * N * k), run: (kk) => kk.moeRouterBackward(dl, dw, null, probs, idx, N, E, k, false) });
    cases.push({ family: "moe", name: `moeGatherForward ${tag}`, bytes: 4 * (N * C + N * k * C), run: (kk) => kk.moeGatherForward(xs, x, pos, N, k, C) });
    cases.push({ family: "moe", name: `moeGroupedMatmulForward ${tag} F=${F}`, bytes: 4 * (N * k * (C + F) + E * F * C), flops, run: (kk) => kk.moeGroupedMatmulForward(ys, xs, W, offsets, gd) });
    cases.push({
      family: "moe", name: `moeGroupedMatmulBackward ${tag} F=${F}`, bytes: 4 * (N * k * (2 * C + F) + 2 * E * F * C), flops: 2 * flops,
      run: (kk) => kk.moeGroupedMatmulBackward(dxs, dW, dys, xs, W, offsets, gd),
    });
    cases.push({ family: "moe", name: `moeCombineForward ${tag}`, bytes: 4 * (N * C + N * k * C), run: (kk) => kk.moeCombineForward(dx, xs, w, pos, N, k, C) });
    cases.push({ family: "moe", name: `moeCombineBackward ${tag}`, bytes: 4 * (N * C + 2 * N * k * C), run: (kk) => kk.moeCombineBackward(dxs, dw, x, xs, w, pos, N, k, C) });
  }
  {
    const [B, T, H, G, Dk, Dv, chunk] = [16, 256, 4, 2, 32, 32, 64];
    const d = { B, T, H, G, Dk, Dv, scale: 1 / Math.sqrt(Dk), chunk };
    const nChunks = Math.ceil(T / chunk);
    const [q, k, v, g, beta] = [f32(be, B * T * G * Dk, { std: 0.2 }), f32(be, B * T * G * Dk, { std: 0.2 }), f32(be, B * T * H * Dv), f32(be, B * T * H, { lo: -1, hi: -0.01 }), f32(be, B * T * H, { lo: 0, hi: 1 })];
    const [o, states, dout] = [out(be, B * T * H * Dv), out(be, B * H * nChunks * Dk * Dv), f32(be, B * T * H * Dv)];
    const gr = [out(be, B * T * G * Dk), out(be, B * T * G * Dk), out(be, B * T * H * Dv), out(be, B * T * H), out(be, B * T * H)];
    be.kernels.deltanetForward(o, null, states, q, k, v, g, beta, null, d);
    const tag = `B=${B} T=${T} H=${H} G=${G} Dk=Dv=${Dk}`;
    const io = 2 * B * T * G * Dk + 2 * B * T * H * Dv + 2 * B * T * H;
    cases.push({ family: "deltanet", name: `deltanetForward ${tag}`, bytes: 4 * (io + B * H * nChunks * Dk * Dv), run: (kk) => kk.deltanetForward(o, null, states, q, k, v, g, beta, null, d) });
    cases.push({ family: "deltanet", name: `deltanetBackward ${tag}`, bytes: 4 * (2 * io + B * T * H * Dv + B * H * nChunks * Dk * Dv), run: (kk) => kk.deltanetBackward(gr[0], gr[1], gr[2], gr[3], gr[4], dout, q, k, v, g, beta, states, d) });
  }
  {
    const n = 1 << 20;
    const [p, m, v, g, norms] = [f32(be, n), f32(be, n, { std: 0.01 }), f32(be, n, { lo: 0, hi: 1e-4 }), f32(be, n), out(be, 4)];
    const h = { lr: 1e-3, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, step: 10, gradScale: 1 };
    cases.push({ family: "train", name: `adamwStep n=${n}`, bytes: 4 * 7 * n, run: (k) => k.adamwStep(p, m, v, g, n, h) });
    cases.push({ family: "train", name: `sumSquares n=${n}`, bytes: 4 * n, run: (k) => k.sumSquares(norms, g, n, 0) });
  }
  return cases;
}

/** Streaming bandwidth: a 64 MiB copy through the copy kernel on every thread (read + write). */
function bandwidth(be: CpuBackend): number {
  const n = 16 << 20;
  const a = f32(be, n);
  const b = out(be, n);
  const t = best(() => be.kernels.copy2d(b, a, 1, n, n, 0, n, 0, false), 5);
  be.release(a);
  be.release(b);
  return (8 * n) / t / 1e9;
}

const pad = (s: string | number, n: number) => String(s).padStart(n);
const lines: string[] = [];
const log = (l: string) => {
  lines.push(l);
  console.log(l);
};
const results: Record<string, unknown>[] = [];

const be = await CpuBackend.create({ threads });
log(`seqlab cpu mixer benchmark: ${os.cpus()[0]?.model ?? "cpu"}, ${os.availableParallelism()} cores, node ${process.version}, load average ${os.loadavg()[0].toFixed(1)}`);
const bw = bandwidth(be);
log(`${be.describe()}; streaming bandwidth ${bw.toFixed(1)} GB/s (64 MiB copy); ${clock === "cpu" ? "CPU-time" : "wall"} clock`);
log("");
log(`  ${"kernel".padEnd(52)} ${pad("ms", 9)} ${pad("ref ms", 9)} ${pad("speedup", 8)} ${pad("GB/s", 7)} ${pad("of floor", 9)} ${pad("GFLOP/s", 8)}`);
for (const c of [...scanCases(be), ...rwkvCases(be), ...otherCases(be)]) {
  const native = best(() => c.run(be.kernels));
  const reference = best(() => c.run(refKernels), quick ? 1 : 2);
  const gbs = c.bytes / native / 1e9;
  const floor = c.bytes / (bw * 1e9);
  const gflops = c.flops ? c.flops / native / 1e9 : null;
  log(
    `  ${c.name.padEnd(52)} ${pad((native * 1e3).toFixed(3), 9)} ${pad((reference * 1e3).toFixed(1), 9)} ${pad((reference / native).toFixed(1) + "x", 8)} ` +
      `${pad(gbs.toFixed(1), 7)} ${pad(((100 * floor) / native).toFixed(0) + "%", 9)} ${pad(gflops ? gflops.toFixed(1) : "", 8)}`,
  );
  results.push({ kind: "kernel", family: c.family, name: c.name, seconds: native, refSeconds: reference, speedup: reference / native, bytes: c.bytes, gbytesPerSecond: gbs, fractionOfFloor: floor / native, gflops });
}

if (!argv.includes("--no-train")) {
  // the same backend type with the mixer kernels switched back to their reference twins
  const before = await CpuBackend.create({ threads });
  const mixerNames = Object.keys(cpuMixerKernels(before.runtime, before.kernels)) as (keyof K)[];
  const table = before.kernels as unknown as Record<string, unknown>;
  for (const name of mixerNames) table[name] = refKernels[name];
  const [width, T, batch] = [64, 64, 16];
  const steps = quick ? 2 : 3;
  log("");
  log(`training step, width ${width}, T=${T}, batch ${batch} (MQAR), ${threads} threads: native mixers vs reference mixers on the same backend`);
  log(`  ${"preset".padEnd(14)} ${pad("ms/step", 9)} ${pad("ref-mixers ms", 14)} ${pad("speedup", 8)}`);
  for (const id of ["transformer", "mamba", "mamba2", "rwkv", "hybrid"]) {
    const task = makeTask({ name: "mqar", length: T, seed: 1, pairs: 8 });
    const time = async (b: CpuBackend) => {
      const model = buildArch(b, ARCHS[id], { vocab: task.vocabSize, width }, 1);
      await train(model, task, { steps: 1, batch, lr: 1e-3 });
      let s = Infinity;
      for (let r = 0; r < 2; r++) {
        const t0 = now();
        await train(model, task, { steps, batch, lr: 1e-3 });
        s = Math.min(s, (now() - t0) / steps);
      }
      for (const p of model.parameters()) p.dispose();
      return s;
    };
    const after = await time(be);
    const ref = await time(before);
    log(`  ${id.padEnd(14)} ${pad((after * 1e3).toFixed(1), 9)} ${pad((ref * 1e3).toFixed(1), 14)} ${pad((ref / after).toFixed(1) + "x", 8)}`);
    results.push({ kind: "train", preset: id, width, T, batch, threads, secondsPerStep: after, refMixersSecondsPerStep: ref, speedup: ref / after });
  }
  await before.dispose();
}
await be.dispose();

fs.mkdirSync(path.dirname(outPath), { recursive: true });
fs.writeFileSync(outPath, JSON.stringify({ machine: { cpu: os.cpus()[0]?.model, cores: os.availableParallelism(), node: process.version, threads, clock, bandwidthGBs: bw }, results }, null, 2));
console.log(`\nwrote ${outPath}`);
