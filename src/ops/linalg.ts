/**
 * Matrix products with a weight. HF/PyTorch nn.Linear stores W as (out, in): y = x W^T + b.
 * GPT-2's Conv1D stores it as (in, out): y = x W + b. Both are one product with a flag.
 * W may be stored in half precision (f16/bf16, inference weights): the matmul kernel widens it
 * as it reads (MatmulDims.bDtype), so a half model never holds an f32 copy of its weights.
 */
import { Tensor } from "../tensor/tensor.js";
import { fmtShape, lastDim, rows } from "../tensor/shape.js";
import { backendOf, empty, kernelsOf } from "../backend/alloc.js";
import { needsGrad, record } from "../autograd/tape.js";
import { assert } from "../util/errors.js";
import type { WeightDtype } from "../backend/kernels.js";

/** y (..., N) = x (..., K) @ W^T (+ b), W (N, K). */
export function linear(x: Tensor, W: Tensor, b: Tensor | null = null): Tensor {
  return project(x, W, b, true);
}

/** y (..., N) = x (..., K) @ W (+ b), W (K, N): the GPT-2 Conv1D layout. */
export function matmulKN(x: Tensor, W: Tensor, b: Tensor | null = null): Tensor {
  return project(x, W, b, false);
}

function project(x: Tensor, W: Tensor, b: Tensor | null, outIn: boolean): Tensor {
  const K = lastDim(x.shape);
  const [N, Kw] = outIn ? W.shape : [W.shape[1], W.shape[0]];
  assert(K === Kw, () => `linear: input ${fmtShape(x.shape)} does not match weight ${fmtShape(W.shape)}`);
  assert(x.dtype === "f32" && W.dtype !== "i32", () => `linear: input ${x.dtype} and weight ${W.dtype} (expected f32 input, float weight)`);
  assert(!(W.requiresGrad && W.dtype !== "f32"), () => `linear: half-precision weight ${W.name ?? ""} cannot be trained`);
  const bDtype = W.dtype as WeightDtype;
  const M = rows(x.shape);
  const k = kernelsOf(x);
  const y = empty(backendOf(x), [...x.shape.slice(0, -1), N]); // (..., N)
  k.matmul(y.handle, x.handle, W.handle, { M, N, K, transA: false, transB: outIn, accumulate: false, bDtype });
  if (b) k.binaryForward("add", y.handle, y.handle, b.handle, M * N, N);
  if (!needsGrad(x, W, b)) return y;
  record("linear", b ? [x, W, b] : [x, W], [y], ([dy]) => {
    let dx: Tensor | null = null;
    let dW: Tensor | null = null;
    let db: Tensor | null = null;
    if (x.requiresGrad) {
      dx = empty(backendOf(x), x.shape); // dx (M, K) = dy (M, N) @ W (N, K)
      k.matmul(dx.handle, dy!.handle, W.handle, { M, N: K, K: N, transA: false, transB: !outIn, accumulate: false, bDtype });
    }
    if (W.requiresGrad) {
      dW = empty(backendOf(x), W.shape);
      if (outIn) k.matmul(dW.handle, dy!.handle, x.handle, { M: N, N: K, K: M, transA: true, transB: false, accumulate: false });
      else k.matmul(dW.handle, x.handle, dy!.handle, { M: K, N, K: M, transA: true, transB: false, accumulate: false });
    }
    if (b?.requiresGrad) {
      db = empty(backendOf(x), b.shape); // db = sum over rows of dy
      k.sumRows(db.handle, dy!.handle, M, N, false);
    }
    return [dx, dW, db];
  });
  return y;
}
