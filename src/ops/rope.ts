/** Rotary position embedding (Su et al. 2021) in HF's rotate-half layout. */
import { Tensor } from "../tensor/tensor.js";
import type { RopeDims } from "../backend/kernels.js";
import { backendOf, empty, kernelsOf } from "../backend/alloc.js";
import { needsGrad, record } from "../autograd/tape.js";

export interface RopeOptions {
  /** position of time step 0 */
  pos0: number;
  /** leading dims of each head that rotate (partial rotary); default all */
  rotDim?: number;
  attnScaling?: number;
}

/** x (B, T, H, K), invFreq (rotDim / 2) -> rotated x */
export function rope(x: Tensor, invFreq: Tensor, opts: RopeOptions): Tensor {
  const [B, T, H, K] = x.shape;
  const d: RopeDims = {
    B,
    T,
    H,
    K,
    rotDim: opts.rotDim ?? K,
    pos0: opts.pos0,
    attnScaling: opts.attnScaling ?? 1,
    inverse: false,
  };
  const be = backendOf(x);
  const k = kernelsOf(x);
  const y = empty(be, x.shape); // (B, T, H, K)
  k.ropeForward(y.handle, x.handle, invFreq.handle, d);
  if (needsGrad(x)) {
    record("rope", [x], [y], ([dy]) => {
      const dx = empty(be, x.shape);
      k.ropeForward(dx.handle, dy!.handle, invFreq.handle, { ...d, inverse: true });
      return [dx];
    });
  }
  return y;
}
