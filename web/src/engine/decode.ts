/**
 * Token-by-token generation for the playground: the Node engine's building blocks (advance
 * through the inference state, the seeded Sampler), timed per token, with the state's bytes
 * after every token so the page can draw the KV cache growing against a fixed recurrent state.
 * The tokens are the ones generate() chooses for the same model, prompt and sampling options.
 */
import type { CausalLM } from "../../../src/models/causal_lm.js";
import { advance } from "../../../src/generate/generate.js";
import { Sampler } from "../../../src/generate/sampling.js";
import { SeqlabError } from "../../../src/util/errors.js";
import type { GenerateResult, PrefillEvent, TokenEvent } from "../protocol.js";

export interface DecodeOptions {
  prompt: number[];
  maxNewTokens: number;
  temperature: number;
  topK: number;
  seed: number;
}

export async function decode(
  model: CausalLM,
  o: DecodeOptions,
  emit: (e: TokenEvent | PrefillEvent) => void,
  pause: () => Promise<boolean>,
): Promise<GenerateResult> {
  if (o.prompt.length === 0) throw new SeqlabError("the prompt is empty: give at least one token");
  if (!(Number.isInteger(o.maxNewTokens) && o.maxNewTokens >= 1 && o.maxNewTokens <= 100000)) {
    throw new SeqlabError(`new tokens must be an integer in [1, 100000], got ${o.maxNewTokens}`);
  }
  const sampler = new Sampler({ temperature: o.temperature, topK: o.topK, seed: o.seed });
  const state = model.allocateState(1, o.prompt.length + o.maxNewTokens + 1);
  try {
    const t0 = performance.now();
    let logits = await advance(model, state, o.prompt);
    const prefillMs = performance.now() - t0;
    emit({ type: "prefill", tokens: o.prompt.length, ms: prefillMs, ...state.bytes() });
    const tokens = [...o.prompt];
    let decodeMs = 0;
    let stopped = false;
    for (let i = 0; i < o.maxNewTokens; i++) {
      const next = sampler.next(logits);
      tokens.push(next);
      // the chosen token goes through the model too: its cost at this position is what the
      // latency chart shows, and the state then holds it
      const t = performance.now();
      logits = await advance(model, state, [next]);
      const ms = performance.now() - t;
      decodeMs += ms;
      emit({ type: "token", token: next, index: i, position: state.position, ms, ...state.bytes() });
      if (await pause()) {
        stopped = true;
        break;
      }
    }
    const newTokens = tokens.length - o.prompt.length;
    return { tokens, prefillMs, decodeTokensPerSecond: decodeMs > 0 ? (newTokens * 1000) / decodeMs : 0, stopped };
  } finally {
    state.dispose();
  }
}
