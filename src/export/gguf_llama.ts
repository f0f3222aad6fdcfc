/**
 * Llama (LlamaForCausalLM) as llama.cpp's LLM_ARCH_LLAMA: llama.* hyper-parameters, blk.N.attn_*
 * and blk.N.ffn_* tensors, and q/k projections permuted from Hugging Face's rotate-half layout
 * (the two halves of each head's rotary pairs stored apart) to the interleaved pairs llama.cpp
 * rotates (LlamaModel.permute in convert_hf_to_gguf.py). Tied embeddings store no output.weight
 * (llama.cpp reuses token_embd). llama3 rope scaling becomes the rope_freqs tensor of
 * per-frequency divisors; linear scaling becomes llama.rope.scaling.*.
 */
import { f32, str, u32, type GgufTensorToWrite, type GgufValue } from "../io/gguf.js";
import { parseLlamaConfig } from "../models/llama.js";
import { defaultRope, ropeFrequencies } from "../nn/rope.js";
import { SeqlabError } from "../util/errors.js";
import { fromCheckpoint, type ExportContext, type GgufModel } from "./gguf_export.js";
import { vocabMetadata } from "./gguf_vocab.js";

export function llamaGguf(c: ExportContext): GgufModel {
  const cfg = parseLlamaConfig(c.raw);
  const { C, L, V, F, eps } = cfg;
  const { H, G, K, rope } = cfg.attention;
  if (!rope) throw new SeqlabError(`${c.raw.source}: a Llama without rotary embeddings has no GGUF mapping`);
  if (rope.rotDim !== K) throw new SeqlabError(`${c.raw.source}: partial rotary (${rope.rotDim} of ${K} dims) has no llama GGUF mapping`);
  if (cfg.mlpBias) throw new SeqlabError(`${c.raw.source}: mlp_bias has no llama GGUF mapping`);
  const metadata: [string, GgufValue][] = [
    ["llama.context_length", u32(c.raw.int("max_position_embeddings", 2048))],
    ["llama.embedding_length", u32(C)],
    ["llama.block_count", u32(L)],
    ["llama.feed_forward_length", u32(F)],
    ["llama.attention.head_count", u32(H)],
    ["llama.attention.head_count_kv", u32(G)],
    ["llama.attention.key_length", u32(K)],
    ["llama.attention.value_length", u32(K)],
    ["llama.attention.layer_norm_rms_epsilon", f32(eps)],
    ["llama.rope.freq_base", f32(rope.theta)],
    ["llama.rope.dimension_count", u32(K)],
    ["llama.vocab_size", u32(V)],
  ];
  const tensors: GgufTensorToWrite[] = [];
  const mat = c.matrixType;
  tensors.push(fromCheckpoint(c, "model.embed_tokens.weight", "token_embd.weight", mat));
  if (rope.type === "linear") {
    metadata.push(["llama.rope.scaling.type", str("linear")], ["llama.rope.scaling.factor", f32(rope.factor)]);
  } else if (rope.type === "llama3") {
    const base = ropeFrequencies(defaultRope(rope.theta, rope.rotDim)).invFreq;
    const scaled = ropeFrequencies(rope).invFreq;
    const divisors = Float32Array.from(base, (b, i) => b / scaled[i]);
    tensors.push({ name: "rope_freqs.weight", type: "F32", shape: [divisors.length], data: () => divisors });
  } else if (rope.type !== "default") {
    throw new SeqlabError(`${c.raw.source}: rope type "${rope.type}" has no llama GGUF mapping in seqlab (default, linear, llama3)`);
  }
  for (let i = 0; i < L; i++) {
    const hf = `model.layers.${i}`;
    const blk = `blk.${i}`;
    tensors.push(
      fromCheckpoint(c, `${hf}.input_layernorm.weight`, `${blk}.attn_norm.weight`, "F32"),
      fromCheckpoint(c, `${hf}.self_attn.q_proj.weight`, `${blk}.attn_q.weight`, mat, interleaveRotaryPairs(H, K)),
      fromCheckpoint(c, `${hf}.self_attn.k_proj.weight`, `${blk}.attn_k.weight`, mat, interleaveRotaryPairs(G, K)),
      fromCheckpoint(c, `${hf}.self_attn.v_proj.weight`, `${blk}.attn_v.weight`, mat),
      fromCheckpoint(c, `${hf}.self_attn.o_proj.weight`, `${blk}.attn_output.weight`, mat),
    );
    if (cfg.attention.qkvBias) {
      tensors.push(
        fromCheckpoint(c, `${hf}.self_attn.q_proj.bias`, `${blk}.attn_q.bias`, "F32", interleaveRotaryPairs(H, K)),
        fromCheckpoint(c, `${hf}.self_attn.k_proj.bias`, `${blk}.attn_k.bias`, "F32", interleaveRotaryPairs(G, K)),
        fromCheckpoint(c, `${hf}.self_attn.v_proj.bias`, `${blk}.attn_v.bias`, "F32"),
      );
    }
    if (cfg.attention.oBias) tensors.push(fromCheckpoint(c, `${hf}.self_attn.o_proj.bias`, `${blk}.attn_output.bias`, "F32"));
    tensors.push(
      fromCheckpoint(c, `${hf}.post_attention_layernorm.weight`, `${blk}.ffn_norm.weight`, "F32"),
      fromCheckpoint(c, `${hf}.mlp.gate_proj.weight`, `${blk}.ffn_gate.weight`, mat),
      fromCheckpoint(c, `${hf}.mlp.up_proj.weight`, `${blk}.ffn_up.weight`, mat),
      fromCheckpoint(c, `${hf}.mlp.down_proj.weight`, `${blk}.ffn_down.weight`, mat),
    );
  }
  tensors.push(fromCheckpoint(c, "model.norm.weight", "output_norm.weight", "F32"));
  if (!cfg.tieWordEmbeddings) tensors.push(fromCheckpoint(c, "lm_head.weight", "output.weight", mat));
  return { arch: "llama", metadata: [...metadata, ...vocabMetadata(c.dir, V)], tensors };
}

/**
 * Rows of a q or k projection (heads x K rows, any columns): within each head, HF keeps the
 * first and second halves of the rotary pairs apart (rows i and i + K/2 rotate together);
 * llama.cpp's LLAMA rope wants them adjacent (rows 2i and 2i + 1).
 */
export function interleaveRotaryPairs(heads: number, K: number) {
  return (x: Float32Array, shape: number[]) => {
    const cols = shape.length > 1 ? shape[1] : 1;
    if (shape[0] !== heads * K) throw new SeqlabError(`a q/k projection with ${shape[0]} rows does not split into ${heads} heads of ${K}`);
    const out = new Float32Array(x.length);
    if (x.length > 0) {
      for (let h = 0; h < heads; h++) {
        for (let half = 0; half < 2; half++) {
          for (let i = 0; i < K / 2; i++) {
            const from = (h * K + half * (K / 2) + i) * cols;
            const to = (h * K + 2 * i + half) * cols;
            out.set(x.subarray(from, from + cols), to);
          }
        }
      }
    }
    return { data: out, shape };
  };
}

