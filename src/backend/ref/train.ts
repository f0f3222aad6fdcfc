/** Reference training kernels (see kernels_train.ts). */
import type { AdamwHyper } from "../kernels_train.js";
import type { HostArray } from "../../tensor/dtype.js";

export function adamwStep(param: HostArray, m: HostArray, v: HostArray, grad: HostArray, n: number, h: AdamwHyper): void {
  const bc1 = 1 - h.beta1 ** h.step;
  const bc2 = 1 - h.beta2 ** h.step;
  for (let i = 0; i < n; i++) {
    const g = grad[i] * h.gradScale;
    param[i] -= h.lr * h.weightDecay * param[i];
    m[i] = h.beta1 * m[i] + (1 - h.beta1) * g;
    v[i] = h.beta2 * v[i] + (1 - h.beta2) * g * g;
    const denom = Math.sqrt(v[i]) / Math.sqrt(bc2) + h.eps;
    param[i] -= (h.lr / bc1) * (m[i] / denom);
  }
}

export function sumSquares(out: HostArray, x: HostArray, n: number, slot: number): void {
  let s = 0;
  for (let i = 0; i < n; i++) s += x[i] * x[i];
  out[slot] = s;
}
