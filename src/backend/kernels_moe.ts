/**
 * Mixture-of-experts kernels (conventions as in kernels.ts). A token's k routing choices are
 * "assignments" a = n * k + s (token n, slot s). Expert work never touches a token that was not
 * routed to it: assignments are grouped by expert with a counting sort, each expert's matmuls run
 * on its contiguous group of rows, and the weighted outputs are summed back per token.
 *
 * Layouts: logits, probs (N, E); weights (N, k) f32; indices (N, k) i32; pos (N * k) i32, the row
 * of assignment a in the grouped order; offsets (E + 1) i32, expert e's rows are
 * [offsets[e], offsets[e + 1]); grouped activations (N * k, C).
 */

export interface GroupedMatmulDims {
  /** experts, grouped rows in all (N * k), output features, input features */
  E: number;
  M: number;
  N: number;
  K: number;
}

export interface MoeKernels<S> {
  /**
   * Softmax router with top-k: probs = softmax(logits); indices = the k largest probs, chosen
   * exactly as torch.topk on CPU chooses them (ties included, see ref/torch_topk.ts); weights =
   * probs at those indices, divided by their sum when `normalize` (HF norm_topk_prob).
   */
  moeRouterForward(
    weights: S,
    indices: S,
    probs: S,
    logits: S,
    N: number,
    E: number,
    k: number,
    normalize: boolean,
  ): void;
  /** dlogits from the gradients of weights and of probs (either may be absent). */
  moeRouterBackward(
    dlogits: S,
    dweights: S | null,
    dprobs: S | null,
    probs: S,
    indices: S,
    N: number,
    E: number,
    k: number,
    normalize: boolean,
  ): void;
  /** Counting sort of assignments by expert (stable in assignment order): pos and offsets. */
  moeGroup(pos: S, offsets: S, indices: S, N: number, E: number, k: number): void;
  /** xs[pos[n * k + s]] = x[n]: each token copied to the rows of its k experts. */
  moeGatherForward(xs: S, x: S, pos: S, N: number, k: number, C: number): void;
  /** dx[n] = sum over s of dxs[pos[n * k + s]] */
  moeGatherBackward(dx: S, dxs: S, pos: S, N: number, k: number, C: number): void;
  /** out[r] = x[r] @ w[e]^T for the rows r of expert e; x (M, K), w (E, N, K), out (M, N). */
  moeGroupedMatmulForward(out: S, x: S, w: S, offsets: S, d: GroupedMatmulDims): void;
  /** dx[r] = dy[r] @ w[e]; dw[e] = sum over e's rows of dy[r]^T x[r] (zero for an expert with no rows). */
  moeGroupedMatmulBackward(dx: S | null, dw: S | null, dy: S, x: S, w: S, offsets: S, d: GroupedMatmulDims): void;
  /** out[n] = sum over s of weights[n, s] * ys[pos[n * k + s]] */
  moeCombineForward(out: S, ys: S, weights: S, pos: S, N: number, k: number, C: number): void;
  /** dys[pos[a]] = weights[a] * dout[n];  dweights[a] = dout[n] . ys[pos[a]] */
  moeCombineBackward(
    dys: S | null,
    dweights: S | null,
    dout: S,
    ys: S,
    weights: S,
    pos: S,
    N: number,
    k: number,
    C: number,
  ): void;
  /** out[r, c] = s[r] * x[r, c]: a per-token scalar gate (Qwen3-Next's shared-expert gate). */
  rowScaleForward(out: S, x: S, s: S, rows: number, C: number): void;
  /** dx = s * dy;  ds[r] = dy[r] . x[r] */
  rowScaleBackward(dx: S | null, ds: S | null, dy: S, x: S, s: S, rows: number, C: number): void;
  /**
   * Switch-Transformer load-balancing loss as HF's load_balancing_loss_func computes it over R
   * router rows (all MoE layers stacked): loss[0] = E * sum_e (count_e / R) * (sum_r probs[r, e] / R),
   * count_e = how many of the R * k choices picked e.
   */
  moeLoadBalancingForward(loss: S, probs: S, indices: S, R: number, E: number, k: number): void;
  /** dprobs[r, e] = dloss[0] * E * count_e / R^2 (the counts are not differentiable) */
  moeLoadBalancingBackward(dprobs: S, dloss: S, indices: S, R: number, E: number, k: number): void;
}
