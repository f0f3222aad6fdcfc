/**
 * Named model configs: the architectures the showdown compares, at a given width, vocabulary
 * and layer count. By default the linear-time models stack twice as many layers as the
 * Transformer, as the Mamba paper does (a Mamba block holds about half a Transformer block's
 * parameters: 3 * expand * C^2 vs 12 * C^2); experiments/zoo.ts matches counts exactly.
 */
import { SeqlabError } from "../util/errors.js";

export interface PresetOptions {
  vocab: number;
  /** model width C */
  width: number;
  /** layers of this model (default: 2 for the Transformer and RWKV, 4 for the others) */
  layers?: number;
  /** SSM state size N (Mamba), per-head state for Mamba-2 and RWKV-7 derive from width */
  state?: number;
  /** attention positional encoding in the Transformer */
  position?: "rope" | "none";
}

export type PresetName = "transformer" | "mamba" | "mamba-lti" | "mamba2" | "rwkv7" | "rwkv4" | "hybrid";
export const PRESET_NAMES: PresetName[] = ["transformer", "mamba", "mamba-lti", "mamba2", "rwkv7", "rwkv4", "hybrid"];

export function preset(name: string, o: PresetOptions): Record<string, unknown> {
  const C = o.width;
  const L = o.layers ?? (["transformer", "rwkv7", "rwkv4"].includes(name) ? 2 : 4);
  // heads of about 16 wide that divide the width evenly
  let heads = Math.max(1, Math.round(C / 16));
  while (C % heads !== 0) heads--;
  // initializer_range 0.1 (HF Mamba's default, near 1/sqrt(C) at these widths) for every native
  // stack alike: with Llama's 0.02 a width-64 model starts with near-zero signals and takes
  // about three times the steps to learn retrieval (measured on passkey, notes in plan.ts)
  const base = { model_type: "seqlab", vocab_size: o.vocab, hidden_size: C, tie_word_embeddings: true, norm_eps: 1e-5, initializer_range: 0.1 };
  const attention = { num_heads: heads, num_kv_heads: heads, position: o.position ?? "rope", rope_theta: 10000 };
  const mlp = { intermediate_size: Math.round((8 * C) / 3) };
  const mamba = { state_size: o.state ?? 16, conv_kernel: 4, expand: 2, dt_rank: "auto" };
  const repeat = (spec: string, n: number) => Array.from({ length: n }, () => spec);
  switch (name as PresetName) {
    case "transformer":
      return { ...base, layers: repeat("attention+mlp", L), attention, mlp };
    case "mamba":
      return { ...base, layers: repeat("mamba", L), mamba };
    case "mamba-lti":
      return { ...base, layers: repeat("mamba", L), mamba: { ...mamba, selective: false } };
    case "mamba2":
      return { ...base, layers: repeat("mamba2", L), mamba2: { state_size: o.state ?? 16, head_dim: 16, n_groups: 1, expand: 2, conv_kernel: 4, chunk_size: 64 } };
    // RWKV keeps its own block (LayerNorms, time mix, channel mix, RWKV-7's value residual
    // across layers), so its presets are the RWKV model configs rather than native stacks
    case "rwkv7": {
      const lora = Math.max(8, Math.round(C / 8));
      return {
        model_type: "rwkv7",
        vocab_size: o.vocab,
        hidden_size: C,
        num_hidden_layers: L,
        head_size: 16,
        decay_low_rank_dim: lora,
        a_low_rank_dim: lora,
        v_low_rank_dim: lora,
        gate_low_rank_dim: 2 * lora,
        intermediate_size: 4 * C,
        tie_word_embeddings: false, // as RWKV-LM trains it
      };
    }
    case "rwkv4":
      return {
        model_type: "rwkv",
        vocab_size: o.vocab,
        hidden_size: C,
        num_hidden_layers: L,
        attention_hidden_size: C,
        intermediate_size: 4 * C,
        context_length: 1 << 20,
        rescale_every: 0,
        tie_word_embeddings: true,
      };
    case "hybrid": {
      // Jamba's pattern: one attention layer in four (here at position 3 of each group of four),
      // MoE FFNs (native_moe.ts, top-2 of 4, not renormalised) on every other layer, no positional
      // encoding (the Mamba layers supply order), and Jamba's Mamba mixers with RMSNorms on dt, B
      // and C: the model is a JambaForCausalLM (seqlab export --hf writes it as one)
      const layers = Array.from({ length: L }, (_, i) => `${i % 4 === 3 ? "attention" : "mamba"}+${i % 2 === 1 ? "moe" : "mlp"}`);
      return {
        ...base,
        layers,
        attention: { ...attention, position: "none" },
        mamba: { ...mamba, inner_norms: true },
        mlp: { intermediate_size: C },
        moe: { num_experts: 4, top_k: 2, intermediate_size: C, aux_loss_coef: 0.01 },
      };
    }
  }
  throw new SeqlabError(`preset "${name}" is unknown (presets: ${PRESET_NAMES.join(", ")})`);
}
