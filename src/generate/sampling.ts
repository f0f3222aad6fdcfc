/**
 * Choosing the next token from logits: greedy (argmax, lowest index on ties, as torch.argmax),
 * or sampling with temperature, top-k and top-p (nucleus, Holtzman et al. 2020) from a seeded
 * generator, applied in HF's order: temperature, top-k, top-p.
 */
import { Rng } from "../util/rng.js";
import { SeqlabError } from "../util/errors.js";

export interface SamplingOptions {
  /** 0 (default) decodes greedily */
  temperature?: number;
  /** keep the k most likely tokens (0: off) */
  topK?: number;
  /** keep the smallest set whose probability reaches p (1: off) */
  topP?: number;
  seed?: number;
}

export function checkSampling(o: SamplingOptions): void {
  const t = o.temperature ?? 0;
  if (!(t >= 0) || !Number.isFinite(t)) throw new SeqlabError(`temperature must be a number >= 0, got ${o.temperature}`);
  if (o.topK !== undefined && !(Number.isInteger(o.topK) && o.topK >= 0)) {
    throw new SeqlabError(`top-k must be a non-negative integer, got ${o.topK}`);
  }
  if (o.topP !== undefined && !(o.topP > 0 && o.topP <= 1)) throw new SeqlabError(`top-p must be in (0, 1], got ${o.topP}`);
}

export function argmax(logits: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
  return best;
}

export class Sampler {
  private readonly rng: Rng;

  constructor(readonly opts: SamplingOptions = {}) {
    checkSampling(opts);
    this.rng = new Rng(opts.seed ?? 0);
  }

  get greedy(): boolean {
    return (this.opts.temperature ?? 0) === 0;
  }

  next(logits: ArrayLike<number>): number {
    if (this.greedy) return argmax(logits);
    const V = logits.length;
    const t = this.opts.temperature!;
    let order = Array.from({ length: V }, (_, i) => i).sort((a, b) => logits[b] - logits[a] || a - b);
    const k = this.opts.topK ?? 0;
    if (k > 0 && k < V) order = order.slice(0, k);
    const m = logits[order[0]] / t;
    let probs = order.map((i) => Math.exp(logits[i] / t - m));
    let total = probs.reduce((a, b) => a + b, 0);
    probs = probs.map((p) => p / total);
    const p = this.opts.topP ?? 1;
    if (p < 1) {
      let cum = 0;
      let keep = 0;
      while (keep < probs.length && cum < p) cum += probs[keep++];
      order = order.slice(0, keep);
      probs = probs.slice(0, keep);
      total = probs.reduce((a, b) => a + b, 0);
      probs = probs.map((q) => q / total);
    }
    let u = this.rng.uniform();
    for (let i = 0; i < probs.length; i++) {
      u -= probs[i];
      if (u < 0) return order[i];
    }
    return order[order.length - 1];
  }
}
