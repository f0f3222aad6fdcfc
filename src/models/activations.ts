/** HF activation names (transformers.activations.ACT2FN) mapped to seqlab's unary ops. */
import type { RawConfig } from "../io/config.js";
import type { UnaryOp } from "../backend/kernels.js";

const ACTIVATIONS: Record<string, UnaryOp> = {
  silu: "silu",
  swish: "silu",
  gelu: "gelu",
  gelu_new: "gelu_tanh",
  gelu_pytorch_tanh: "gelu_tanh",
  gelu_fast: "gelu_tanh",
  relu: "relu",
  relu2: "relu_sq",
  sigmoid: "sigmoid",
  tanh: "tanh",
};

export function activationFromConfig(raw: RawConfig, key: string, fallback: string): UnaryOp {
  return ACTIVATIONS[raw.oneOf(key, Object.keys(ACTIVATIONS), fallback)];
}

/** The transformers name of a seqlab activation (for writing HF configs). */
export function hfActivationName(op: UnaryOp): string {
  const name = Object.keys(ACTIVATIONS).find((k) => ACTIVATIONS[k] === op);
  if (!name) throw new Error(`internal: activation ${op} has no transformers name`);
  return name;
}
