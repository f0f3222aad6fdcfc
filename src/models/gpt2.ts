/**
 * GPT2LMHeadModel (transformers models/gpt2): learned position embeddings, pre-norm LayerNorm
 * blocks, a fused c_attn projection, GELU MLP. Its Conv1D layers store weights as (in, out).
 */
import type { Tensor } from "../tensor/tensor.js";
import type { Backend } from "../backend/backend.js";
import * as ops from "../ops/index.js";
import type { UnaryOp } from "../backend/kernels.js";
import { Module, ModuleContext, normalInit, zerosInit } from "../nn/module.js";
import { Embedding, LayerNorm, Linear } from "../nn/layers.js";
import { attendCached } from "../nn/attention.js";
import type { AttentionImpl } from "../ops/attention.js";
import { allocateAttentionState, InferenceState, type AttentionState, type LayerState } from "../nn/state.js";
import type { RawConfig } from "../io/config.js";
import { fromArray } from "../backend/alloc.js";
import { CausalLM, type ForwardOptions, type ForwardResult, type LMConfig } from "./causal_lm.js";
import { activationFromConfig } from "./activations.js";
import { runStack } from "./stack.js";

export interface GPT2Config extends LMConfig {
  H: number;
  K: number;
  F: number;
  eps: number;
  act: UnaryOp;
  scaleAttnWeights: boolean;
  scaleByInverseLayerIdx: boolean;
  initStd: number;
}

export function parseGPT2Config(raw: RawConfig): GPT2Config {
  const C = raw.int("n_embd");
  const H = raw.int("n_head");
  raw.require(C % H === 0, `n_embd ${C} must be a multiple of n_head ${H}`);
  return {
    modelType: "gpt2",
    V: raw.int("vocab_size"),
    C,
    L: raw.int("n_layer"),
    tieWordEmbeddings: raw.bool("tie_word_embeddings", true),
    maxPositions: raw.int("n_positions", 1024),
    H,
    K: C / H,
    F: raw.int("n_inner", 4 * C),
    eps: raw.num("layer_norm_epsilon", 1e-5),
    act: activationFromConfig(raw, "activation_function", "gelu_new"),
    scaleAttnWeights: raw.bool("scale_attn_weights", true),
    scaleByInverseLayerIdx: raw.bool("scale_attn_by_inverse_layer_idx", false),
    initStd: raw.num("initializer_range", 0.02),
  };
}

/** GPT-2's Conv1D: y = x W + b with W (in, out). */
export class Conv1D extends Module {
  weight: Tensor; // (in, out)
  bias: Tensor; // (out)

  constructor(ctx: ModuleContext, nIn: number, nOut: number, std: number) {
    super();
    this.weight = ctx.param([nIn, nOut], normalInit(std), { halfCapable: true });
    this.bias = ctx.param([nOut], zerosInit);
  }

  forward(x: Tensor): Tensor {
    return ops.matmulKN(x, this.weight, this.bias); // (..., out)
  }
}

export class GPT2Attention extends Module {
  c_attn: Conv1D;
  c_proj: Conv1D;
  impl: AttentionImpl = "tiled";
  private readonly scale: number;

  constructor(
    ctx: ModuleContext,
    private readonly cfg: GPT2Config,
    layerIdx: number,
  ) {
    super();
    this.c_attn = new Conv1D(ctx, cfg.C, 3 * cfg.C, cfg.initStd);
    this.c_proj = new Conv1D(ctx, cfg.C, cfg.C, cfg.initStd);
    let scale = cfg.scaleAttnWeights ? 1 / Math.sqrt(cfg.K) : 1;
    if (cfg.scaleByInverseLayerIdx) scale /= layerIdx + 1;
    this.scale = scale;
  }

  forward(x: Tensor, state?: AttentionState): Tensor {
    const [B, T, C] = x.shape;
    const { H, K } = this.cfg;
    const [q, k, v] = ops.split(this.c_attn.forward(x), [C, C, C]).map((t) => t.reshape([B, T, H, K])); // (B, T, H, K)
    const y = attendCached(q, k, v, state, this.impl, this.scale); // (B, T, H, K)
    return this.c_proj.forward(y.reshape([B, T, C])); // (B, T, C)
  }
}

export class GPT2MLP extends Module {
  c_fc: Conv1D;
  c_proj: Conv1D;

  constructor(
    ctx: ModuleContext,
    cfg: GPT2Config,
    private readonly act: UnaryOp,
  ) {
    super();
    this.c_fc = new Conv1D(ctx, cfg.C, cfg.F, cfg.initStd);
    this.c_proj = new Conv1D(ctx, cfg.F, cfg.C, cfg.initStd);
  }

  forward(x: Tensor): Tensor {
    return this.c_proj.forward(ops.unary(this.act, this.c_fc.forward(x))); // (B, T, C)
  }
}

export class GPT2Block extends Module {
  ln_1: LayerNorm;
  attn: GPT2Attention;
  ln_2: LayerNorm;
  mlp: GPT2MLP;

  constructor(ctx: ModuleContext, cfg: GPT2Config, layerIdx: number) {
    super();
    this.ln_1 = new LayerNorm(ctx, cfg.C, cfg.eps);
    this.attn = new GPT2Attention(ctx, cfg, layerIdx);
    this.ln_2 = new LayerNorm(ctx, cfg.C, cfg.eps);
    this.mlp = new GPT2MLP(ctx, cfg, cfg.act);
  }

  forward(x: Tensor, _pos0: number, state?: LayerState): Tensor {
    const h = ops.add(x, this.attn.forward(this.ln_1.forward(x), state as AttentionState | undefined)); // (B, T, C)
    return ops.add(h, this.mlp.forward(this.ln_2.forward(h))); // (B, T, C)
  }
}

export class GPT2Model extends Module {
  wte: Embedding;
  wpe: Embedding;
  h: GPT2Block[];
  ln_f: LayerNorm;

  constructor(ctx: ModuleContext, cfg: GPT2Config) {
    super();
    this.wte = new Embedding(ctx, cfg.V, cfg.C, normalInit(cfg.initStd));
    this.wpe = new Embedding(ctx, cfg.maxPositions!, cfg.C, normalInit(cfg.initStd));
    this.h = Array.from({ length: cfg.L }, (_, i) => new GPT2Block(ctx, cfg, i));
    this.ln_f = new LayerNorm(ctx, cfg.C, cfg.eps);
  }
}

export class GPT2LMHeadModel extends CausalLM {
  readonly backend: Backend;
  transformer: GPT2Model;
  lm_head: Linear;

  constructor(
    ctx: ModuleContext,
    readonly config: GPT2Config,
  ) {
    super();
    this.backend = ctx.backend;
    this.transformer = new GPT2Model(ctx, config);
    this.lm_head = new Linear(ctx, config.C, config.V, false, normalInit(config.initStd));
    if (config.tieWordEmbeddings) this.lm_head.weight = this.transformer.wte.weight;
  }

  forward(ids: Tensor, opts: ForwardOptions = {}): ForwardResult {
    const [B, T] = ids.shape;
    const pos0 = opts.state?.position ?? 0;
    const positions = new Int32Array(B * T).map((_, i) => pos0 + (i % T));
    const pos = fromArray(this.backend, positions, [B, T], "i32");
    const h = ops.add(this.transformer.wte.forward(ids), this.transformer.wpe.forward(pos)); // (B, T, C)
    const t = this.transformer;
    return runStack(h, t.h, (x) => t.ln_f.forward(x), (x) => this.lm_head.forward(x), opts);
  }

  allocateState(batch: number, capacity = 256): InferenceState {
    const { H, K } = this.config;
    return new InferenceState(
      batch,
      this.transformer.h.map(() => allocateAttentionState(this.backend, batch, H, K, capacity)),
    );
  }

  setAttentionImpl(impl: "tiled" | "naive"): void {
    for (const b of this.transformer.h) b.attn.impl = impl;
  }
}
