/** Training kernels: optimizer updates and gradient norms. Conventions as in kernels.ts. */

/** AdamW hyper-parameters for one update (torch.optim.AdamW semantics, decoupled weight decay). */
export interface AdamwHyper {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** 1-based step count, for bias correction */
  step: number;
  /** the gradient is multiplied by this first (gradient clipping, accumulation averaging) */
  gradScale: number;
}

export interface TrainKernels<S> {
  /**
   * In place: p -= lr * wd * p; m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
   * p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps), with g = gradScale * grad.
   */
  adamwStep(param: S, m: S, v: S, grad: S, n: number, h: AdamwHyper): void;
  /** out[slot] = sum of x^2 (NaN or Inf when x holds one: the non-finite check rides along). */
  sumSquares(out: S, x: S, n: number, slot: number): void;
}
