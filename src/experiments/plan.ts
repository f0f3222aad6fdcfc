/**
 * How big each part of the showdown is, per mode. The default run is sized to finish within
 * 20 minutes on a 2-core CPU, --quick within 2 minutes (CI runs it); both measure every claim,
 * quick mode at smaller sizes and with less training (so its recall numbers are a smoke test).
 *
 * Sizing (2-core CPU, cpu backend, initializer_range 0.1, see ../shared/calibration): at width 64
 * a 2-3 layer model learns passkey at T = 32-64 in about 1000 steps of 32 sequences, selective
 * copying (8 tokens in 64) in about 1500 (86% after 800). MQAR is sized by its key alphabet: a
 * 2-layer Transformer learns 8 pairs drawn from 8 keys and 8 values at T = 64 within 250-500
 * steps (every seed and learning rate tried), while with more keys it sits longer on the plateau
 * of recalling nothing (answering each query with one of the context's values not yet asked):
 * 12 and 16 keys only at some settings, 32 keys never within 3000-8000 steps. PyTorch's Llama
 * behaves the same (scripts/mqar_torch_sweep.py, bench/results/mqar-torch-h200-2026-11-27.jsonl:
 * lr 3e-4 to 1e-2, 1-8 heads, width 128, 3 layers, batch 128), as does seqlab's
 * (mqar-sweep-2026-11-27.jsonl, which sized the first version at 32 keys, and
 * mqar-sweep-2026-11-27b.jsonl). With 8 keys Mamba reaches 47% / 83% / 100% with states 1 / 2 / 4
 * after 1000 steps, the hybrid 100% with state 1. Whether Mamba leaves the plateau within the
 * budget varies with the seed (state 16: 42-45% at seed 0, 100% at seed 1; state 4: 100% and 63%),
 * the smallest states stayed under 90% at both seeds, and the showdown reports each run as it
 * comes out.
 * Mixed-length passkey batches hold the tokens of one shortest-length batch, so training on
 * [32, 64] costs what [32] does.
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
  mqar: RecallBudget & { length: number; pairs: number; alphabet: number; states: number[] };
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
    mqar: { steps: 300, batch: 16, lr: 3e-3, length: 32, pairs: 4, alphabet: 8, states: [1, 4] },
    evalExamples: 16,
  },
  default: {
    model: { vocab: 64, width: 64, layers: 2 },
    scaling: { lengths: pow2(256, 65536), maxLength: 2 ** 20, fixedCostShare: 0.1, minSecondsAtLargest: 0.5, memoryBudgetBytes: 2 ** 30, gpuMemoryBudgetBytes: 8 * 2 ** 30, secondsPerPoint: 20, minSecondsPerPoint: 0.3 },
    decode: { positions: [256, 1024, 4096, 16384], steps: 16, chunk: 1024 },
    selectiveCopy: { steps: 1600, batch: 32, lr: 3e-3, length: 64, count: 8 },
    passkey: { steps: 2000, batch: 32, lr: 3e-3, trainLengths: [32, 64], evalLengths: [32, 64, 128, 256, 512], depths: [0.1, 0.5, 0.9], smallState: 4 },
    mqar: { steps: 1000, batch: 32, lr: 3e-3, length: 64, pairs: 8, alphabet: 8, states: [1, 2, 4, 16] },
    evalExamples: 64,
  },
};
