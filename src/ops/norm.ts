/** Normalisations over the last dim. */
import { Tensor } from "../tensor/tensor.js";
import { lastDim, rows } from "../tensor/shape.js";
import { backendOf, empty, zeros, kernelsOf } from "../backend/alloc.js";
import { needsGrad, record } from "../autograd/tape.js";

/**
 * RMSNorm (Zhang & Sennrich 2019): x / sqrt(mean(x^2) + eps) * (w + offset).
 * offset = 1 gives the zero-centred form (1 + w) of Gemma and Qwen3-Next.
 */
export function rmsnorm(x: Tensor, w: Tensor, eps: number, offset = 0): Tensor {
  const C = lastDim(x.shape);
  const R = rows(x.shape);
  const be = backendOf(x);
  const k = kernelsOf(x);
  const y = empty(be, x.shape); // (..., C)
  const rstd = empty(be, [R]);
  k.rmsnormForward(y.handle, rstd.handle, x.handle, w.handle, R, C, eps, offset);
  if (needsGrad(x, w)) {
    record("rmsnorm", [x, w], [y], ([dy]) => {
      const dx = empty(be, x.shape);
      const dw = zeros(be, w.shape);
      k.rmsnormBackward(dx.handle, dw.handle, dy!.handle, x.handle, w.handle, rstd.handle, R, C, offset);
      return [dx, dw];
    });
  } else {
    rstd.dispose();
  }
  return y;
}

/** LayerNorm (Ba et al. 2016) with optional bias. */
export function layernorm(x: Tensor, w: Tensor, b: Tensor | null, eps: number): Tensor {
  const C = lastDim(x.shape);
  const R = rows(x.shape);
  const be = backendOf(x);
  const k = kernelsOf(x);
  const y = empty(be, x.shape); // (..., C)
  const mean = empty(be, [R]);
  const rstd = empty(be, [R]);
  k.layernormForward(y.handle, mean.handle, rstd.handle, x.handle, w.handle, b?.handle ?? null, R, C, eps);
  if (needsGrad(x, w, b)) {
    record("layernorm", b ? [x, w, b] : [x, w], [y], ([dy]) => {
      const dx = empty(be, x.shape);
      const dw = zeros(be, w.shape);
      const db = b ? zeros(be, b.shape) : null;
      k.layernormBackward(dx.handle, dw.handle, db?.handle ?? null, dy!.handle, x.handle, w.handle, mean.handle, rstd.handle, R, C);
      return [dx, dw, db];
    });
  } else {
    mean.dispose();
    rstd.dispose();
  }
  return y;
}
