/**
 * Gated DeltaNet kernels (Yang, Kautz & Hatamizadeh 2024, "Gated Delta Networks"; Qwen3-Next's
 * linear attention). Conventions as in kernels.ts.
 *
 * Per value head, with a (Dk x Dv) state S, decay a_t = exp(g_t), write strength beta_t and a
 * query scale:
 *   S_t = a_t S_{t-1} + k_t beta_t (v_t - (a_t S_{t-1})^T k_t)^T      (the gated delta rule)
 *   o_t = S_t^T (scale q_t)
 * Layouts: q, k (B, T, G, Dk) with G key heads; v (B, T, H, Dv) with H value heads, value head h
 * reading key head floor(h / (H / G)) (HF repeat_interleave); g, beta (B, T, H);
 * out (B, T, H, Dv); states (B, H, Dk, Dv); chunk states (B, H, ceil(T / chunk), Dk, Dv).
 */

export interface DeltaNetDims {
  B: number;
  T: number;
  /** value heads H, key heads G (G divides H) */
  H: number;
  G: number;
  /** key and value head sizes */
  Dk: number;
  Dv: number;
  /** multiplies q (HF: Dk^-1/2) */
  scale: number;
  /** tokens per chunk of the chunked form; the last chunk may be shorter */
  chunk: number;
}

/** Causal depthwise convolution over time, no bias: x (B, T, D), w (D, W), window (B, W - 1, D). */
export interface DeltaNetConvDims {
  B: number;
  T: number;
  D: number;
  W: number;
}

export interface DeltaNetKernels<S> {
  /** out = x / sqrt(sum(x^2) + eps) over the last dim (the FLA l2norm HF mirrors); rnorm (rows) saved. */
  l2normForward(out: S, rnorm: S, x: S, rows: number, C: number, eps: number): void;
  /** dx = rnorm * dy - x * rnorm^3 * (x . dy) */
  l2normBackward(dx: S, dy: S, x: S, rnorm: S, rows: number, C: number): void;

  /**
   * out[t] = sum_j w[:, j] * x[t - (W - 1) + j], where positions before 0 read `windowIn` (the W - 1
   * inputs before this call, oldest first) or zeros when it is null. windowOut, when given, receives
   * the last W - 1 inputs of (windowIn, x); it may be the same buffer as windowIn.
   */
  deltanetConvForward(out: S, windowOut: S | null, x: S, w: S, windowIn: S | null, d: DeltaNetConvDims): void;
  /** dx; dw += (the window is not differentiated) */
  deltanetConvBackward(dx: S, dw: S, dy: S, x: S, w: S, windowIn: S | null, d: DeltaNetConvDims): void;

  /**
   * The chunked form (training and prefill): within a chunk the delta-rule updates are folded into
   * one lower-triangular solve (the UT transform / WY representation), chunks are chained through
   * the state. initialState null means zeros. finalState receives the state after the last token
   * and may be the same buffer as initialState; chunkStates, when given, the state at the start of
   * every chunk (what the backward pass recomputes from).
   */
  deltanetForward(
    out: S,
    finalState: S | null,
    chunkStates: S | null,
    q: S,
    k: S,
    v: S,
    g: S,
    beta: S,
    initialState: S | null,
    d: DeltaNetDims,
  ): void;
  /** Gradients of q, k, v, g, beta (overwritten) from dout; the initial state is not differentiated. */
  deltanetBackward(
    dq: S,
    dk: S,
    dv: S,
    dg: S,
    dbeta: S,
    dout: S,
    q: S,
    k: S,
    v: S,
    g: S,
    beta: S,
    chunkStates: S,
    d: DeltaNetDims,
  ): void;
  /** The recurrent form for decoding: one token (d.T = 1), `state` updated in place. */
  deltanetStep(out: S, state: S, q: S, k: S, v: S, g: S, beta: S, d: DeltaNetDims): void;
}
