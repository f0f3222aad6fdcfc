/**
 * Where a model's forward spends its time on the GPU: a timestamp before every dispatch (the
 * context's beforeDispatch hook) of one prefill forward, which asks for the last position's
 * logits only as generation does, summed per kernel, beside the wall-clock time of the same
 * forward and the buffers the pool had to create for it. The difference between wall and GPU
 * time is host work the GPU did not hide: recording, submits, new buffers.
 *
 * Each dispatch then sits in a compute pass of its own (a timestamp ends the pass), so the
 * per-kernel times carry a little more overhead than an unprofiled forward; the GPU total is
 * from the first dispatch to the end of the last.
 */
import type { WebGpuBackend } from "../../backend/webgpu/index.js";
import type { CausalLM } from "../../models/causal_lm.js";
import { BufferUsage } from "../../backend/webgpu/device.js";
import { noGradAsync } from "../../autograd/tape.js";
import { tidyAsync } from "../../tensor/scope.js";
import type { Result } from "./timing.js";
import { promptTokens } from "./decode.js";

/** One forward, profiled. */
export interface ForwardProfile {
  wallMs: number;
  gpuMs: number;
  dispatches: number;
  submits: number;
  buffersCreated: number;
  /** per kernel label: dispatches and GPU milliseconds, slowest first */
  kernels: { kernel: string; dispatches: number; ms: number }[];
}

const WARM_UP_MS = 2000;

/** Timestamps a query set holds (WebGPU's limit); a profile takes as many sets as its dispatches need. */
const QUERIES_PER_SET = 4096;
/** The most dispatches one profile may have (a training step of a 24-layer model takes about 4000). */
const MAX_DISPATCHES = 8 * QUERIES_PER_SET - 1;

/** GPU time per kernel label of the dispatches `record` makes, from a timestamp before each. */
export interface DispatchProfile {
  /** first dispatch to the end of the last */
  gpuMs: number;
  /** per kernel label: dispatches and GPU milliseconds, slowest first */
  kernels: { kernel: string; dispatches: number; ms: number }[];
}

/**
 * Runs `record` (which records dispatches, synchronously) with a timestamp before each
 * dispatch and one after the last. Each dispatch then sits in a compute pass of its own.
 */
export async function profileDispatches(be: WebGpuBackend, record: () => void): Promise<DispatchProfile> {
  const ctx = be.ctx;
  if (!ctx.acquired.timestamps) throw new Error("internal: profileDispatches needs the timestamp-query feature");
  const sets: GPUQuerySet[] = [];
  const labels: string[] = [];
  const stamp = (i: number) => {
    if (i % QUERIES_PER_SET === 0) sets.push(ctx.device.createQuerySet({ type: "timestamp", count: QUERIES_PER_SET }));
    ctx.timestamp(sets[Math.floor(i / QUERIES_PER_SET)], i % QUERIES_PER_SET);
  };
  ctx.beforeDispatch = (label) => {
    if (labels.length === MAX_DISPATCHES) throw new Error(`internal: profileDispatches: more than ${MAX_DISPATCHES} dispatches`);
    stamp(labels.length);
    labels.push(label);
  };
  let ticks: BigUint64Array;
  let resolved: GPUBuffer | null = null;
  try {
    record();
    ctx.beforeDispatch = null;
    const n = labels.length + 1;
    stamp(labels.length);
    resolved = ctx.device.createBuffer({ size: sets.length * QUERIES_PER_SET * 8, usage: BufferUsage.QUERY_RESOLVE | BufferUsage.COPY_SRC });
    sets.forEach((set, j) => ctx.resolveTimestamps(set, Math.min(QUERIES_PER_SET, n - j * QUERIES_PER_SET), resolved!, j * QUERIES_PER_SET * 8));
    ticks = new BigUint64Array(await ctx.read(resolved, n * 8));
  } finally {
    ctx.beforeDispatch = null;
    for (const set of sets) set.destroy();
    resolved?.destroy();
  }
  const per = new Map<string, { dispatches: number; ms: number }>();
  for (let i = 0; i < labels.length; i++) {
    const k = per.get(labels[i]) ?? { dispatches: 0, ms: 0 };
    k.dispatches++;
    k.ms += Number(ticks[i + 1] - ticks[i]) / 1e6;
    per.set(labels[i], k);
  }
  return {
    gpuMs: labels.length ? Number(ticks[labels.length] - ticks[0]) / 1e6 : 0,
    kernels: [...per.entries()].map(([kernel, v]) => ({ kernel, ...v })).sort((a, b) => b.ms - a.ms),
  };
}

/** "label ms (dispatches), ..." of the slowest `n` kernels of a profile. */
export function slowest(p: DispatchProfile, n: number): string {
  return p.kernels.slice(0, n).map((k) => `${k.kernel} ${k.ms.toFixed(2)} ms (${k.dispatches})`).join(", ");
}

export async function profileForward(be: WebGpuBackend, model: CausalLM, T: number): Promise<ForwardProfile> {
  const ctx = be.ctx;
  const ids = promptTokens(T, model.config.V);
  const [d0, s0, b0] = [ctx.dispatches, ctx.submits, ctx.pool.created];
  const t0 = performance.now();
  const p = await noGradAsync(() => tidyAsync(() => profileDispatches(be, () => void model.forward(model.tokens(ids, 1, T), { lastOnly: true }))));
  return {
    wallMs: performance.now() - t0,
    gpuMs: p.gpuMs,
    dispatches: ctx.dispatches - d0,
    submits: ctx.submits - s0,
    buffersCreated: ctx.pool.created - b0,
    kernels: p.kernels,
  };
}

/**
 * The profile section for one model: its prefill forward at each length, profiled after
 * unprofiled forwards for at least two seconds (pipelines compiled, buffers pooled, and the clocks
 * up: building the model leaves the GPU idle, and a profile after only two forwards of a 2k
 * prefill measured its matmuls at a third of their speed). Reported as wall ms with the GPU time,
 * its share of the wall time and the five slowest kernels.
 */
export async function benchProfile(be: WebGpuBackend, name: string, model: CausalLM, lengths: number[], log: (line: string) => void): Promise<Result[]> {
  const out: Result[] = [];
  for (const T of lengths) {
    const ids = promptTokens(T, model.config.V);
    const t0 = performance.now();
    for (let i = 0; i < 2 || performance.now() - t0 < WARM_UP_MS; i++) {
      await noGradAsync(() => tidyAsync(async () => void model.forward(model.tokens(ids, 1, T), { lastOnly: true })));
      await be.sync();
    }
    const p = await profileForward(be, model, T);
    const top = slowest(p, 5);
    out.push({
      section: "profile",
      name: `profile ${name}`,
      shape: `T${T}`,
      ms: p.wallMs,
      rate: (100 * p.gpuMs) / p.wallMs,
      unit: "% GPU",
      iterations: 1,
      timing: "timestamp",
      extra: { gpuMs: p.gpuMs, dispatches: p.dispatches, submits: p.submits, buffersCreated: p.buffersCreated, top },
    });
    log(`# profile ${name} T=${T}: wall ${p.wallMs.toFixed(2)} ms, GPU ${p.gpuMs.toFixed(2)} ms over ${p.dispatches} dispatches (${p.submits} submits, ${p.buffersCreated} new buffers); ${top}`);
  }
  return out;
}
