/**
 * RWKV inference states (nn/state.ts Rwkv4State, Rwkv7State): allocation and the in-place
 * updates a layer makes after each segment. Their size depends on the width only, never on
 * how many tokens went through them.
 */
import type { Tensor } from "../tensor/tensor.js";
import { keep } from "../tensor/scope.js";
import type { Backend } from "../backend/backend.js";
import { fromArray, kernelsOf, zeros } from "../backend/alloc.js";
import { WKV4_EMPTY_MAX } from "../backend/kernels_rwkv.js";
import type { Rwkv4State, Rwkv7State } from "./state.js";

/** Token-shift inputs at zero and the WKV-4 state empty (num = den = 0, max = -1e38), as HF starts it. */
export function allocateRwkv4State(be: Backend, B: number, C: number, D: number): Rwkv4State {
  const wkv = new Float32Array(B * 3 * D);
  for (let b = 0; b < B; b++) wkv.fill(WKV4_EMPTY_MAX, (b * 3 + 2) * D, (b * 3 + 3) * D);
  return {
    kind: "rwkv4",
    attShift: keep(zeros(be, [B, C])), // (B, C)
    ffnShift: keep(zeros(be, [B, C])), // (B, C)
    wkv: keep(fromArray(be, wkv, [B, 3, D])), // (B, 3, D)
  };
}

/** Token-shift inputs and the per-head delta-rule state at zero (rwkv_v7_numpy.py's initial state). */
export function allocateRwkv7State(be: Backend, B: number, C: number, H: number, N: number): Rwkv7State {
  return {
    kind: "rwkv7",
    attShift: keep(zeros(be, [B, C])), // (B, C)
    ffnShift: keep(zeros(be, [B, C])), // (B, C)
    wkv: keep(zeros(be, [B, H, N, N])), // (B, H, N, N)
  };
}

/** dst <- src (same size); the state keeps its storage, the new values carry no gradient. */
export function overwrite(dst: Tensor, src: Tensor): void {
  kernelsOf(dst).copy2d(dst.handle, src.handle, 1, dst.size, dst.size, 0, dst.size, 0, false);
}

/** dst (B, C) <- x[:, T - 1] for x (B, T, C): the token-shift input of the next segment. */
export function storeLastStep(dst: Tensor, x: Tensor): void {
  const [B, T, C] = x.shape;
  kernelsOf(dst).copy2d(dst.handle, x.handle, B, C, C, 0, T * C, (T - 1) * C, false);
}
