/**
 * Differentiable mixture-of-experts ops: the top-k softmax router, the grouping of tokens by
 * expert, per-expert matmuls over contiguous groups (grouped GEMM, as MegaBlocks / HF grouped_mm
 * do it), the weighted scatter back to tokens, and the Switch-Transformer load-balancing loss.
 * No expert ever runs on a token that was not routed to it.
 */
import { Tensor } from "../tensor/tensor.js";
import { fmtShape } from "../tensor/shape.js";
import { backendOf, empty, kernelsOf } from "../backend/alloc.js";
import type { GroupedMatmulDims } from "../backend/kernels_moe.js";
import { needsGrad, record } from "../autograd/tape.js";
import { assert } from "../util/errors.js";

export interface Routing {
  /** routing weights of the chosen experts (N, k), differentiable */
  weights: Tensor;
  /** chosen experts (N, k) i32, as torch.topk orders them */
  indices: Tensor;
  /** softmax over all experts (N, E), differentiable (the load-balancing loss reads it) */
  probs: Tensor;
}

/** logits (N, E) -> the k experts of each token and their weights (renormalised when `normalize`). */
export function routeTopK(logits: Tensor, k: number, normalize: boolean): Routing {
  assert(logits.rank === 2, () => `routeTopK: logits must be (N, E), got ${fmtShape(logits.shape)}`);
  const [N, E] = logits.shape;
  assert(k >= 1 && k <= E, () => `routeTopK: top-k ${k} must be in [1, ${E}]`);
  const be = backendOf(logits);
  const kern = kernelsOf(logits);
  const weights = empty(be, [N, k]); // (N, k)
  const indices = empty(be, [N, k], "i32"); // (N, k)
  const probs = empty(be, [N, E]); // (N, E)
  kern.moeRouterForward(weights.handle, indices.handle, probs.handle, logits.handle, N, E, k, normalize);
  if (needsGrad(logits)) {
    record("moe_router", [logits], [weights, probs], ([dw, dp]) => {
      const dlogits = empty(be, [N, E]);
      kern.moeRouterBackward(dlogits.handle, dw?.handle ?? null, dp?.handle ?? null, probs.handle, indices.handle, N, E, k, normalize);
      return [dlogits];
    });
  }
  return { weights, indices, probs };
}

/** Assignments grouped by expert: pos (N * k) i32 maps assignment n * k + s to its row; offsets (E + 1) i32. */
export interface ExpertGroups {
  pos: Tensor;
  offsets: Tensor;
  N: number;
  E: number;
  k: number;
}

export function groupByExpert(indices: Tensor, E: number): ExpertGroups {
  const [N, k] = indices.shape;
  const be = backendOf(indices);
  const pos = empty(be, [N * k], "i32"); // (N * k)
  const offsets = empty(be, [E + 1], "i32"); // (E + 1)
  kernelsOf(indices).moeGroup(pos.handle, offsets.handle, indices.handle, N, E, k);
  return { pos, offsets, N, E, k };
}

/** x (N, C) -> (N * k, C): each token copied to the rows of the experts it was routed to. */
export function gatherToExperts(x: Tensor, g: ExpertGroups): Tensor {
  const [N, C] = x.shape;
  assert(N === g.N, () => `gatherToExperts: ${N} tokens, routing has ${g.N}`);
  const be = backendOf(x);
  const kern = kernelsOf(x);
  const xs = empty(be, [N * g.k, C]); // (N * k, C)
  kern.moeGatherForward(xs.handle, x.handle, g.pos.handle, N, g.k, C);
  if (needsGrad(x)) {
    record("moe_gather", [x], [xs], ([dxs]) => {
      const dx = empty(be, x.shape);
      kern.moeGatherBackward(dx.handle, dxs!.handle, g.pos.handle, N, g.k, C);
      return [dx];
    });
  }
  return xs;
}

/** xs (N * k, K), w (E, N_out, K) -> (N * k, N_out): each expert's rows times its own weight. */
export function groupedLinear(xs: Tensor, w: Tensor, g: ExpertGroups): Tensor {
  const [M, K] = xs.shape;
  const [E, N, Kw] = w.shape;
  assert(E === g.E && K === Kw && M === g.N * g.k, () => `groupedLinear: rows ${fmtShape(xs.shape)} and weights ${fmtShape(w.shape)} do not fit`);
  const d: GroupedMatmulDims = { E, M, N, K };
  const be = backendOf(xs);
  const kern = kernelsOf(xs);
  const out = empty(be, [M, N]); // (N * k, N_out)
  kern.moeGroupedMatmulForward(out.handle, xs.handle, w.handle, g.offsets.handle, d);
  if (needsGrad(xs, w)) {
    record("moe_grouped_linear", [xs, w], [out], ([dy]) => {
      const dx = xs.requiresGrad ? empty(be, xs.shape) : null;
      const dw = w.requiresGrad ? empty(be, w.shape) : null;
      kern.moeGroupedMatmulBackward(dx?.handle ?? null, dw?.handle ?? null, dy!.handle, xs.handle, w.handle, g.offsets.handle, d);
      return [dx, dw];
    });
  }
  return out;
}

/** ys (N * k, C), weights (N, k) -> (N, C): out[n] = sum over s of weights[n, s] * ys[row of (n, s)]. */
export function combineFromExperts(ys: Tensor, weights: Tensor, g: ExpertGroups): Tensor {
  const C = ys.shape[1];
  const { N, k } = g;
  assert(weights.shape[0] === N && weights.shape[1] === k, () => `combineFromExperts: weights ${fmtShape(weights.shape)} for ${N} tokens, top-${k}`);
  const be = backendOf(ys);
  const kern = kernelsOf(ys);
  const out = empty(be, [N, C]); // (N, C)
  kern.moeCombineForward(out.handle, ys.handle, weights.handle, g.pos.handle, N, k, C);
  if (needsGrad(ys, weights)) {
    record("moe_combine", [ys, weights], [out], ([dout]) => {
      const dys = ys.requiresGrad ? empty(be, ys.shape) : null;
      const dw = weights.requiresGrad ? empty(be, weights.shape) : null;
      kern.moeCombineBackward(dys?.handle ?? null, dw?.handle ?? null, dout!.handle, ys.handle, weights.handle, g.pos.handle, N, k, C);
      return [dys, dw];
    });
  }
  return out;
}

/** x (N, C) scaled row by row by s (N, 1): out[n] = s[n] * x[n]. */
export function scaleRows(x: Tensor, s: Tensor): Tensor {
  const [N, C] = x.shape;
  assert(x.rank === 2 && s.size === N, () => `scaleRows: ${fmtShape(s.shape)} does not give one scale per row of ${fmtShape(x.shape)}`);
  const be = backendOf(x);
  const kern = kernelsOf(x);
  const out = empty(be, x.shape); // (N, C)
  kern.rowScaleForward(out.handle, x.handle, s.handle, N, C);
  if (needsGrad(x, s)) {
    record("scale_rows", [x, s], [out], ([dy]) => {
      const dx = x.requiresGrad ? empty(be, x.shape) : null;
      const ds = s.requiresGrad ? empty(be, s.shape) : null;
      kern.rowScaleBackward(dx?.handle ?? null, ds?.handle ?? null, dy!.handle, x.handle, s.handle, N, C);
      return [dx, ds];
    });
  }
  return out;
}

/**
 * HF load_balancing_loss_func (transformers 5.17, no attention mask): the router rows of every
 * MoE layer are stacked (R rows in all) and loss = E * sum_e f_e * P_e with f_e the fraction of
 * the R * k choices that went to e, divided by R (so sum_e f_e = k), and P_e the mean router
 * probability of e. Gradients reach the routers through P only. One (probs, indices) per layer.
 */
export function loadBalancingLoss(probs: Tensor[], indices: Tensor[]): Tensor {
  assert(probs.length > 0 && probs.length === indices.length, "loadBalancingLoss: one probs and one indices per layer");
  const E = probs[0].shape[1];
  const k = indices[0].shape[1];
  const rows = probs.map((p) => p.shape[0]);
  const R = rows.reduce((a, b) => a + b, 0);
  const be = backendOf(probs[0]);
  const kern = kernelsOf(probs[0]);
  const allProbs = stackRows(probs, E, "f32"); // (R, E)
  const allIndices = stackRows(indices, k, "i32"); // (R, k)
  const loss = empty(be, [1]);
  kern.moeLoadBalancingForward(loss.handle, allProbs.handle, allIndices.handle, R, E, k);
  allProbs.dispose();
  if (needsGrad(...probs)) {
    record("load_balancing", probs, [loss], ([dloss]) => {
      const dall = empty(be, [R, E]);
      kern.moeLoadBalancingBackward(dall.handle, dloss!.handle, allIndices.handle, R, E, k);
      let r0 = 0;
      const grads = probs.map((p, i) => {
        const d = empty(be, p.shape);
        kern.copy2d(d.handle, dall.handle, 1, rows[i] * E, 0, 0, 0, r0 * E, false);
        r0 += rows[i];
        return d;
      });
      dall.dispose();
      return grads;
    });
  } else {
    allIndices.dispose();
  }
  return loss;
}

/** Row-wise concatenation of (n_i, cols) tensors (not differentiable: only used inside an op). */
function stackRows(xs: Tensor[], cols: number, dtype: "f32" | "i32"): Tensor {
  const R = xs.reduce((n, x) => n + x.shape[0], 0);
  const out = empty(backendOf(xs[0]), [R, cols], dtype);
  let r0 = 0;
  for (const x of xs) {
    assert(x.shape[1] === cols && x.dtype === dtype, () => `loadBalancingLoss: layer shapes differ (${fmtShape(x.shape)})`);
    kernelsOf(x).copy2d(out.handle, x.handle, 1, x.size, 0, r0 * cols, 0, 0, false);
    r0 += x.shape[0];
  }
  return out;
}
