/**
 * Mamba-2 (Mamba2ForCausalLM, state-spaces/mamba2-*) as llama.cpp's LLM_ARCH_MAMBA2, following
 * convert_hf_to_gguf.py's Mamba2Model: mamba2.* hyper-parameters (the head count goes in
 * ssm.time_step_rank, the group count in ssm.group_count), the conv1d weight squeezed to
 * (convDim, W), A = -exp(A_log) and D as (H, 1) columns, dt_bias stored as ssm_dt.bias, and the
 * gated norm's weight as (n_groups, D / n_groups).
 *
 * llama.cpp normalises the gated RMSNorm per group, HF's MambaRMSNormGated over all of D: the two
 * agree for one group only, so other group counts are refused rather than exported wrong.
 */
import { f32, u32, type GgufTensorToWrite, type GgufValue } from "../io/gguf.js";
import { parseMamba2Config } from "../models/mamba2.js";
import { SeqlabError } from "../util/errors.js";
import { fromCheckpoint, type ExportContext, type GgufModel } from "./gguf_export.js";
import { vocabMetadata } from "./gguf_vocab.js";
import { squeezeConv } from "./gguf_mamba.js";

export function mamba2Gguf(c: ExportContext): GgufModel {
  const cfg = parseMamba2Config(c.raw);
  const { C, L, V, eps } = cfg;
  const { D, H, N, G, W } = cfg.mixer;
  if (G !== 1) throw new SeqlabError(`${c.raw.source}: n_groups ${G}: llama.cpp normalises the gated RMSNorm per group, HF over all of D; only n_groups = 1 exports exactly`);
  if (!cfg.mixer.useConvBias) throw new SeqlabError(`${c.raw.source}: llama.cpp's mamba2 requires a conv1d bias (use_conv_bias false has no mapping)`);
  if (cfg.mixer.useBias) throw new SeqlabError(`${c.raw.source}: use_bias (biased in/out projections) has no mamba2 GGUF mapping`);
  const [lo, hi] = cfg.mixer.dtLimit;
  if (lo !== 0 || hi !== Infinity) throw new SeqlabError(`${c.raw.source}: time_step_limit [${lo}, ${hi}] has no mamba2 GGUF mapping (llama.cpp does not clamp dt)`);
  const metadata: [string, GgufValue][] = [
    ["mamba2.context_length", u32(2 ** 20)], // no positional limit: convert_hf_to_gguf.py's placeholder
    ["mamba2.embedding_length", u32(C)],
    ["mamba2.feed_forward_length", u32(0)],
    ["mamba2.attention.head_count", u32(0)],
    ["mamba2.block_count", u32(L)],
    ["mamba2.ssm.conv_kernel", u32(W)],
    ["mamba2.ssm.inner_size", u32(D)],
    ["mamba2.ssm.state_size", u32(N)],
    ["mamba2.ssm.time_step_rank", u32(H)],
    ["mamba2.ssm.group_count", u32(G)],
    ["mamba2.attention.layer_norm_rms_epsilon", f32(eps)],
  ];
  const mat = c.matrixType;
  const tensors: GgufTensorToWrite[] = [fromCheckpoint(c, "backbone.embeddings.weight", "token_embd.weight", mat)];
  for (let i = 0; i < L; i++) {
    const hf = `backbone.layers.${i}`;
    const blk = `blk.${i}`;
    tensors.push(
      fromCheckpoint(c, `${hf}.norm.weight`, `${blk}.attn_norm.weight`, "F32"),
      fromCheckpoint(c, `${hf}.mixer.in_proj.weight`, `${blk}.ssm_in.weight`, mat),
      fromCheckpoint(c, `${hf}.mixer.conv1d.weight`, `${blk}.ssm_conv1d.weight`, "F32", squeezeConv),
      fromCheckpoint(c, `${hf}.mixer.conv1d.bias`, `${blk}.ssm_conv1d.bias`, "F32"),
      fromCheckpoint(c, `${hf}.mixer.dt_bias`, `${blk}.ssm_dt.bias`, "F32"),
      fromCheckpoint(c, `${hf}.mixer.A_log`, `${blk}.ssm_a`, "F32", (x) => ({ data: x.map((v) => -Math.exp(v)), shape: [H, 1] })),
      fromCheckpoint(c, `${hf}.mixer.D`, `${blk}.ssm_d`, "F32", (x) => ({ data: x, shape: [H, 1] })),
      fromCheckpoint(c, `${hf}.mixer.norm.weight`, `${blk}.ssm_norm.weight`, "F32", (x) => ({ data: x, shape: [G, D / G] })),
      fromCheckpoint(c, `${hf}.mixer.out_proj.weight`, `${blk}.ssm_out.weight`, mat),
    );
  }
  tensors.push(fromCheckpoint(c, "backbone.norm_f.weight", "output_norm.weight", "F32"));
  // tied: llama.cpp reuses token_embd as the output matrix
  if (!cfg.tieWordEmbeddings) tensors.push(fromCheckpoint(c, "lm_head.weight", "output.weight", mat));
  return { arch: "mamba2", metadata: [...metadata, ...vocabMetadata(c.dir, V)], tensors };
}
