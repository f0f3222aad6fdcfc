/**
 * How big each part of the showdown is, per mode. The default run is sized to finish within
 * 20 minutes on a 2-core CPU, --quick within 2 minutes (CI runs it); both measure every claim,
 * quick mode at smaller sizes and with less training (so its recall numbers are a smoke test).
 *
 * Sizing (2-core CPU, cpu backend, initializer_range 0.1, see ../shared/calibration): at width 64
 * a 2-3 layer model learns passkey at T = 32-64 in about 1000 steps of 32 sequences, selective
 * copying (8 tokens in 64) in about 1500 (86% after 800); MQAR with 4 pairs is learned by the hybrid in about
 * 1000 steps, while the Transformer and Mamba plateau near 50% for 3000 steps (the calibration's
 * PyTorch Llama reached 42% on 8 pairs in 3000). That plateau is recalling nothing: answering each
 * query with one of the context's values not yet asked scores 52-54% on 4 pairs (loss ~0.79), and
 * no Transformer setting escaped it in a sweep of 33 runs (bench/results/mqar-sweep-2026-11-27.jsonl:
 * 1, 2 or 4 heads, lr 1e-3 / 3e-3, init 0.02 / 0.1, weight decay 0 / 0.01 / 0.1, 3 layers, 6000
 * steps, 8 pairs at length 64), while the hybrid reached 100% in every run. Mixed-length passkey
 * batches hold the tokens of one shortest-length batch, so training on [32, 64] costs what [32] does.
 */
import type { PresetOptions } from "../models/presets.js";

export interface RecallBudget {
  steps: number;
  batch: number;
  lr: number;
}

export interface ShowdownPlan {
  model: PresetOptions;
  scaling: {
    lengths: number[];
    /** past `lengths`, T doubles up to here while the fixed cost may be over fixedCostShare of the fit or the largest point is under minSecondsAtLargest (see scaling.ts) */
    maxLength: number;
    fixedCostShare: number;
    minSecondsAtLargest: number;
    /** for the cpu and ref backends (host memory) */
    memoryBudgetBytes: number;
    /** for webgpu (device memory; --memory-budget overrides either) */
    gpuMemoryBudgetBytes: number;
    secondsPerPoint: number;
    /** keep repeating a point (up to 10 runs) until this much time has passed */
    minSecondsPerPoint: number;
  };
  decode: { positions: number[]; steps: number; chunk: number };
  selectiveCopy: RecallBudget & { length: number; count: number };
  passkey: RecallBudget & { trainLengths: number[]; evalLengths: number[]; depths: number[]; smallState: number };
  mqar: RecallBudget & { length: number; pairs: number; states: number[] };
  evalExamples: number;
}

const pow2 = (from: number, to: number) => {
  const out: number[] = [];
  for (let t = from; t <= to; t *= 2) out.push(t);
  return out;
};

export const PLANS: Record<"quick" | "default", ShowdownPlan> = {
  quick: {
    model: { vocab: 64, width: 32, layers: 2 },
    scaling: { lengths: pow2(256, 4096), maxLength: 4096, fixedCostShare: 0.1, minSecondsAtLargest: 0, memoryBudgetBytes: 64 * 2 ** 20, gpuMemoryBudgetBytes: 256 * 2 ** 20, secondsPerPoint: 3, minSecondsPerPoint: 0 },
    decode: { positions: [128, 512, 2048], steps: 8, chunk: 512 },
    selectiveCopy: { steps: 400, batch: 16, lr: 3e-3, length: 32, count: 4 },
    passkey: { steps: 400, batch: 16, lr: 3e-3, trainLengths: [32], evalLengths: [32, 64, 128], depths: [0.1, 0.9], smallState: 4 },
    mqar: { steps: 300, batch: 16, lr: 3e-3, length: 32, pairs: 4, states: [4, 16] },
    evalExamples: 16,
  },
  default: {
    model: { vocab: 64, width: 64, layers: 2 },
    scaling: { lengths: pow2(256, 65536), maxLength: 2 ** 20, fixedCostShare: 0.1, minSecondsAtLargest: 0.5, memoryBudgetBytes: 2 ** 30, gpuMemoryBudgetBytes: 8 * 2 ** 30, secondsPerPoint: 20, minSecondsPerPoint: 0.3 },
    decode: { positions: [256, 1024, 4096, 16384], steps: 16, chunk: 1024 },
    selectiveCopy: { steps: 1600, batch: 32, lr: 3e-3, length: 64, count: 8 },
    passkey: { steps: 2000, batch: 32, lr: 3e-3, trainLengths: [32, 64], evalLengths: [32, 64, 128, 256, 512], depths: [0.1, 0.5, 0.9], smallState: 4 },
    mqar: { steps: 2000, batch: 32, lr: 3e-3, length: 32, pairs: 4, states: [4, 16] },
    evalExamples: 64,
  },
};
