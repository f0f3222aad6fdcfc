/**
 * `seqlab bench cpu`: seqlab's cpu backend against llama.cpp on the same machine, the same
 * weights and the same thread count, in one process, interleaved.
 *
 *   1. matmul GFLOP/s at prefill shapes against the measured f32x4 peak, and the decode
 *      matrix-vector product over the largest matrix (the LM head) in GB/s;
 *   2. per model (Mamba, Mamba-2, Llama; seeded random weights, cpu_models.ts) and weight type
 *      (f32, f16): prefill tok/s at several prompt lengths and decode tok/s after several
 *      context lengths, seqlab's generate() beside llama.cpp's sequence.evaluate(), and the
 *      greedy tokens of both, which must agree.
 *
 * Timing. The machine is shared, so every measurement runs both engines back to back, in
 * alternating order, `repeats` times. Prefill: the best (shortest) time from the call to the
 * first greedy token. Decode: the median time between consecutive tokens within a run (robust
 * to the odd preempted step), best over runs; the plain mean is reported too. After loading a
 * model both engines pause before timing: freeing the loader's buffers keeps the cores busy
 * for a while, which would land on whichever engine ran next.
 *
 * Decoding is memory-bound: each token reads every weight matrix once (the embedding table only
 * as the tied LM head). The weight bytes per token, the GB/s each engine achieves with them and
 * the rate the measured matrix-vector bandwidth allows are reported beside the times.
 */
import * as os from "node:os";
import type { CpuBackend } from "../backend/cpu/backend.js";
import type { CausalLM } from "../models/causal_lm.js";
import { loadModel } from "../models/load.js";
import { advance, generate } from "../generate/generate.js";
import { Rng } from "../util/rng.js";
import { benchMatmul, simdPeakGflops, type MatmulCase } from "./cpu_kernels.js";
import { benchModelFiles, type BenchModelFiles, type BenchModelName, type BenchWeightType } from "./cpu_models.js";
import { LlamaCpp, timingFrom, type GenerationTiming, type LlamaCppModel } from "./llama_cpp.js";
import { median } from "../util/stats.js";

export interface CpuBenchOptions {
  threads: number;
  quick: boolean;
  models: BenchModelName[];
  types: BenchWeightType[];
  /** where model directories and GGUF files are cached */
  cacheDir: string;
  seed: number;
  repeats?: number;
  log: (line: string) => void;
}

export interface EngineTiming {
  tok_s: number;
  /** decode only: tokens per second from the mean step time (all steps, disturbed ones too) */
  mean_tok_s?: number;
  /** decode only: tokens per second from the fastest single step (the least disturbed) */
  best_step_tok_s?: number;
  seconds: number;
  /** decode only: weight bytes per token x tok/s */
  weight_gb_s?: number;
}

export interface CpuBenchLine {
  model: BenchModelName;
  weights: BenchWeightType;
  metric: "prefill" | "decode";
  /** prefill: prompt tokens; decode: tokens of context before the timed steps */
  tokens: number;
  seqlab: EngineTiming;
  llama_cpp: EngineTiming;
  /** seqlab tok/s over llama.cpp tok/s */
  ratio: number;
  /** 1-minute load average when the measurement ended */
  load_average: number;
}

export interface GreedyCheck {
  model: BenchModelName;
  weights: BenchWeightType;
  prompt_tokens: number;
  match: boolean;
  /** index of the first differing new token, or null */
  first_mismatch: number | null;
  /**
   * at the first difference, from seqlab's logits there (both engines saw the same tokens
   * before it): its top logit minus its logit for llama.cpp's token, and that gap over the
   * standard deviation of the logits. A gap of a fraction of a percent is a near-tie that
   * rounding decides (llama.cpp keeps the KV cache, and with f16 weights the activations, in f16).
   */
  gap?: number;
  relative_gap?: number;
  near_tie?: boolean;
  seqlab: number[];
  llama_cpp: number[];
}

/** A gap below this fraction of the logits' standard deviation counts as a near-tie. */
const NEAR_TIE = 0.02;

interface Plan {
  prefill: number[];
  decodeContexts: number[];
  decodeSteps: number;
  repeats: number;
  matmuls: MatmulCase[];
  matmulReps: number;
  peakIters: number;
}

function plan(o: CpuBenchOptions): Plan {
  const nt = (M: number, N: number, K: number, bDtype?: "f16"): MatmulCase["d"] => ({ M, N, K, transA: false, transB: true, accumulate: false, bDtype });
  if (o.quick) {
    return {
      prefill: [16, 64],
      decodeContexts: [8, 64],
      decodeSteps: 8,
      repeats: o.repeats ?? 1,
      matmuls: [
        { name: "128x512x256 (x W^T)", d: nt(128, 512, 256) },
        { name: "matvec 1x4096x256 (x W^T)", d: nt(1, 4096, 256) },
        { name: "matvec 1x4096x256, f16", d: nt(1, 4096, 256, "f16") },
      ],
      matmulReps: 3,
      peakIters: 300,
    };
  }
  return {
    prefill: [128, 512, 2048],
    decodeContexts: [16, 512, 2048],
    decodeSteps: 32,
    repeats: o.repeats ?? 3,
    matmuls: [
      { name: "Mamba in_proj 512x3072x768 (x W^T)", d: nt(512, 3072, 768) },
      { name: "Llama MLP up 512x2048x768 (x W^T)", d: nt(512, 2048, 768) },
      { name: "Llama MLP down 512x768x2048 (x W^T)", d: nt(512, 768, 2048) },
      { name: "LM head matvec 1x50280x768 f32", d: nt(1, 50280, 768) },
      { name: "LM head matvec 1x50280x768 f16", d: nt(1, 50280, 768, "f16") },
    ],
    matmulReps: 10,
    peakIters: 3000,
  };
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export async function benchCpu(be: CpuBackend, o: CpuBenchOptions) {
  const p = plan(o);
  const log = o.log;
  const loadStart = os.loadavg();
  log(`seqlab bench cpu: ${os.cpus()[0]?.model ?? "cpu"}, ${os.availableParallelism()} cores, ${o.threads} thread${o.threads === 1 ? "" : "s"}, load average ${loadStart.map((x) => x.toFixed(2)).join(" ")}`);
  log(`seqlab: ${be.describe()}`);

  // ---- kernels ----
  const peakBefore = simdPeakGflops(be, p.peakIters);
  const matmuls = p.matmuls.map((c) => ({ name: c.name, dims: c.d, ...benchMatmul(be, c, p.matmulReps) }));
  const peak = Math.max(peakBefore, simdPeakGflops(be, p.peakIters));
  const matmul = {
    peak_gflop_s: peak,
    cases: matmuls.map((m) => ({
      name: m.name,
      M: m.dims.M,
      N: m.dims.N,
      K: m.dims.K,
      weights: m.dims.bDtype ?? "f32",
      seconds: m.seconds,
      gflop_s: m.gflops,
      fraction_of_peak: m.gflops / peak,
      gb_s: m.gbytesPerSecond,
    })),
  };
  const matvecGbS = (type: BenchWeightType) => Math.max(0, ...matmul.cases.filter((c) => c.M === 1 && c.weights === type).map((c) => c.gb_s));

  // ---- models ----
  const llama = await LlamaCpp.create(o.threads);
  const lines: CpuBenchLine[] = [];
  const greedy: GreedyCheck[] = [];
  const models: Record<string, unknown>[] = [];
  try {
    for (const name of o.models) {
      const files = await benchModelFiles(name, o.quick, o.cacheDir, o.seed, log);
      const V = files.config.vocab_size as number;
      const rng = new Rng(o.seed + 1);
      const lengths = [...new Set([...p.prefill, ...p.decodeContexts])].sort((a, b) => a - b);
      // token ids from 3 up: the minimal GGUF vocabulary's first ids are <unk>, <s>, </s>
      const prompts = new Map(lengths.map((n) => [n, Array.from({ length: n }, () => rng.int(3, V))]));
      const contextSize = Math.max(...lengths) + p.decodeSteps + 16;
      const modelInfo: Record<string, unknown> = { name, config: files.config, parameters: files.parameters, weights: {} };
      for (const type of o.types) {
        const ours = loadModel(files.dir, be, { dtype: type });
        const theirs = await llama.load(files.gguf[type], contextSize, Math.min(contextSize, 2048));
        try {
          const bytes = weightBytesPerToken(ours);
          (modelInfo.weights as Record<string, unknown>)[type] = { weight_bytes_per_token: bytes, llama_cpp: theirs.settings };
          await sleep(o.quick ? 100 : 1500);
          for (const n of lengths) {
            const decode = p.decodeContexts.includes(n);
            const runs = await interleaved(ours, theirs, prompts.get(n)!, decode ? p.decodeSteps + 1 : 1, p.repeats, o.quick ? 10 : 150);
            if (p.prefill.includes(n)) lines.push(prefillLine(name, type, n, runs));
            if (decode) lines.push(decodeLine(name, type, n, runs, bytes));
            if (decode) greedy.push(await greedyCheck(ours, name, type, prompts.get(n)!, runs));
            for (const l of lines.slice(-2)) if (l.model === name && l.weights === type && l.tokens === n) log(formatLine(l));
          }
          (modelInfo.weights as Record<string, Record<string, unknown>>)[type].decode_floor_tok_s = matvecGbS(type) > 0 ? (matvecGbS(type) * 1e9) / bytes : null;
        } finally {
          for (const t of ours.parameters()) t.dispose();
          await theirs.dispose();
        }
      }
      models.push(modelInfo);
    }
  } finally {
    await llama.dispose();
  }
  return {
    schema: "seqlab-bench-cpu/1",
    date: new Date().toISOString(),
    units: {
      tok_s: "tokens per second",
      seconds: "seconds",
      gflop_s: "1e9 floating-point operations per second",
      gb_s: "1e9 bytes per second",
      bytes: "bytes",
      ratio: "seqlab tok/s divided by llama.cpp tok/s",
    },
    machine: {
      cpu: os.cpus()[0]?.model ?? "unknown",
      cores: os.availableParallelism(),
      memory_bytes: os.totalmem(),
      load_average_start: loadStart,
      load_average_end: os.loadavg(),
    },
    versions: { node: process.version, seqlab: seqlabVersion(), node_llama_cpp: llama.info.nodeLlamaCpp, llama_cpp: llama.info.llamaCppRelease, llama_cpp_build: llama.info.buildType, llama_cpp_system_info: llama.info.systemInfo },
    threads: o.threads,
    quick: o.quick,
    seqlab_backend: be.describe(),
    timing: {
      repeats: p.repeats,
      decode_steps: p.decodeSteps,
      prefill: "best over repeats of the time from the call to the first greedy token",
      decode: "median time between consecutive greedy tokens within a run, best over repeats (mean_tok_s: the mean step; best_step_tok_s: the fastest step)",
      load:
        "the machine may be shared: with a load average near or above the core count, llama.cpp's threads (which meet at a barrier after every op) lose far more than seqlab's (which claim work and never wait for a descheduled thread), and the ratios overstate seqlab",
    },
    matmul,
    models,
    results: lines,
    greedy,
  };
}

export type CpuBenchResult = Awaited<ReturnType<typeof benchCpu>>;

interface RunPair {
  seqlab: GenerationTiming;
  llama: GenerationTiming;
}

/** `repeats` runs of each engine on one prompt, alternating which goes first. */
async function interleaved(ours: CausalLM, theirs: LlamaCppModel, prompt: number[], newTokens: number, repeats: number, pauseMs: number): Promise<RunPair[]> {
  const out: RunPair[] = [];
  for (let r = 0; r < repeats; r++) {
    let s: GenerationTiming | null = null;
    let l: GenerationTiming | null = null;
    for (const engine of r % 2 === 0 ? ["seqlab", "llama"] : ["llama", "seqlab"]) {
      if (engine === "seqlab") s = await timeSeqlab(ours, prompt, newTokens);
      else l = await theirs.generate(prompt, newTokens);
      await sleep(pauseMs);
    }
    out.push({ seqlab: s!, llama: l! });
  }
  return out;
}

/** seqlab's generate(), timed at each token it emits (prefill ends with the first). */
async function timeSeqlab(model: CausalLM, prompt: number[], newTokens: number): Promise<GenerationTiming> {
  const stamps: number[] = [];
  const t0 = performance.now();
  const { tokens } = await generate(model, prompt, { maxNewTokens: newTokens, onToken: () => stamps.push(performance.now()) });
  return timingFrom(prompt.length, tokens.slice(prompt.length), t0, stamps);
}

function prefillLine(model: BenchModelName, weights: BenchWeightType, T: number, runs: RunPair[]): CpuBenchLine {
  const best = (k: "seqlab" | "llama") => Math.min(...runs.map((r) => r[k].prefillSeconds));
  const s = best("seqlab");
  const l = best("llama");
  return { model, weights, metric: "prefill", tokens: T, seqlab: { tok_s: T / s, seconds: s }, llama_cpp: { tok_s: T / l, seconds: l }, ratio: l / s, load_average: os.loadavg()[0] };
}

function decodeLine(model: BenchModelName, weights: BenchWeightType, context: number, runs: RunPair[], bytes: number): CpuBenchLine {
  const timing = (k: "seqlab" | "llama"): EngineTiming => {
    const step = Math.min(...runs.map((r) => median(r[k].stepSeconds)));
    const all = runs.flatMap((r) => r[k].stepSeconds);
    const mean = all.reduce((a, b) => a + b, 0) / all.length;
    return { tok_s: 1 / step, mean_tok_s: 1 / mean, best_step_tok_s: 1 / Math.min(...all), seconds: step, weight_gb_s: bytes / step / 1e9 };
  };
  const s = timing("seqlab");
  const l = timing("llama");
  return { model, weights, metric: "decode", tokens: context, seqlab: s, llama_cpp: l, ratio: s.tok_s / l.tok_s, load_average: os.loadavg()[0] };
}

async function greedyCheck(model: CausalLM, name: BenchModelName, weights: BenchWeightType, prompt: number[], runs: RunPair[]): Promise<GreedyCheck> {
  const a = runs[0].seqlab.tokens;
  const b = runs[0].llama.tokens;
  let first: number | null = null;
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    if (a[i] !== b[i]) {
      first = i;
      break;
    }
  }
  const check: GreedyCheck = { model: name, weights, prompt_tokens: prompt.length, match: first === null, first_mismatch: first, seqlab: a, llama_cpp: b };
  if (first !== null && b[first] !== undefined) {
    const state = model.allocateState(1, prompt.length + first + 1);
    try {
      const logits = await advance(model, state, [...prompt, ...a.slice(0, first)]);
      const gap = logits[a[first]] - logits[b[first]];
      let mean = 0;
      for (const v of logits) mean += v / logits.length;
      let varSum = 0;
      for (const v of logits) varSum += (v - mean) ** 2;
      const relative = gap / Math.sqrt(varSum / logits.length);
      Object.assign(check, { gap, relative_gap: relative, near_tie: relative < NEAR_TIE });
    } finally {
      state.dispose();
    }
  }
  return check;
}

/**
 * Bytes of weights one decode step reads: every parameter once at its storage width, except an
 * untied embedding table, of which a lookup reads one row.
 */
export function weightBytesPerToken(model: CausalLM): number {
  const named = model.namedParameters();
  const tied = (model as unknown as { lm_head?: { weight: unknown } }).lm_head?.weight;
  let bytes = 0;
  for (const [name, t] of named) {
    const isEmbedding = /embed/.test(name);
    if (isEmbedding && t !== tied) bytes += t.bytes / t.shape[0];
    else bytes += t.bytes;
  }
  return bytes;
}

export function formatLine(l: CpuBenchLine): string {
  const what = l.metric === "prefill" ? `prefill T=${l.tokens}` : `decode after ${l.tokens}`;
  return `  ${l.model.padEnd(7)} ${l.weights}  ${what.padEnd(18)} seqlab ${l.seqlab.tok_s.toFixed(1).padStart(8)} tok/s   llama.cpp ${l.llama_cpp.tok_s.toFixed(1).padStart(8)} tok/s   ratio ${l.ratio.toFixed(2)}   (load ${l.load_average.toFixed(1)})`;
}

declare const SEQLAB_VERSION: string | undefined;
function seqlabVersion(): string {
  return typeof SEQLAB_VERSION === "string" ? SEQLAB_VERSION : "dev";
}

export type { BenchModelFiles };
