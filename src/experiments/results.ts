/**
 * The showdown's results: every number the report shows, with units in the field names
 * (seconds, bytes, ms per token, accuracy as a fraction) and a legend in `units`, plus what is
 * needed to reproduce it (machine, backend, seeds, versions, settings).
 */
import type { ScalingSeries } from "./scaling.js";
import type { DecodeSeries } from "./decode.js";

export interface RecallRun {
  arch: string;
  label: string;
  params: number;
  task: string;
  /** what varies across runs of one architecture (state size, width), if anything */
  variant?: string;
  /** the SSM state size N, where the variant is one */
  stateSize?: number;
  trainLengths: number[];
  steps: number;
  trainSeconds: number;
  finalLoss: number;
  /** accuracy by evaluation setting, e.g. "L128" or "L128_d0.5" */
  accuracy: Record<string, number>;
  /**
   * MQAR: the accuracy of recalling nothing on the same held-out examples (each query answered
   * with one of the context's values not yet asked for, uniformly), by evaluation setting
   */
  guessAccuracy?: Record<string, number>;
}

export type Verdict = "reproduced" | "not reproduced" | "not measured";

export interface ClaimResult {
  id: number;
  title: string;
  verdict: Verdict;
  /** the numbers the verdict rests on, in words */
  evidence: string[];
}

export interface ShowdownResults {
  schema: "seqlab-showdown/1";
  createdAt: string;
  mode: "quick" | "default";
  machine: { cpu: string; cores: number; memoryBytes: number; platform: string; node: string };
  backend: string;
  seed: number;
  versions: Record<string, string>;
  settings: Record<string, unknown>;
  units: Record<string, string>;
  architectures: { id: string; label: string; params: number; config: Record<string, unknown> }[];
  scaling: ScalingSeries[];
  decode: DecodeSeries[];
  recall: RecallRun[];
  claims: ClaimResult[];
  elapsedSeconds: number;
}

export const UNITS: Record<string, string> = {
  seconds: "s (wall clock, best of repeats)",
  peakBytes: "bytes of tensor storage above what was live before the run",
  msPerToken: "ms per decoded token (mean over a round of steps, fastest of 5 rounds interleaved across positions)",
  kvCacheBytes: "bytes of KV cache filled",
  recurrentBytes: "bytes of recurrent state",
  timeSlope: "exponent k of time ~ T^k (log-log fit over the largest lengths)",
  memorySlope: "exponent k of peak bytes ~ T^k",
  bytesSlope: "exponent k of state bytes ~ position^k",
  accuracy: "fraction of held-out examples (passkey: all 5 digits) or answer positions right",
  guessAccuracy: "fraction of MQAR answers right when guessing among the context's values not yet asked (no recall)",
  trainSeconds: "s",
  params: "parameters",
};
