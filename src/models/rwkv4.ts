/**
 * RwkvForCausalLM (transformers models/rwkv, RWKV-4): embeddings, RWKV blocks (a LayerNorm on
 * the embeddings in block 0), ln_out and an LM head, with the HF checkpoint names.
 *
 * Two HF behaviours kept on purpose:
 * - hidden states are each block's output followed by the ln_out output (L + 1 tensors; the
 *   embeddings are not among them), as RwkvModel.forward collects them;
 * - `rescale_every` > 0: in inference mode (HF's eval(), the default after loading) block i's
 *   attention.output and feed_forward.value weights are divided in place by
 *   2^floor(i / rescale_every) and the residual stream is halved after every rescale_every
 *   blocks, which keeps fp16 activations in range. LayerNorms make this almost exactly the same
 *   function; gradients taken in this mode are with respect to the rescaled weights, as in HF.
 *   setTraining(true) multiplies the weights back.
 */
import type { Tensor } from "../tensor/tensor.js";
import type { Backend } from "../backend/backend.js";
import { kernelsOf } from "../backend/alloc.js";
import * as ops from "../ops/index.js";
import { isGradEnabled } from "../autograd/tape.js";
import { Module, ModuleContext, normalInit } from "../nn/module.js";
import { Embedding, LayerNorm, Linear } from "../nn/layers.js";
import { RwkvBlock, type Rwkv4LayerConfig } from "../nn/rwkv4.js";
import { InferenceState, type Rwkv4State } from "../nn/state.js";
import type { RawConfig } from "../io/config.js";
import { CausalLM, type ForwardOptions, type ForwardResult, type LMConfig } from "./causal_lm.js";
import { blockScope } from "./stack.js";

export interface Rwkv4Config extends LMConfig {
  layer: Rwkv4LayerConfig;
  /** halve the residual stream every this many blocks in inference mode (0: never) */
  rescaleEvery: number;
}

/** Defaults from transformers RwkvConfig. */
export function parseRwkv4Config(raw: RawConfig): Rwkv4Config {
  const C = raw.int("hidden_size", 4096);
  const L = raw.int("num_hidden_layers", 32);
  return {
    modelType: "rwkv",
    V: raw.int("vocab_size", 50277),
    C,
    L,
    tieWordEmbeddings: raw.bool("tie_word_embeddings", false),
    // context_length only sizes HF's CUDA kernel; the recurrence has no position limit
    maxPositions: null,
    layer: {
      C,
      D: raw.int("attention_hidden_size", C),
      F: raw.int("intermediate_size", 4 * C),
      L,
      eps: raw.num("layer_norm_epsilon", 1e-5),
      initStd: raw.num("initializer_range", 0.02),
    },
    rescaleEvery: raw.int("rescale_every", 6, 0),
  };
}

export class RwkvModel extends Module {
  embeddings: Embedding;
  blocks: RwkvBlock[];
  ln_out: LayerNorm;

  constructor(ctx: ModuleContext, cfg: Rwkv4Config) {
    super();
    this.embeddings = new Embedding(ctx, cfg.V, cfg.C, normalInit(cfg.layer.initStd));
    this.blocks = Array.from({ length: cfg.L }, (_, i) => new RwkvBlock(ctx, cfg.layer, i));
    this.ln_out = new LayerNorm(ctx, cfg.C, 1e-5); // HF builds it with LayerNorm's default eps
  }
}

export class RwkvForCausalLM extends CausalLM {
  readonly backend: Backend;
  rwkv: RwkvModel;
  head: Linear;
  /** HF's module.training: false after loading, as from_pretrained returns eval() models */
  private training = false;
  private layersAreRescaled = false;

  constructor(
    ctx: ModuleContext,
    readonly config: Rwkv4Config,
  ) {
    super();
    this.backend = ctx.backend;
    this.rwkv = new RwkvModel(ctx, config);
    this.head = new Linear(ctx, config.C, config.V, false, normalInit(config.layer.initStd));
    if (config.tieWordEmbeddings) this.head.weight = this.rwkv.embeddings.weight;
  }

  /** HF train() / eval(): only matters with rescale_every > 0 (see the file comment). */
  setTraining(training: boolean): void {
    this.training = training;
  }

  forward(ids: Tensor, opts: ForwardOptions = {}): ForwardResult {
    this.applyRescale();
    const [B, T] = ids.shape;
    const { C } = this.config;
    const state = opts.state;
    // one token with a state and no gradient: decode through the step kernels
    const decoding = state !== undefined && T === 1 && !isGradEnabled();
    let h = this.rwkv.embeddings.forward(ids); // (B, T, C)
    const hidden: Tensor[] = [];
    this.rwkv.blocks.forEach((block, i) => {
      const s = state?.layers[i] as Rwkv4State | undefined;
      const input = h;
      h = blockScope(() => (decoding ? block.step(input.reshape([B, C]), s!).reshape([B, 1, C]) : block.forward(input, s))); // (B, T, C)
      if (this.layersAreRescaled && this.config.rescaleEvery > 0 && (i + 1) % this.config.rescaleEvery === 0) {
        h = ops.scale(h, 0.5);
      }
      if (opts.outputHidden) hidden.push(h);
    });
    h = this.rwkv.ln_out.forward(h); // (B, T, C)
    if (opts.outputHidden) hidden.push(h);
    const logits = this.head.forward(h); // (B, T, V)
    if (state) state.position += T;
    return { logits, hidden };
  }

  allocateState(batch: number): InferenceState {
    return new InferenceState(
      batch,
      this.rwkv.blocks.map((b) => b.allocateState(batch)),
    );
  }

  /** HF RwkvModel._rescale_layers: bring the weights to the form the current mode expects. */
  private applyRescale(): void {
    const every = this.config.rescaleEvery;
    if (this.training !== this.layersAreRescaled) return;
    if (every > 0) {
      this.rwkv.blocks.forEach((block, i) => {
        const factor = 2 ** Math.floor(i / every);
        for (const w of [block.attention.output.weight, block.feed_forward.value.weight]) {
          kernelsOf(w).axpby(w.handle, this.training ? factor : 1 / factor, w.handle, 0, w.handle, w.size);
        }
      });
    }
    this.layersAreRescaled = !this.training;
  }
}
