/**
 * Autoregressive generation through the model's inference state: one prefill over the prompt,
 * then one forward of a single token per step. Attention layers read a KV cache that grows;
 * recurrent layers update a fixed-size state. Only the last position's logits are read back.
 */
import type { Tensor } from "../tensor/tensor.js";
import { tidyAsync } from "../tensor/scope.js";
import { backendOf, empty, kernelsOf, toFloat32 } from "../backend/alloc.js";
import { noGradAsync } from "../autograd/tape.js";
import type { CausalLM } from "../models/causal_lm.js";
import type { InferenceState } from "../nn/state.js";
import { Sampler, type SamplingOptions } from "./sampling.js";
import { SeqlabError } from "../util/errors.js";

export interface GenerateOptions extends SamplingOptions {
  maxNewTokens: number;
  /** stop after emitting any of these */
  stopTokens?: number[];
  /** called with each new token as soon as it is chosen (streaming) */
  onToken?: (token: number, index: number) => void;
}

export interface GenerateStats {
  promptTokens: number;
  newTokens: number;
  prefillSeconds: number;
  decodeSeconds: number;
  prefillTokensPerSecond: number;
  decodeTokensPerSecond: number;
  stateBytes: { kvCache: number; kvCacheAllocated: number; recurrent: number };
}

export interface GenerateResult {
  /** prompt followed by the new tokens */
  tokens: number[];
  stats: GenerateStats;
}

/** logits (B, T, V) -> (B, V) at the last position */
export function lastPosition(logits: Tensor): Tensor {
  const [B, T, V] = logits.shape;
  const out = empty(backendOf(logits), [B, V]); // (B, V)
  kernelsOf(logits).copy2d(out.handle, logits.handle, B, V, V, 0, T * V, (T - 1) * V, false);
  return out;
}

/** Run `ids` (one sequence) through the model from `state`, returning the last logits row. */
export async function advance(model: CausalLM, state: InferenceState, ids: number[]): Promise<Float32Array> {
  return noGradAsync(() =>
    tidyAsync(async () => {
      const x = model.tokens(ids, 1, ids.length, state.position); // (1, T)
      const { logits } = model.forward(x, { state, lastOnly: true }); // (1, 1, V), or (1, T, V) from a model that computes every row
      return toFloat32(lastPosition(logits));
    }),
  );
}

export async function generate(model: CausalLM, prompt: number[], opts: GenerateOptions): Promise<GenerateResult> {
  if (prompt.length === 0) throw new SeqlabError("the prompt is empty: give at least one token");
  if (!(Number.isInteger(opts.maxNewTokens) && opts.maxNewTokens >= 0)) {
    throw new SeqlabError(`max new tokens must be a non-negative integer, got ${opts.maxNewTokens}`);
  }
  const sampler = new Sampler(opts);
  const state = model.allocateState(1, prompt.length + opts.maxNewTokens);
  try {
    const t0 = performance.now();
    let logits = await advance(model, state, prompt);
    const t1 = performance.now();
    const tokens = [...prompt];
    for (let i = 0; i < opts.maxNewTokens; i++) {
      const next = sampler.next(logits);
      tokens.push(next);
      opts.onToken?.(next, i);
      if (opts.stopTokens?.includes(next) || i === opts.maxNewTokens - 1) break;
      logits = await advance(model, state, [next]);
    }
    const t2 = performance.now();
    const newTokens = tokens.length - prompt.length;
    const prefillSeconds = (t1 - t0) / 1000;
    const decodeSeconds = (t2 - t1) / 1000;
    return {
      tokens,
      stats: {
        promptTokens: prompt.length,
        newTokens,
        prefillSeconds,
        decodeSeconds,
        prefillTokensPerSecond: prompt.length / prefillSeconds,
        decodeTokensPerSecond: newTokens > 1 ? (newTokens - 1) / decodeSeconds : 0,
        stateBytes: state.bytes(),
      },
    };
  } finally {
    state.dispose();
  }
}
