/**
 * Decode benchmark: a random prompt of N tokens is prefilled, then M tokens are decoded greedily
 * through the inference state. Reports prefill and decode throughput and the process's peak RSS.
 */
import type { CausalLM } from "../models/causal_lm.js";
import { generate } from "../generate/generate.js";
import { Rng } from "../util/rng.js";

export interface DecodeBench {
  backend: string;
  threads: number | null;
  prompt_tokens: number;
  new_tokens: number;
  prefill_tok_s: number;
  decode_tok_s: number;
  peak_rss_bytes: number;
}

export async function benchDecode(model: CausalLM, o: { promptTokens: number; newTokens: number; seed: number; threads: number | null }): Promise<DecodeBench & { tokens: number[] }> {
  const rng = new Rng(o.seed);
  const prompt = Array.from({ length: o.promptTokens }, () => rng.int(0, model.config.V));
  const { tokens, stats } = await generate(model, prompt, { maxNewTokens: o.newTokens });
  return {
    backend: model.backend.describe(),
    threads: o.threads,
    prompt_tokens: o.promptTokens,
    new_tokens: stats.newTokens,
    prefill_tok_s: stats.prefillTokensPerSecond,
    decode_tok_s: stats.decodeTokensPerSecond,
    peak_rss_bytes: process.resourceUsage().maxRSS * 1024,
    tokens,
  };
}
