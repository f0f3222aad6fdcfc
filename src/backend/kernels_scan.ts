/**
 * State-space kernels: the causal depthwise conv1d in front of every Mamba mixer, the Mamba
 * selective scan (Gu & Dao 2023) and Mamba-2's state-space duality (SSD, Dao & Gu 2024).
 * Conventions as in kernels.ts: outputs, inputs, parameters, dims; dense row-major buffers,
 * activations channel-last (B, T, D). Optional buffers are `null`.
 *
 * Recurrent state. Every forward takes an optional initial state and writes the final state,
 * so a prefill continues from where the last call stopped; `stateOut` may be the same buffer
 * as `stateIn` (each kernel reads a state slice before it writes it). The `...Step` kernels
 * advance one token and update the state in place: the fixed-size state of decoding.
 *
 * Training memory. The scans never keep all B*T*D*N states. When gradients are needed the
 * forward also writes `checkpoints`: the state at the start of every chunk of `chunk` steps,
 * (B, ceil(T / chunk), D, N). The backward walks the chunks in reverse, recomputes the states
 * inside one chunk from its checkpoint and runs the adjoint recurrence through it, so training
 * holds O(T*D + T*D*N/chunk) floats. Inference passes `checkpoints = null` and saves nothing.
 *
 * Where the dt nonlinearity lives. dt bias, softplus (and Mamba-2's clamp) are inside the scan
 * kernels, as in state-spaces/mamba's `delta_bias` / `delta_softplus`: a fast kernel computes
 * them in registers instead of writing and re-reading a (B, T, D) tensor, and the backward
 * needs only the raw dt. Mamba's output gate y * silu(z) is fused too (optional z), for the
 * same reason; Mamba-2 gates inside its gated RMSNorm instead, so SSD has no z.
 */

/** Causal depthwise conv1d over (B, T, D) with a (D, W) filter (HF's conv1d.weight (D, 1, W)). */
import type { UnaryOp } from "./kernels.js";

export interface Conv1dDims {
  B: number;
  T: number;
  D: number;
  /** filter width; the window state holds the W - 1 inputs before t = 0 */
  W: number;
  /**
   * conv1dStep only: an activation applied to the output. Decoding fuses the mixers' activation
   * after the convolution into the step, one kernel (a GPU dispatch) less a layer.
   */
  act?: UnaryOp;
}

export interface SelectiveScanDims {
  B: number;
  T: number;
  /** inner width (channels) and state size per channel */
  D: number;
  N: number;
  /** steps between checkpoints (the recompute granularity of the backward) */
  chunk: number;
  /** dt = softplus(dt + dtBias) when true, dt + dtBias otherwise */
  deltaSoftplus: boolean;
}

export interface SsdDims {
  B: number;
  T: number;
  /** heads, head size (D = H * P), state size, B/C groups (G divides H) */
  H: number;
  P: number;
  N: number;
  G: number;
  /** the chunk length of the chunked algorithm (HF config chunk_size); also the checkpoint interval */
  chunk: number;
  /** dt = clamp(softplus(dt + dtBias), dtMin, dtMax) (HF time_step_limit); no softplus when false */
  dtSoftplus: boolean;
  dtMin: number;
  dtMax: number;
}

export interface ScanKernels<S> {
  // ---- causal depthwise conv1d: out[b,t,d] = bias[d] + sum_k w[d,k] * xpad[b, t + k, d] ----
  // xpad is the window state (W - 1 rows, zeros when null) followed by x.
  /** out (B, T, D); stateOut (B, W-1, D) gets the last W - 1 rows of xpad (may alias stateIn). */
  conv1dForward(out: S, stateOut: S | null, x: S, weight: S, bias: S | null, stateIn: S | null, d: Conv1dDims): void;
  /** Writes dx, dweight (D, W), dbias (D) and dstateIn (B, W-1, D) where given (no accumulation). */
  conv1dBackward(
    dx: S,
    dweight: S,
    dbias: S | null,
    dstateIn: S | null,
    dout: S,
    x: S,
    weight: S,
    stateIn: S | null,
    d: Conv1dDims,
  ): void;
  /** One token: out (B, D) from x (B, D) and the window state (B, W-1, D), which shifts in x. */
  conv1dStep(out: S, state: S, x: S, weight: S, bias: S | null, d: Conv1dDims): void;

  // ---- Mamba selective scan (Gu & Dao 2023, Alg. 2; HF MambaMixer.slow_forward) ----
  // u, dt, z (B, T, D); A (D, N); Bmat, Cmat (B, T, N); Dskip, dtBias (D); states (B, D, N).
  //   dt_t = softplus(dt_t + dtBias)        dA_t = exp(dt_t * A)        (zero-order hold)
  //   h_t = dA_t * h_{t-1} + (dt_t * B_t) * u_t                         (Euler for B)
  //   y_t = C_t . h_t + Dskip * u_t         out_t = y_t * silu(z_t)  (when z is given)
  /** checkpoints (B, ceil(T / chunk), D, N): the state before each chunk, written when non-null. */
  selectiveScanForward(
    out: S,
    stateOut: S | null,
    checkpoints: S | null,
    u: S,
    dt: S,
    A: S,
    Bmat: S,
    Cmat: S,
    Dskip: S | null,
    z: S | null,
    dtBias: S | null,
    stateIn: S | null,
    d: SelectiveScanDims,
  ): void;
  /** Gradients of every input (written, not accumulated); null outputs are skipped. */
  selectiveScanBackward(
    du: S,
    ddt: S,
    dA: S,
    dB: S,
    dC: S,
    dDskip: S | null,
    dz: S | null,
    ddtBias: S | null,
    dstateIn: S | null,
    dout: S,
    u: S,
    dt: S,
    A: S,
    Bmat: S,
    Cmat: S,
    Dskip: S | null,
    z: S | null,
    dtBias: S | null,
    checkpoints: S,
    d: SelectiveScanDims,
  ): void;
  /** One token: u, dt, z (B, D); Bmat, Cmat (B, N); state (B, D, N) updated in place; out (B, D). */
  selectiveScanStep(
    out: S,
    state: S,
    u: S,
    dt: S,
    A: S,
    Bmat: S,
    Cmat: S,
    Dskip: S | null,
    z: S | null,
    dtBias: S | null,
    d: SelectiveScanDims,
  ): void;

  // ---- Mamba-2 SSD (Dao & Gu 2024; HF Mamba2Mixer.torch_forward) ----
  // x (B, T, H, P); dt (B, T, H); A, Dskip, dtBias (H); Bmat, Cmat (B, T, G, N); states (B, H, P, N).
  // Head h reads group g = floor(h / (H / G)) (HF repeat_interleave).
  //   dt_t = clamp(softplus(dt_t + dtBias), dtMin, dtMax)      a_t = exp(dt_t * A)   (scalar per head)
  //   S_t = a_t * S_{t-1} + dt_t * x_t B_t^T                   y_t = S_t C_t + Dskip * x_t
  // computed chunk by chunk: quadratic (attention-like) inside a chunk, recurrent across chunks.
  /** y (B, T, H, P); checkpoints (B, ceil(T / chunk), H, P, N): the state entering each chunk. */
  ssdForward(
    y: S,
    stateOut: S | null,
    checkpoints: S | null,
    x: S,
    dt: S,
    A: S,
    Bmat: S,
    Cmat: S,
    Dskip: S | null,
    dtBias: S | null,
    stateIn: S | null,
    d: SsdDims,
  ): void;
  /** Gradients of every input (written, not accumulated); null outputs are skipped. */
  ssdBackward(
    dx: S,
    ddt: S,
    dA: S,
    dB: S,
    dC: S,
    dDskip: S | null,
    ddtBias: S | null,
    dstateIn: S | null,
    dy: S,
    x: S,
    dt: S,
    A: S,
    Bmat: S,
    Cmat: S,
    Dskip: S | null,
    dtBias: S | null,
    checkpoints: S,
    d: SsdDims,
  ): void;
  /** One token: x (B, H, P); dt (B, H); Bmat, Cmat (B, G, N); state (B, H, P, N) in place; y (B, H, P). */
  ssdStep(
    y: S,
    state: S,
    x: S,
    dt: S,
    A: S,
    Bmat: S,
    Cmat: S,
    Dskip: S | null,
    dtBias: S | null,
    d: SsdDims,
  ): void;
}
