/**
 * Differentiable ops of Gated DeltaNet (Yang et al. 2024) as Qwen3-Next uses it: the l2 norm of
 * queries and keys, the causal depthwise conv over q/k/v, the gated delta rule (chunked for
 * training and prefill, recurrent for one-token decoding) and the output norm gated by z.
 * Inference state (conv window, delta-rule state) is read and advanced in place and is not
 * differentiated: training runs from a zero state.
 */
import { Tensor } from "../tensor/tensor.js";
import { fmtShape, lastDim, rows } from "../tensor/shape.js";
import { backendOf, empty, zeros, kernelsOf } from "../backend/alloc.js";
import type { DeltaNetConvDims, DeltaNetDims } from "../backend/kernels_deltanet.js";
import { needsGrad, record } from "../autograd/tape.js";
import { assert } from "../util/errors.js";
import { mul, silu } from "./elementwise.js";
import { rmsnorm } from "./norm.js";

/** x / sqrt(sum(x^2) + eps) over the last dim (HF/FLA l2norm; eps inside the root). */
export function l2norm(x: Tensor, eps = 1e-6): Tensor {
  const C = lastDim(x.shape);
  const R = rows(x.shape);
  const be = backendOf(x);
  const k = kernelsOf(x);
  const y = empty(be, x.shape); // (..., C)
  const rnorm = empty(be, [R]);
  k.l2normForward(y.handle, rnorm.handle, x.handle, R, C, eps);
  if (needsGrad(x)) {
    record("l2norm", [x], [y], ([dy]) => {
      const dx = empty(be, x.shape);
      k.l2normBackward(dx.handle, dy!.handle, x.handle, rnorm.handle, R, C);
      return [dx];
    });
  } else {
    rnorm.dispose();
  }
  return y;
}

/** rmsnorm(x) * w * silu(z): Qwen3NextRMSNormGated (FLA FusedRMSNormGated), norm before gate. */
export function gatedRmsnorm(x: Tensor, z: Tensor, w: Tensor, eps: number): Tensor {
  assert(x.size === z.size, () => `gatedRmsnorm: x ${fmtShape(x.shape)} and gate ${fmtShape(z.shape)} differ`);
  return mul(rmsnorm(x, w, eps), silu(z)); // (..., C)
}

/**
 * Causal depthwise conv over time without bias: x (B, T, D), w (D, 1, W) as nn.Conv1d stores it.
 * With `window` (B, W - 1, D) the W - 1 inputs before x are read from it and it is advanced to
 * hold the last W - 1 inputs (prefill and decoding); without it the past is zeros.
 */
export function deltanetConv(x: Tensor, w: Tensor, window?: Tensor): Tensor {
  const [B, T, D] = x.shape;
  const W = lastDim(w.shape);
  assert(w.size === D * W, () => `deltanetConv: weight ${fmtShape(w.shape)} for ${D} channels`);
  if (window) assert(window.size === B * (W - 1) * D, () => `deltanetConv: window ${fmtShape(window.shape)} for (${B}, ${W - 1}, ${D})`);
  const d: DeltaNetConvDims = { B, T, D, W };
  const be = backendOf(x);
  const k = kernelsOf(x);
  const grad = needsGrad(x, w);
  // the backward reads the window as it was before this call
  const past = window && grad ? copyOf(window) : window;
  const y = empty(be, x.shape); // (B, T, D)
  k.deltanetConvForward(y.handle, window?.handle ?? null, x.handle, w.handle, past?.handle ?? null, d);
  if (grad) {
    record("deltanet_conv", [x, w], [y], ([dy]) => {
      const dx = empty(be, x.shape);
      const dw = zeros(be, w.shape);
      k.deltanetConvBackward(dx.handle, dw.handle, dy!.handle, x.handle, w.handle, past?.handle ?? null, d);
      return [dx, dw];
    });
  }
  return y;
}

function copyOf(t: Tensor): Tensor {
  const c = empty(backendOf(t), t.shape);
  kernelsOf(t).copy2d(c.handle, t.handle, 1, t.size, 0, 0, 0, 0, false);
  return c;
}

export interface DeltaRuleOptions {
  /** query scale (HF: Dk^-1/2) */
  scale: number;
  /** tokens per chunk (HF: 64) */
  chunk?: number;
  /** (B, H, Dk, Dv): the starting state, overwritten with the state after the last token */
  state?: Tensor;
}

function deltaDims(q: Tensor, v: Tensor, g: Tensor, beta: Tensor, scale: number, chunk: number): DeltaNetDims {
  const [B, T, G, Dk] = q.shape;
  const [Bv, Tv, H, Dv] = v.shape;
  assert(Bv === B && Tv === T && H % G === 0, () => `deltanet: q ${fmtShape(q.shape)} and v ${fmtShape(v.shape)} do not fit`);
  assert(g.size === B * T * H && beta.size === B * T * H, () => `deltanet: g ${fmtShape(g.shape)} / beta ${fmtShape(beta.shape)} need (${B}, ${T}, ${H})`);
  return { B, T, H, G, Dk, Dv, scale, chunk };
}

/**
 * The gated delta rule in chunked form: q, k (B, T, G, Dk), v (B, T, H, Dv), g (log decay, <= 0)
 * and beta (B, T, H) -> out (B, T, H, Dv).
 */
export function deltaRule(q: Tensor, k: Tensor, v: Tensor, g: Tensor, beta: Tensor, opts: DeltaRuleOptions): Tensor {
  const d = deltaDims(q, v, g, beta, opts.scale, opts.chunk ?? 64);
  assert(k.size === q.size, () => `deltanet: k ${fmtShape(k.shape)} differs from q ${fmtShape(q.shape)}`);
  const be = backendOf(q);
  const kern = kernelsOf(q);
  const out = empty(be, v.shape); // (B, T, H, Dv)
  const grad = needsGrad(q, k, v, g, beta);
  const nChunks = Math.ceil(d.T / d.chunk);
  const chunkStates = grad ? empty(be, [d.B, d.H, nChunks, d.Dk, d.Dv]) : null; // (B, H, nChunks, Dk, Dv)
  const s = opts.state?.handle ?? null;
  kern.deltanetForward(out.handle, s, chunkStates?.handle ?? null, q.handle, k.handle, v.handle, g.handle, beta.handle, s, d);
  if (grad) {
    record("deltanet", [q, k, v, g, beta], [out], ([dout]) => {
      const [dq, dk, dv, dg, db] = [q, k, v, g, beta].map((t) => empty(be, t.shape));
      kern.deltanetBackward(
        dq.handle, dk.handle, dv.handle, dg.handle, db.handle,
        dout!.handle, q.handle, k.handle, v.handle, g.handle, beta.handle, chunkStates!.handle, d,
      );
      return [dq, dk, dv, dg, db];
    });
  }
  return out;
}

/** One token of the recurrence (decoding): shapes as deltaRule with T = 1; `state` advanced in place. */
export function deltaRuleStep(q: Tensor, k: Tensor, v: Tensor, g: Tensor, beta: Tensor, state: Tensor, scale: number): Tensor {
  const d = deltaDims(q, v, g, beta, scale, 1);
  assert(d.T === 1, () => `deltaRuleStep: one token at a time, got T = ${d.T}`);
  assert(!needsGrad(q, k, v, g, beta), "deltaRuleStep is for inference (no gradients)");
  const out = empty(backendOf(q), v.shape); // (B, 1, H, Dv)
  kernelsOf(q).deltanetStep(out.handle, state.handle, q.handle, k.handle, v.handle, g.handle, beta.handle, d);
  return out;
}
