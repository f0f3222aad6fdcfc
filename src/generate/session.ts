/**
 * A decoding session: one sequence's inference state and the tokens it has consumed, kept
 * across calls so that a conversation continues from where the last reply stopped instead of
 * re-reading the whole history. Attention layers keep their KV cache, recurrent layers their
 * fixed-size state; either way only the new tokens are run through the model.
 *
 * When the new sequence departs from what was consumed (a chat history that re-tokenizes
 * differently), a model whose every layer is attention rewinds its KV cache to the common
 * prefix; a recurrent state cannot be rewound, so it starts over.
 */
import type { CausalLM } from "../models/causal_lm.js";
import type { InferenceState } from "../nn/state.js";
import { SeqlabError } from "../util/errors.js";
import { advance, type GenerateOptions, type GenerateStats } from "./generate.js";
import { Sampler } from "./sampling.js";

export interface Reply {
  /** the new tokens, the stop token included when one ended the reply */
  tokens: number[];
  /** prompt tokens the state already held (not run again) */
  reused: number;
  /** true when a stop token ended it, false when maxNewTokens did */
  stopped: boolean;
  stats: GenerateStats;
}

export class DecodeSession {
  private state: InferenceState;
  /** the tokens the state has consumed, in order */
  private fed: number[] = [];

  constructor(
    readonly model: CausalLM,
    /** initial KV-cache rows (caches grow past it) */
    private readonly capacity = 256,
  ) {
    this.state = model.allocateState(1, capacity);
  }

  get consumed(): readonly number[] {
    return this.fed;
  }

  /** Forget everything consumed: a fresh state. */
  reset(): void {
    this.state.dispose();
    this.state = this.model.allocateState(1, this.capacity);
    this.fed = [];
  }

  /**
   * Continue with `ids`, the whole sequence so far, running only what the state does not hold
   * already (at least the last token, whose logits are wanted). Returns how many tokens ran.
   */
  async extendTo(ids: readonly number[]): Promise<{ ran: number; logits: Float32Array }> {
    let keep = 0;
    while (keep < this.fed.length && keep < ids.length - 1 && this.fed[keep] === ids[keep]) keep++;
    if (keep < this.fed.length) {
      if (keep > 0 && this.rewindable()) this.rewind(keep);
      else this.reset();
    }
    const rest = ids.slice(this.fed.length);
    return { ran: rest.length, logits: await this.feed(rest) };
  }

  /** Only KV caches can be cut back to a prefix; a recurrent state has folded every token in. */
  private rewindable(): boolean {
    return this.state.layers.every((l) => l.kind === "attention");
  }

  private rewind(n: number): void {
    for (const l of this.state.layers) if (l.kind === "attention") l.length = n;
    this.state.position = n;
    this.fed.length = n;
  }

  /** Run `ids` through the model after what it consumed; the logits after the last one. */
  async feed(ids: readonly number[]): Promise<Float32Array> {
    if (ids.length === 0) throw new SeqlabError("nothing to run: the prompt adds no tokens");
    const logits = await advance(this.model, this.state, [...ids]);
    this.fed.push(...ids);
    return logits;
  }

  /**
   * Prefill `prompt` (the whole sequence so far, see extendTo), then sample up to maxNewTokens,
   * calling onToken with each as soon as it is chosen. The last token is not fed back (nothing
   * reads its logits), so a following call starts by running it.
   */
  async generate(prompt: readonly number[], opts: GenerateOptions): Promise<Reply> {
    if (prompt.length === 0) throw new SeqlabError("the prompt is empty: give at least one token");
    if (!(Number.isInteger(opts.maxNewTokens) && opts.maxNewTokens >= 0)) {
      throw new SeqlabError(`max new tokens must be a non-negative integer, got ${opts.maxNewTokens}`);
    }
    const sampler = new Sampler(opts);
    const t0 = performance.now();
    const { ran, logits: first } = await this.extendTo(prompt);
    const t1 = performance.now();
    let logits = first;
    const tokens: number[] = [];
    let stopped = false;
    for (let i = 0; i < opts.maxNewTokens; i++) {
      const next = sampler.next(logits);
      tokens.push(next);
      opts.onToken?.(next, i);
      if (opts.stopTokens?.includes(next)) {
        stopped = true;
        break;
      }
      if (i === opts.maxNewTokens - 1) break;
      logits = await this.feed([next]);
    }
    const t2 = performance.now();
    const prefillSeconds = (t1 - t0) / 1000;
    const decodeSeconds = (t2 - t1) / 1000;
    return {
      tokens,
      reused: prompt.length - ran,
      stopped,
      stats: {
        promptTokens: ran,
        newTokens: tokens.length,
        prefillSeconds,
        decodeSeconds,
        prefillTokensPerSecond: ran / prefillSeconds,
        decodeTokensPerSecond: tokens.length > 1 ? (tokens.length - 1) / decodeSeconds : 0,
        stateBytes: this.state.bytes(),
      },
    };
  }

  dispose(): void {
    this.state.dispose();
  }
}
