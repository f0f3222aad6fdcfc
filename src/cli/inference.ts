/**
 * What the inference commands (generate, chat, passkey, export) share: the --model argument (a
 * directory or hf:owner/name[@revision]), loading the model and its tokenizer on the chosen
 * backend, the sampling flags, and the closing stats line.
 */
import * as fs from "node:fs";
import { createBackend } from "../backend/registry.js";
import type { Backend } from "../backend/backend.js";
import { resolveModelDir } from "../io/hub.js";
import { loadTokenizer, type Tokenizer } from "../io/tokenizer.js";
import { loadModel } from "../models/load.js";
import type { CausalLM } from "../models/causal_lm.js";
import type { GenerateStats } from "../generate/generate.js";
import type { SamplingOptions } from "../generate/sampling.js";
import { SeqlabError } from "../util/errors.js";
import { formatBytes } from "../util/format.js";
import { intFlag, numFlag, type OptionSpec } from "./args.js";
import { cpuFlags, kvCacheFlag, loadFlags, type Values } from "./command.js";

export const MODEL_OPTION: OptionSpec = {
  model: { type: "string", help: "model directory, or hf:owner/name[@revision] from the Hugging Face hub (cached in SEQLAB_CACHE or ~/.cache/seqlab/hub)" },
};

export const SAMPLING_OPTIONS: OptionSpec = {
  "max-new-tokens": { type: "string", help: "tokens to generate at most" },
  temperature: { type: "string", default: "0", help: "sampling temperature (0: greedy)" },
  "top-k": { type: "string", help: "sample among the k most likely tokens (0: off)" },
  "top-p": { type: "string", help: "sample among the most likely tokens up to probability p (1: off)" },
  seed: { type: "string", default: "0", help: "sampling seed" },
  "ignore-eos": { type: "boolean", help: "do not stop at the end-of-sequence token" },
};

/** The model directory --model names (downloading an hf: model first). */
export async function modelDir(command: string, v: Values): Promise<string> {
  const spec = v.model as string | undefined;
  if (!spec) throw new SeqlabError(`${command}: --model is required (a model directory or hf:owner/name)`);
  const dir = await resolveModelDir(spec);
  if (!fs.existsSync(dir)) throw new SeqlabError(`${dir}: no such model directory`);
  if (!fs.statSync(dir).isDirectory()) throw new SeqlabError(`${dir}: not a directory`);
  return dir;
}

export interface Loaded {
  dir: string;
  backend: Backend;
  model: CausalLM;
}

/** Backend, then the model (weights checked against the memory budget first). */
export async function loadForInference(command: string, v: Values, dir: string): Promise<Loaded> {
  const load = loadFlags(command, v, "auto");
  const backend = await createBackend(v.backend as string, { ...cpuFlags(command, v), kvCache: kvCacheFlag(command, v["kv-cache"]) });
  const model = loadModel(dir, backend, load);
  const weightDtype = model.parameters().find((p) => p.dtype !== "f32")?.dtype ?? "f32";
  console.error(
    `${command}: ${dir}: ${model.config.modelType}, ${model.parameterCount().toLocaleString("en-US")} parameters, ${weightDtype} weights; backend ${backend.describe()}`,
  );
  return { dir, backend, model };
}

/** The model directory's tokenizer (read before the weights: a missing one fails fast). */
export function tokenizerOf(dir: string): Tokenizer {
  return loadTokenizer(dir);
}

/** A tokenizer must not produce ids the model has no embedding for. */
export function checkTokenizerFits(tok: Tokenizer, model: CausalLM): Tokenizer {
  if (tok.vocabSize > model.config.V) {
    throw new SeqlabError(`${tok.source}: the tokenizer has ${tok.vocabSize} tokens, more than the model's vocabulary of ${model.config.V}`);
  }
  return tok;
}

export function samplingFlags(command: string, v: Values): SamplingOptions {
  return {
    temperature: numFlag(command, "temperature", v.temperature, 0, 0, 100),
    topK: v["top-k"] === undefined ? undefined : intFlag(command, "top-k", v["top-k"], 0, 0, 1 << 30),
    topP: v["top-p"] === undefined ? undefined : numFlag(command, "top-p", v["top-p"], 1, Number.MIN_VALUE, 1),
    seed: intFlag(command, "seed", v.seed, 0, 0, 2 ** 32 - 1),
  };
}

/** One line: prefill and decode speed, and what the inference state holds. */
export function formatStats(s: GenerateStats): string {
  const { kvCache, kvCacheAllocated, recurrent } = s.stateBytes;
  const state = [
    kvCacheAllocated > 0 ? `KV cache ${formatBytes(kvCache)} (allocated ${formatBytes(kvCacheAllocated)})` : null,
    recurrent > 0 || kvCacheAllocated === 0 ? `recurrent state ${formatBytes(recurrent)}` : null,
  ].filter(Boolean);
  return (
    `prefill ${s.promptTokens} tokens in ${s.prefillSeconds.toFixed(3)} s (${s.prefillTokensPerSecond.toFixed(1)} tok/s), ` +
    `decode ${s.newTokens} tokens in ${s.decodeSeconds.toFixed(3)} s (${s.decodeTokensPerSecond.toFixed(1)} tok/s), ${state.join(", ")}`
  );
}

/** A reader that stops reading (`seqlab generate | head`) ends the command quietly, not with a stack trace. */
export function exitWhenStdoutCloses(): void {
  process.stdout.on("error", (e: NodeJS.ErrnoException) => {
    if (e.code !== "EPIPE") throw e;
    process.exit(0);
  });
}
