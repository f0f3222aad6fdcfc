/**
 * A native seqlab model seen as a transformers architecture, when its layer pattern is one:
 *
 *   every layer attention+mlp, RoPE                          -> LlamaForCausalLM
 *   every layer mamba, no FFN                                -> MambaForCausalLM
 *   every layer mamba2, no FFN                               -> Mamba2ForCausalLM
 *   mamba (inner_norms) and NoPE attention layers on a periodic grid, every layer with an mlp
 *   or a moe FFN, the moe layers on a periodic grid          -> JambaForCausalLM
 *
 * The settings are read from the built modules (not re-parsed from the config), the HF config is
 * written from them, and parameter names are renamed block by block. Anything HF's class cannot
 * express (a bias, another activation, a shared expert, renormalised top-k, a layer without an
 * FFN in a Jamba stack ...) is refused with a line naming the layer and what prevents it.
 */
import type { Module } from "../nn/module.js";
import { Attention } from "../nn/attention.js";
import { GatedMLP } from "../nn/mlp.js";
import { MambaMixer } from "../nn/mamba.js";
import { JambaMambaMixer } from "../nn/jamba_mamba.js";
import { Mamba2Mixer } from "../nn/mamba2.js";
import { SeqlabError } from "../util/errors.js";
import type { SeqlabForCausalLM } from "./native.js";
import { NativeMoe } from "./native_moe.js";
import { hfActivationName } from "./activations.js";
import type { LayerGrid } from "./jamba.js";

export interface HfTarget {
  /** the transformers config.json */
  json: Record<string, unknown>;
  /** native parameter name -> the HF model's module name */
  rename: (name: string) => string;
}

const PATTERNS =
  "all attention+mlp with RoPE -> LlamaForCausalLM; all mamba -> MambaForCausalLM; all mamba2 -> Mamba2ForCausalLM; " +
  "mamba and attention layers, each with mlp or moe, on periodic grids -> JambaForCausalLM";

export function nativeAsHf(model: SeqlabForCausalLM): HfTarget {
  const specs = model.config.layers.map((l) => `${l.mixer}${l.ffn === "none" ? "" : `+${l.ffn}`}`);
  const all = (s: string) => specs.every((x) => x === s);
  if (all("attention+mlp")) return asLlama(model);
  if (all("mamba")) return asMamba(model);
  if (all("mamba2")) return asMamba2(model);
  const odd = model.config.layers.findIndex((l) => !["attention", "mamba"].includes(l.mixer) || !["mlp", "moe"].includes(l.ffn));
  if (odd < 0 && specs.some((s) => s.startsWith("mamba"))) return asJamba(model);
  const i = odd < 0 ? 0 : odd;
  throw new SeqlabError(
    `this native model (layer ${i} is "${specs[i]}") has no transformers architecture; exportable patterns: ${PATTERNS}`,
  );
}

/** Fails unless `cond`, naming the layer and the architecture. */
function need(cond: boolean, arch: string, what: string): asserts cond {
  if (!cond) throw new SeqlabError(`cannot export as ${arch}: ${what}`);
}

/** The one value the layers agree on, or an error showing two that differ. */
function same<T>(values: T[], arch: string, what: string): T {
  const key = (v: T) => JSON.stringify(v);
  const j = values.findIndex((v) => key(v) !== key(values[0]));
  need(j < 0, arch, `${what} differ between layers (${key(values[0])} and ${key(values[j])}); ${arch} has one setting for all layers`);
  return values[0];
}

function mixers<M>(model: SeqlabForCausalLM, type: abstract new (...a: never[]) => M): { i: number; m: M }[] {
  return model.model.layers.flatMap((b, i) => (b.mixer instanceof type ? [{ i, m: b.mixer as M }] : []));
}

/** Native names under `model.` become prefix + the HF block's own names. */
function renamer(rules: [RegExp, string | ((...m: string[]) => string)][]): (name: string) => string {
  return (name) => {
    for (const [re, to] of rules) if (re.test(name)) return typeof to === "string" ? name.replace(re, to) : name.replace(re, to);
    throw new Error(`internal: no HF name for native parameter ${name}`);
  };
}

function mlpWidth(arch: string, ffns: (Module | null)[]): number {
  const mlps = ffns.flatMap((f, i) => (f instanceof GatedMLP ? [{ i, f }] : []));
  for (const { i, f } of mlps) {
    need(f.act === "silu", arch, `layer ${i}'s mlp uses ${f.act}, ${arch} takes silu here`);
    need(f.gate_proj.bias === null, arch, `layer ${i}'s mlp has biases`);
  }
  return same(mlps.map(({ f }) => f.gate_proj.weight.shape[0]), arch, "the mlp widths");
}

function base(model: SeqlabForCausalLM, modelType: string, hfClass: string): Record<string, unknown> {
  const c = model.config;
  return {
    architectures: [hfClass],
    model_type: modelType,
    vocab_size: c.V,
    hidden_size: c.C,
    num_hidden_layers: c.L,
    tie_word_embeddings: c.tieWordEmbeddings,
    dtype: "float32",
  };
}

function attentionSettings(model: SeqlabForCausalLM, arch: string, rope: "rope" | "none") {
  const attns = mixers(model, Attention);
  const cfgs = attns.map(({ i, m }) => {
    const c = m.cfg;
    need(!c.qkvBias && !c.oBias, arch, `layer ${i}'s attention has biases`);
    need(c.scale === undefined, arch, `layer ${i}'s attention has its own scale`);
    if (rope === "none") need(c.rope === null, arch, `layer ${i}'s attention uses RoPE; ${arch} attention has no positional encoding (set attention.position: "none")`);
    else {
      need(c.rope !== null, arch, `layer ${i}'s attention has no positional encoding; ${arch} needs RoPE`);
      need(c.rope.type === "default" && c.rope.rotDim === c.K, arch, `layer ${i}'s RoPE is not the default full rotation`);
    }
    return { H: c.H, G: c.G, K: c.K, theta: c.rope?.theta ?? null };
  });
  return same(cfgs, arch, "the attention settings");
}

function asLlama(model: SeqlabForCausalLM): HfTarget {
  const arch = "LlamaForCausalLM";
  const a = attentionSettings(model, arch, "rope");
  const F = mlpWidth(arch, model.model.layers.map((b) => b.ffn));
  return {
    json: {
      ...base(model, "llama", arch),
      intermediate_size: F,
      num_attention_heads: a.H,
      num_key_value_heads: a.G,
      head_dim: a.K,
      rms_norm_eps: model.config.eps,
      rope_parameters: { rope_type: "default", rope_theta: a.theta },
      hidden_act: "silu",
      attention_bias: false,
      mlp_bias: false,
      pad_token_id: null,
    },
    rename: renamer([
      [/^model\.layers\.(\d+)\.mixer_norm\./, "model.layers.$1.input_layernorm."],
      [/^model\.layers\.(\d+)\.mixer\./, "model.layers.$1.self_attn."],
      [/^model\.layers\.(\d+)\.ffn_norm\./, "model.layers.$1.post_attention_layernorm."],
      [/^model\.layers\.(\d+)\.ffn\./, "model.layers.$1.mlp."],
      [/^(model\.embed_tokens|model\.norm|lm_head)\./, "$1."],
    ]),
  };
}

/** Mamba and Mamba-2 share the backbone names. */
const BACKBONE_NAMES = renamer([
  [/^model\.embed_tokens\./, "backbone.embeddings."],
  [/^model\.layers\.(\d+)\.mixer_norm\./, "backbone.layers.$1.norm."],
  [/^model\.layers\.(\d+)\.mixer\./, "backbone.layers.$1.mixer."],
  [/^model\.norm\./, "backbone.norm_f."],
  [/^lm_head\./, "lm_head."],
]);

/** expand = D / C, which HF's configs take as an integer. */
function expandOf(arch: string, D: number, C: number): number {
  need(D % C === 0, arch, `the inner width ${D} is not a whole multiple of hidden_size ${C} (HF's expand is an integer)`);
  return D / C;
}

function mambaSettings(model: SeqlabForCausalLM, arch: string, jamba: boolean) {
  const ms = mixers(model, MambaMixer);
  const cfgs = ms.map(({ i, m }) => {
    const c = m.cfg;
    need(c.selective, arch, `layer ${i}'s mamba is the time-invariant ablation (selective: false)`);
    if (jamba) need(m instanceof JambaMambaMixer, arch, `layer ${i}'s mamba lacks Jamba's RMSNorms on dt, B and C (set mamba.inner_norms: true)`);
    else need(!(m instanceof JambaMambaMixer), arch, `layer ${i}'s mamba has Jamba's inner norms (inner_norms), which ${arch} lacks`);
    return { D: c.D, N: c.N, R: c.R, W: c.W, useBias: c.useBias, useConvBias: c.useConvBias, act: c.act };
  });
  return same(cfgs, arch, "the mamba settings");
}

function asMamba(model: SeqlabForCausalLM): HfTarget {
  const arch = "MambaForCausalLM";
  const m = mambaSettings(model, arch, false);
  return {
    json: {
      ...base(model, "mamba", arch),
      state_size: m.N,
      expand: expandOf(arch, m.D, model.config.C),
      conv_kernel: m.W,
      time_step_rank: m.R,
      use_bias: m.useBias,
      use_conv_bias: m.useConvBias,
      hidden_act: hfActivationName(m.act),
      layer_norm_epsilon: model.config.eps,
      residual_in_fp32: true,
    },
    rename: BACKBONE_NAMES,
  };
}

function asMamba2(model: SeqlabForCausalLM): HfTarget {
  const arch = "Mamba2ForCausalLM";
  const cfgs = mixers(model, Mamba2Mixer).map(({ i, m }) => {
    const c = m.cfg;
    need(c.eps === model.config.eps, arch, `layer ${i}'s gated norm epsilon ${c.eps} differs from norm_eps ${model.config.eps}; HF uses layer_norm_epsilon for both`);
    return { D: c.D, H: c.H, P: c.P, N: c.N, G: c.G, W: c.W, chunk: c.chunk, dtLimit: c.dtLimit.map(String), useBias: c.useBias, useConvBias: c.useConvBias, act: c.act };
  });
  const m = same(cfgs, arch, "the mamba2 settings");
  const limit = m.dtLimit.map(Number).map((x) => (Number.isFinite(x) ? x : { __float__: x > 0 ? "Infinity" : "-Infinity" })); // as transformers 5 writes inf
  return {
    json: {
      ...base(model, "mamba2", arch),
      num_heads: m.H,
      head_dim: m.P,
      n_groups: m.G,
      state_size: m.N,
      expand: expandOf(arch, m.D, model.config.C),
      conv_kernel: m.W,
      chunk_size: m.chunk,
      time_step_limit: limit,
      use_bias: m.useBias,
      use_conv_bias: m.useConvBias,
      hidden_act: hfActivationName(m.act),
      layer_norm_epsilon: model.config.eps,
      residual_in_fp32: true,
    },
    rename: BACKBONE_NAMES,
  };
}

/** The smallest grid whose layers are exactly those marked (none marked: a grid past the last layer). */
export function gridOf(marked: boolean[]): LayerGrid | null {
  const L = marked.length;
  if (!marked.some(Boolean)) return { period: L + 1, offset: L };
  for (let period = 1; period <= L; period++) {
    for (let offset = 0; offset < period; offset++) {
      if (marked.every((m, i) => m === (i % period === offset))) return { period, offset };
    }
  }
  return null;
}

function asJamba(model: SeqlabForCausalLM): HfTarget {
  const arch = "JambaForCausalLM";
  const layers = model.config.layers;
  const attnGrid = gridOf(layers.map((l) => l.mixer === "attention"));
  need(attnGrid !== null, arch, `the attention layers (${indices(layers.map((l) => l.mixer === "attention"))}) are not every n-th layer from some offset`);
  const moeGrid = gridOf(layers.map((l) => l.ffn === "moe"));
  need(moeGrid !== null, arch, `the moe layers (${indices(layers.map((l) => l.ffn === "moe"))}) are not every n-th layer from some offset`);
  const a = attentionSettings(model, arch, "none");
  const m = mambaSettings(model, arch, true);
  need(m.act === "silu", arch, `the mamba activation is ${m.act}; the MLPs take silu and Jamba has one hidden_act`);
  const ffns = model.model.layers.map((b) => b.ffn);
  const moes = ffns.flatMap((f, i) => (f instanceof NativeMoe ? [{ i, f }] : []));
  for (const { i, f } of moes) {
    need(f.shared_expert === null, arch, `layer ${i}'s moe has a shared expert`);
    need(!f.cfg.normalize, arch, `layer ${i}'s moe renormalises its top-k weights (norm_topk_prob); Jamba keeps the softmax probabilities`);
    need(f.cfg.act === "silu", arch, `layer ${i}'s experts use ${f.cfg.act}; Jamba has one hidden_act, silu here`);
  }
  const experts = moes.length > 0 ? same(moes.map(({ f }) => ({ E: f.cfg.E, k: f.cfg.k, F: f.cfg.F })), arch, "the moe settings") : null;
  const mlps = ffns.some((f) => f instanceof GatedMLP) ? mlpWidth(arch, ffns) : null;
  need(
    experts === null || mlps === null || experts.F === mlps,
    arch,
    `the experts' intermediate_size ${experts?.F} differs from the mlp's ${mlps}; Jamba has one intermediate_size`,
  );
  need(experts === null || experts.E > 1, arch, "a moe with one expert is a dense MLP in Jamba (num_experts must exceed 1)");
  const C = model.config.C;
  const H = a.H;
  return {
    json: {
      ...base(model, "jamba", arch),
      intermediate_size: experts?.F ?? mlps,
      num_attention_heads: H,
      num_key_value_heads: a.G,
      ...(a.K * H === C ? {} : { head_dim: a.K }),
      attn_layer_period: attnGrid.period,
      attn_layer_offset: attnGrid.offset,
      expert_layer_period: moeGrid.period,
      expert_layer_offset: moeGrid.offset,
      num_experts: experts?.E ?? 1,
      num_experts_per_tok: experts?.k ?? 1,
      router_aux_loss_coef: model.config.routerAuxLossCoef ?? 0,
      mamba_d_state: m.N,
      mamba_d_conv: m.W,
      mamba_expand: expandOf(arch, m.D, C),
      mamba_dt_rank: m.R,
      mamba_conv_bias: m.useConvBias,
      mamba_proj_bias: m.useBias,
      hidden_act: "silu",
      rms_norm_eps: model.config.eps,
      use_mamba_kernels: false,
      pad_token_id: null,
    },
    rename: renamer([
      [/^model\.layers\.(\d+)\.mixer_norm\./, "model.layers.$1.input_layernorm."],
      [/^model\.layers\.(\d+)\.mixer\./, (_m, i) => `model.layers.${i}.${layers[+i].mixer === "attention" ? "self_attn" : "mamba"}.`],
      [/^model\.layers\.(\d+)\.ffn_norm\./, "model.layers.$1.pre_ff_layernorm."],
      [/^model\.layers\.(\d+)\.ffn\./, "model.layers.$1.feed_forward."],
      [/^model\.norm\./, "model.final_layernorm."],
      [/^(model\.embed_tokens|lm_head)\./, "$1."],
    ]),
  };
}

function indices(marked: boolean[]): string {
  return marked.flatMap((m, i) => (m ? [i] : [])).join(", ") || "none";
}
