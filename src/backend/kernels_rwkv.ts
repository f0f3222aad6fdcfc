/**
 * RWKV kernels: the WKV-4 recurrence (RWKV-4, Peng et al. 2023) and the RWKV-7 "Goose"
 * generalized delta rule (BlinkDL RWKV-LM x070). Conventions as in kernels.ts: outputs,
 * inputs, parameters, dims; dense row-major buffers, channel-last (B, T, D) or per-head
 * (B, T, H, N) layouts. The time loop lives inside the kernel; every kernel takes an optional
 * initial state and can write the final one, so prefill, decoding and truncated training
 * segments are the same code. A backend parallelises over (batch, channel) for WKV-4 and over
 * (batch, head, row of the state) for WKV-7.
 */

/** The "minus infinity" exponent of an empty WKV-4 state (HF rwkv_linear_attention_cpu, RWKV-LM wkv_cuda.cu). */
export const WKV4_EMPTY_MAX = -1e38;

/** WKV-4 sizes: batch B, time T, channels D (attention_hidden_size). */
export interface Wkv4Dims {
  B: number;
  T: number;
  D: number;
}

/**
 * WKV-7 sizes: batch B, time T, heads H, head size N (the state is N x N per head). The
 * backward pass recomputes states from checkpoints stored every `chunk` steps, so training
 * memory is B * ceil(T / chunk) * H * N * N floats for the checkpoints (O(T * C) for
 * chunk >= N) plus (chunk + 1) states of scratch per (batch, head).
 */
export interface Wkv7Dims {
  B: number;
  T: number;
  H: number;
  N: number;
  chunk: number;
}

export interface RwkvKernels<S> {
  /**
   * RWKV-4 WKV as HF modeling_rwkv.py rwkv_linear_attention_cpu computes it, per channel:
   *   y_t = (A_t + e^(u + k_t) v_t) / (B_t + e^(u + k_t))
   *   A_(t+1) = e^w A_t + e^(k_t) v_t,   B_(t+1) = e^w B_t + e^(k_t)
   * with A = num * e^max and B = den * e^max kept in max-tracking form for stability.
   * w (D) is the per-step log decay (HF: -exp(time_decay)), u (D) the bonus (time_first);
   * k, v, y (B, T, D); state (B, 3, D) holds [num, den, max] (zero state: 0, 0, -1e38).
   * `saved` (B, T, 3, D) receives the state before every step for the backward pass (null
   * in inference). state0 and stateOut may be the same buffer.
   */
  wkv4Forward(y: S, stateOut: S | null, saved: S | null, w: S, u: S, k: S, v: S, state0: S | null, d: Wkv4Dims): void;
  /**
   * Gradients of wkv4Forward: dk, dv (B, T, D); dw, du (B, D), one row per sequence (the
   * caller sums over B); dstate0 (B, 3, D) when the initial state needs one. dstateT (B, 3, D)
   * is the gradient arriving at the final state (null: none). Exact a.e., including the
   * gradient through the piecewise-linear max exponent.
   */
  wkv4Backward(
    dw: S,
    du: S,
    dk: S,
    dv: S,
    dstate0: S | null,
    dy: S,
    dstateT: S | null,
    w: S,
    u: S,
    k: S,
    v: S,
    y: S,
    saved: S,
    d: Wkv4Dims,
  ): void;
  /** One decoding step: k, v, y (B, D); state (B, 3, D) is updated in place. */
  wkv4Step(y: S, state: S, w: S, u: S, k: S, v: S, d: { B: number; D: number }): void;

  /**
   * RWKV-7 generalized delta rule, per head with state S (N x N), row i = value index, column
   * j = key index (the layout of rwkv_v7_numpy.py):
   *   S_t = S_(t-1) diag(w_t) + (S_(t-1) a_t) b_t^T + v_t k_t^T,    y_t = S_t r_t
   * RWKV-7 passes a = -kk (removal key) and b = kk * a (replacement with in-context rate a).
   * r, w, k, v, a, b, y (B, T, H, N), w the decay in (0, 1); state (B, H, N, N), zero when
   * state0 is null. `checkpoints` (B, ceil(T / chunk), H, N, N) receives the state before
   * every chunk for the backward pass (null in inference). state0 and stateOut may be the
   * same buffer.
   */
  wkv7Forward(
    y: S,
    stateOut: S | null,
    checkpoints: S | null,
    r: S,
    w: S,
    k: S,
    v: S,
    a: S,
    b: S,
    state0: S | null,
    d: Wkv7Dims,
  ): void;
  /**
   * Gradients of wkv7Forward, all (B, T, H, N), and dstate0 (B, H, N, N) when wanted. Walks
   * the chunks backwards, recomputing each chunk's states from its checkpoint. dstateT is the
   * gradient arriving at the final state (null: none).
   */
  wkv7Backward(
    dr: S,
    dw: S,
    dk: S,
    dv: S,
    da: S,
    db: S,
    dstate0: S | null,
    dy: S,
    dstateT: S | null,
    r: S,
    w: S,
    k: S,
    v: S,
    a: S,
    b: S,
    checkpoints: S,
    d: Wkv7Dims,
  ): void;
  /** One decoding step: r, w, k, v, a, b, y (B, H, N); state (B, H, N, N) updated in place. */
  wkv7Step(y: S, state: S, r: S, w: S, k: S, v: S, a: S, b: S, d: { B: number; H: number; N: number }): void;
}
