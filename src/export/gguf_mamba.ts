/**
 * Mamba (MambaForCausalLM, state-spaces/mamba-*-hf) as llama.cpp's LLM_ARCH_MAMBA, mapped from
 * the Hugging Face parameter names (backbone.layers.N.mixer.*) in the safetensors file, following
 * convert_hf_to_gguf.py's MambaModel: mamba.* hyper-parameters (context length 2^20, no
 * attention heads or FFN), the conv1d weight squeezed from (D, 1, W) to (D, W), and A stored as
 * A = -exp(A_log) (llama.cpp's scan takes A itself).
 */
import { bool, f32, u32, type GgufTensorToWrite, type GgufValue } from "../io/gguf.js";
import { SeqlabError } from "../util/errors.js";
import { fromCheckpoint, type ExportContext, type GgufModel } from "./gguf_export.js";
import { vocabMetadata } from "./gguf_vocab.js";

export function mambaGguf(c: ExportContext): GgufModel {
  const { raw } = c;
  const C = raw.int("hidden_size");
  const L = raw.int("num_hidden_layers");
  const V = raw.int("vocab_size");
  const W = raw.int("conv_kernel", 4);
  const D = raw.int("intermediate_size", 2 * C);
  const N = raw.int("state_size", 16);
  // HF MambaConfig: time_step_rank "auto" means ceil(hidden_size / 16)
  const R = raw.json.time_step_rank === "auto" || !raw.has("time_step_rank") ? Math.ceil(C / 16) : raw.int("time_step_rank");
  if (D !== 2 * C) throw new SeqlabError(`${raw.source}: llama.cpp's mamba takes only intermediate_size = 2 x hidden_size (${2 * C}), not ${D}`);
  if (raw.bool("use_bias", false)) throw new SeqlabError(`${raw.source}: use_bias (biased in/out projections) has no mamba GGUF mapping`);
  const metadata: [string, GgufValue][] = [
    ["mamba.context_length", u32(2 ** 20)], // no positional limit: convert_hf_to_gguf.py's placeholder
    ["mamba.embedding_length", u32(C)],
    ["mamba.feed_forward_length", u32(0)],
    ["mamba.attention.head_count", u32(0)],
    ["mamba.block_count", u32(L)],
    ["mamba.ssm.conv_kernel", u32(W)],
    ["mamba.ssm.inner_size", u32(D)],
    ["mamba.ssm.state_size", u32(N)],
    ["mamba.ssm.time_step_rank", u32(R)],
    ["mamba.attention.layer_norm_rms_epsilon", f32(raw.num("layer_norm_epsilon", 1e-5))],
    ["mamba.ssm.dt_b_c_rms", bool(false)],
  ];
  const mat = c.matrixType;
  const embed = c.weights.has("backbone.embeddings.weight") ? "backbone.embeddings.weight" : "backbone.embedding.weight";
  const tensors: GgufTensorToWrite[] = [fromCheckpoint(c, embed, "token_embd.weight", mat)];
  for (let i = 0; i < L; i++) {
    const hf = `backbone.layers.${i}`;
    const blk = `blk.${i}`;
    tensors.push(
      fromCheckpoint(c, `${hf}.norm.weight`, `${blk}.attn_norm.weight`, "F32"),
      fromCheckpoint(c, `${hf}.mixer.in_proj.weight`, `${blk}.ssm_in.weight`, mat),
      fromCheckpoint(c, `${hf}.mixer.conv1d.weight`, `${blk}.ssm_conv1d.weight`, "F32", squeezeConv),
    );
    if (c.weights.has(`${hf}.mixer.conv1d.bias`)) tensors.push(fromCheckpoint(c, `${hf}.mixer.conv1d.bias`, `${blk}.ssm_conv1d.bias`, "F32"));
    tensors.push(
      fromCheckpoint(c, `${hf}.mixer.x_proj.weight`, `${blk}.ssm_x.weight`, mat),
      fromCheckpoint(c, `${hf}.mixer.dt_proj.weight`, `${blk}.ssm_dt.weight`, mat),
      fromCheckpoint(c, `${hf}.mixer.dt_proj.bias`, `${blk}.ssm_dt.bias`, "F32"),
      fromCheckpoint(c, `${hf}.mixer.A_log`, `${blk}.ssm_a`, "F32", negExp),
      fromCheckpoint(c, `${hf}.mixer.D`, `${blk}.ssm_d`, "F32"),
      fromCheckpoint(c, `${hf}.mixer.out_proj.weight`, `${blk}.ssm_out.weight`, mat),
    );
  }
  tensors.push(fromCheckpoint(c, "backbone.norm_f.weight", "output_norm.weight", "F32"));
  // HF Mamba ties lm_head to the embeddings unless told otherwise; llama.cpp reuses token_embd then
  if (!raw.bool("tie_word_embeddings", true) && c.weights.has("lm_head.weight")) tensors.push(fromCheckpoint(c, "lm_head.weight", "output.weight", mat));
  return { arch: "mamba", metadata: [...metadata, ...vocabMetadata(c.dir, V)], tensors };
}

/** conv1d.weight (D, 1, W) -> (D, W) */
export function squeezeConv(x: Float32Array, shape: number[]) {
  if (shape.length !== 3 || shape[1] !== 1) throw new SeqlabError(`mixer.conv1d.weight has shape [${shape}], expected (D, 1, W)`);
  return { data: x, shape: [shape[0], shape[2]] };
}

/** A = -exp(A_log) */
function negExp(x: Float32Array, shape: number[]) {
  return { data: x.map((v) => -Math.exp(v)), shape };
}
