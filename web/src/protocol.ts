/**
 * Messages between the page and the engine worker. The page sends one request at a time per
 * id; the worker answers with events (streaming progress) and then exactly one "done" or
 * "error". "stop" is not queued: it asks the running job to end after its current token/step.
 */
import type { ArchName, SizeName } from "./engine/choices.js";

export type BackendChoice = "auto" | "webgpu" | "cpu";

export type Request =
  | { kind: "init"; backend: BackendChoice; threads?: number }
  | { kind: "fresh"; arch: ArchName; size: SizeName; vocab: number; seed: number }
  | { kind: "load"; configName: string; configText: string; weightsName: string; weights: ArrayBuffer }
  | { kind: "generate"; prompt: number[]; maxNewTokens: number; temperature: number; topK: number; seed: number }
  | { kind: "train"; length: number; steps: number; batch: number; lr: number; seed: number }
  | PasskeyRequest
  | { kind: "stop" };

export interface PasskeyRequest {
  kind: "passkey";
  archs: ArchName[];
  /** also evaluate the loaded/current model (no training) */
  includeCurrent: boolean;
  size: SizeName;
  trainLength: number;
  steps: number;
  batch: number;
  lr: number;
  /** evaluation: context length and needle depth in [0, 1] */
  length: number;
  depth: number;
  trials: number;
  seed: number;
}

export interface BackendInfo {
  name: "webgpu" | "cpu";
  /** backend.describe(): adapter or threads, precision */
  describe: string;
  /** why this backend: forced by the URL, or what auto found */
  reason: string;
  threads?: number;
  adapter?: string;
}

export interface ModelInfo {
  /** what the page shows: "transformer (small, seed 1)" or the file name */
  label: string;
  modelType: string;
  vocab: number;
  width: number;
  /** one entry per layer: "attention", "mamba" ... */
  layerKinds: string[];
  parameters: number;
  parameterBytes: number;
  /** the config.json the model was built from (fresh models: the preset's) */
  config: Record<string, unknown>;
}

export interface TokenEvent {
  type: "token";
  token: number;
  index: number;
  /** tokens in the state after this one was chosen (the position of the next) */
  position: number;
  /** time to compute the logits this token was chosen from */
  ms: number;
  kvCache: number;
  kvCacheAllocated: number;
  recurrent: number;
}

export interface PrefillEvent {
  type: "prefill";
  tokens: number;
  ms: number;
  kvCache: number;
  recurrent: number;
}

export interface GenerateResult {
  tokens: number[];
  prefillMs: number;
  decodeTokensPerSecond: number;
  stopped: boolean;
}

export interface StepEvent {
  type: "step";
  /** which model is training (passkey runs train several) */
  run: string;
  step: number;
  loss: number;
  lr: number;
  seconds: number;
}

export interface TrainResult {
  losses: number[];
  seconds: number;
  tokensPerSecond: number;
  stopped: boolean;
}

export interface PasskeyRow {
  run: string;
  /** the model's answer (5 digits, argmax) on the first trial, and the key */
  answer: number[];
  key: number[];
  correct: number;
  trials: number;
  accuracy: number;
  /** refusal or failure of this architecture on this backend, e.g. a kernel not implemented */
  error?: string;
}

export interface PasskeyRowEvent extends PasskeyRow {
  type: "row";
}

export type EngineEvent = TokenEvent | PrefillEvent | StepEvent | PasskeyRowEvent | { type: "status"; text: string };

export type WorkerMessage =
  | { id: number; type: "event"; event: EngineEvent }
  | { id: number; type: "done"; result: unknown }
  | { id: number; type: "error"; message: string };
