/**
 * RWKV-7 "Goose" (x070) as BlinkDL RWKV-LM defines it, loading the official parameter names
 * and shapes (emb.weight, blocks.i.{ln0,ln1,ln2,att.*,ffn.*}, ln_out, head.weight). Layer 0
 * LayerNorms the embeddings (ln0) and hands its value to later layers (the value residual).
 *
 * config.json (seqlab's form, as ../shared/fixtures/rwkv7/config.json): model_type "rwkv7",
 * vocab_size, hidden_size, num_hidden_layers, head_size, decay_low_rank_dim, a_low_rank_dim,
 * v_low_rank_dim, gate_low_rank_dim, intermediate_size, layer_norm_epsilon, group_norm_epsilon,
 * optionally tie_word_embeddings. Missing low-rank dims take RWKV-LM's suggestions.
 *
 * Hidden states follow seqlab's convention (models/stack.ts): the embeddings first, each
 * block's output, the last replaced by the ln_out output.
 */
import type { Tensor } from "../tensor/tensor.js";
import type { Backend } from "../backend/backend.js";
import { isGradEnabled } from "../autograd/tape.js";
import { ModuleContext, normalInit } from "../nn/module.js";
import { Embedding, LayerNorm, Linear } from "../nn/layers.js";
import { Rwkv7Block, type Rwkv7LayerConfig } from "../nn/rwkv7.js";
import { InferenceState, type Rwkv7State } from "../nn/state.js";
import type { RawConfig } from "../io/config.js";
import { CausalLM, type ForwardOptions, type ForwardResult, type LMConfig } from "./causal_lm.js";
import { blockScope } from "./stack.js";

export interface Rwkv7Config extends LMConfig {
  layer: Rwkv7LayerConfig;
}

/** RWKV-LM train_temp/src/model.py's suggested LoRA width: max(32, round(scale sqrt(C) / 32) * 32). */
function suggestedLora(C: number, scale: number): number {
  return Math.max(32, Math.round((scale * Math.sqrt(C)) / 32) * 32);
}

export function parseRwkv7Config(raw: RawConfig): Rwkv7Config {
  const C = raw.int("hidden_size");
  const L = raw.int("num_hidden_layers");
  const N = raw.int("head_size", 64);
  raw.require(C % N === 0, `hidden_size ${C} must be a multiple of head_size ${N}`);
  return {
    modelType: "rwkv7",
    V: raw.int("vocab_size"),
    C,
    L,
    tieWordEmbeddings: raw.bool("tie_word_embeddings", false),
    maxPositions: null,
    layer: {
      C,
      H: C / N,
      N,
      F: raw.int("intermediate_size", 4 * C),
      L,
      Dw: raw.int("decay_low_rank_dim", suggestedLora(C, 2.5)),
      Da: raw.int("a_low_rank_dim", suggestedLora(C, 2.5)),
      Dv: raw.int("v_low_rank_dim", suggestedLora(C, 1.7)),
      Dg: raw.int("gate_low_rank_dim", suggestedLora(C, 5)),
      eps: raw.num("layer_norm_epsilon", 1e-5),
      groupNormEps: raw.num("group_norm_epsilon", 64e-5),
      chunk: N,
    },
  };
}

export class Rwkv7ForCausalLM extends CausalLM {
  readonly backend: Backend;
  emb: Embedding;
  blocks: Rwkv7Block[];
  ln_out: LayerNorm;
  head: Linear;

  constructor(
    ctx: ModuleContext,
    readonly config: Rwkv7Config,
  ) {
    super();
    const { V, C, L, layer } = config;
    this.backend = ctx.backend;
    // RWKV-LM's tiny embedding init assumes an untied head; a tied table takes the head's
    // init instead (ln0 normalises it on the way in), or the logits start at ~1e-4 and every
    // gradient through the head with them, and training stalls at the unigram loss
    const tiedInit = normalInit(0.5 / Math.sqrt(C));
    this.emb = new Embedding(ctx, V, C, config.tieWordEmbeddings ? tiedInit : { kind: "uniform", low: -1e-4, high: 1e-4 });
    this.blocks = Array.from({ length: L }, (_, i) => new Rwkv7Block(ctx, layer, i));
    this.ln_out = new LayerNorm(ctx, C, layer.eps);
    this.head = new Linear(ctx, C, V, false, normalInit(0.5 / Math.sqrt(C)));
    if (config.tieWordEmbeddings) this.head.weight = this.emb.weight;
  }

  forward(ids: Tensor, opts: ForwardOptions = {}): ForwardResult {
    const [B, T] = ids.shape;
    const { C, L } = this.config;
    const state = opts.state;
    // one token with a state and no gradient: decode through the step kernels
    const decoding = state !== undefined && T === 1 && !isGradEnabled();
    let h = this.emb.forward(ids); // (B, T, C)
    const hidden: Tensor[] = opts.outputHidden ? [h] : [];
    let vFirst: Tensor | null = null;
    this.blocks.forEach((block, i) => {
      const s = state?.layers[i] as Rwkv7State | undefined;
      const [input, v] = [h, vFirst];
      const out = blockScope(() => (decoding ? block.step(input.reshape([B, C]), v, s!) : block.forward(input, v, s)));
      h = out.h.reshape([B, T, C]); // (B, T, C)
      vFirst = out.vFirst;
      if (opts.outputHidden && i < L - 1) hidden.push(h);
    });
    h = this.ln_out.forward(h); // (B, T, C)
    if (opts.outputHidden) hidden.push(h);
    const logits = this.head.forward(h); // (B, T, V)
    if (state) state.position += T;
    return { logits, hidden };
  }

  allocateState(batch: number): InferenceState {
    return new InferenceState(
      batch,
      this.blocks.map((b) => b.allocateState(batch)),
    );
  }

  /** Steps between WKV-7 state checkpoints in training (memory B T H N^2 / chunk). */
  setChunk(chunk: number): void {
    for (const b of this.blocks) b.att.chunk = chunk;
  }
}
