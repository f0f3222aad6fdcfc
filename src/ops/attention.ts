/**
 * Scaled dot-product causal attention with grouped KV heads (GQA).
 * q (B, T, H, K); k, v (B, kvRows, G, K) where the first S rows of each sequence are valid
 * (a KV cache is longer than what it holds). Query t sits at position qOffset + t among the keys.
 */
import { Tensor } from "../tensor/tensor.js";
import type { AttentionDims } from "../backend/kernels.js";
import { backendOf, empty, kernelsOf } from "../backend/alloc.js";
import { needsGrad, record } from "../autograd/tape.js";
import { assert } from "../util/errors.js";

export type AttentionImpl = "tiled" | "naive";

export interface AttentionOptions {
  causal?: boolean;
  /** default 1/sqrt(K) */
  scale?: number;
  /** tiled: online softmax, O(T) memory (default); naive: materialised (T, S) probabilities */
  impl?: AttentionImpl;
  /** valid key rows (default: all of k) */
  S?: number;
  /** position of query 0 among the keys (default S - T) */
  qOffset?: number;
}

export function attention(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions = {}): Tensor {
  const [B, T, H, K] = q.shape;
  const [Bk, kvRows, G, Kk] = k.shape;
  assert(Bk === B && Kk === K && H % G === 0, () => `attention: q ${q.shape} and k ${k.shape} do not fit`);
  const S = opts.S ?? kvRows;
  const d: AttentionDims = {
    B,
    T,
    S,
    H,
    G,
    K,
    scale: opts.scale ?? 1 / Math.sqrt(K),
    causal: opts.causal ?? true,
    qOffset: opts.qOffset ?? S - T,
    kvRows,
    kvDtype: k.dtype === "f16" ? "f16" : "f32",
  };
  assert(k.dtype === v.dtype && (k.dtype === "f32" || k.dtype === "f16"), () => `attention: k ${k.dtype} and v ${v.dtype} (expected f32, or an f16 KV cache)`);
  const be = backendOf(q);
  const kern = kernelsOf(q);
  const out = empty(be, q.shape); // (B, T, H, K)
  const grad = needsGrad(q, k, v);
  assert(!(grad && d.kvDtype === "f16"), "attention: an f16 KV cache is for decoding; gradients need f32 keys and values");
  assert(!(opts.impl === "naive" && d.kvDtype === "f16"), "attention: the materialised (naive) kernel takes f32 keys and values, not an f16 KV cache");
  if ((opts.impl ?? "tiled") === "naive") {
    const probs = empty(be, [B, H, T, S]); // (B, H, T, S): the O(T^2) buffer
    kern.attentionNaiveForward(out.handle, probs.handle, q.handle, k.handle, v.handle, d);
    if (grad) {
      record("attention_naive", [q, k, v], [out], ([dout]) => {
        const [dq, dk, dv] = [empty(be, q.shape), empty(be, k.shape), empty(be, v.shape)];
        kern.attentionNaiveBackward(dq.handle, dk.handle, dv.handle, dout!.handle, q.handle, k.handle, v.handle, probs.handle, d);
        return [dq, dk, dv];
      });
    } else {
      probs.dispose();
    }
    return out;
  }
  const lse = empty(be, [B, H, T]); // (B, H, T)
  kern.attentionForward(out.handle, lse.handle, q.handle, k.handle, v.handle, d);
  if (grad) {
    record("attention", [q, k, v], [out], ([dout]) => {
      const [dq, dk, dv] = [empty(be, q.shape), empty(be, k.shape), empty(be, v.shape)];
      kern.attentionBackward(dq.handle, dk.handle, dv.handle, dout!.handle, q.handle, k.handle, v.handle, out.handle, lse.handle, d);
      return [dq, dk, dv];
    });
  } else {
    lse.dispose();
  }
  return out;
}
