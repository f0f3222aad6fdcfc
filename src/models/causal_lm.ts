/**
 * What every language model in seqlab is: token ids in, next-token logits out, with an
 * optional inference state that makes the same forward serve prefill and decoding.
 */
import type { Tensor } from "../tensor/tensor.js";
import type { Backend } from "../backend/backend.js";
import { fromArray } from "../backend/alloc.js";
import { Module } from "../nn/module.js";
import type { InferenceState } from "../nn/state.js";
import { SeqlabError } from "../util/errors.js";
import type { RawConfig } from "../io/config.js";

/** Fields every architecture's typed config shares (derived values computed once). */
export interface LMConfig {
  modelType: string;
  /** vocabulary V, width C, layers L */
  V: number;
  C: number;
  L: number;
  tieWordEmbeddings: boolean;
  /** hard limit on positions (learned position embeddings), or null */
  maxPositions: number | null;
  /** weight of the router load-balancing loss added when training (MoE models; HF router_aux_loss_coef) */
  routerAuxLossCoef?: number;
}

export interface ForwardOptions {
  /** continue from (and update) this state: prefill or decoding */
  state?: InferenceState;
  /** also return the hidden states: embeddings first, one per layer, the final-normed last */
  outputHidden?: boolean;
  /** also return the router load-balancing loss of the MoE layers (HF output_router_logits) */
  auxLoss?: boolean;
  /**
   * logits of the last position only, (B, 1, V): what generation reads after a prefill, which
   * then skips T - 1 rows of the LM head (for a 50k vocabulary a third of a small model's work).
   * Models may ignore it and return all positions.
   */
  lastOnly?: boolean;
}

export interface ForwardResult {
  logits: Tensor; // (B, T, V)
  hidden: Tensor[];
  /** HF's aux_loss (1), unscaled; present when asked for and the model has MoE layers */
  auxLoss?: Tensor;
}

export abstract class CausalLM extends Module {
  abstract readonly config: LMConfig;
  abstract readonly backend: Backend;

  /** ids (B, T) i32 */
  abstract forward(ids: Tensor, opts?: ForwardOptions): ForwardResult;

  /** A fresh state for `batch` sequences; `capacity` sizes KV caches up front (they grow if exceeded). */
  abstract allocateState(batch: number, capacity?: number): InferenceState;

  /** Token ids checked against the vocabulary (and the position limit), as a (B, T) tensor. */
  tokens(ids: ArrayLike<number>, B: number, T: number, pos0 = 0): Tensor {
    checkTokenIds(ids, this.config.V);
    const max = this.config.maxPositions;
    if (max !== null && pos0 + T > max) {
      throw new SeqlabError(`positions up to ${pos0 + T} exceed this model's limit of ${max}`);
    }
    return fromArray(this.backend, Int32Array.from(ids), [B, T], "i32");
  }
}

export function checkTokenIds(ids: ArrayLike<number>, V: number): void {
  for (let i = 0; i < ids.length; i++) {
    const t = ids[i];
    if (!Number.isInteger(t) || t < 0 || t >= V) {
      throw new SeqlabError(`token id ${t} at index ${i} is outside the vocabulary [0, ${V})`);
    }
  }
}

/**
 * The embedding row that gets no gradient (nn.Embedding's padding_idx = HF pad_token_id), or null.
 * `fallback` is the architecture's default pad_token_id; an explicit null in the file means none.
 */
export function paddingIdxFromConfig(raw: RawConfig, V: number, fallback: number | null): number | null {
  if (raw.json.pad_token_id === null || (fallback === null && !raw.has("pad_token_id"))) return null;
  const p = raw.has("pad_token_id") ? raw.int("pad_token_id", undefined, -V) : fallback!;
  raw.require(p < V, `pad_token_id ${p} must be below vocab_size ${V}`);
  return p < 0 ? p + V : p; // as torch reads a negative padding_idx
}
