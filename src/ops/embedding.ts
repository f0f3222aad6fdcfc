/**
 * Token embedding lookup. Ids are validated against the vocabulary before any kernel runs. The
 * table may be stored in half precision (inference weights); rows come out f32.
 */
import { Tensor } from "../tensor/tensor.js";
import { backendOf, empty, zeros, kernelsOf } from "../backend/alloc.js";
import { needsGrad, record } from "../autograd/tape.js";
import { assert } from "../util/errors.js";
import type { WeightDtype } from "../backend/kernels.js";

/**
 * ids (...) i32, table (V, C) -> (..., C). With `paddingIdx` (nn.Embedding's padding_idx) that
 * row of the table receives no gradient from this lookup, as in PyTorch.
 */
export function embedding(ids: Tensor, table: Tensor, paddingIdx: number | null = null): Tensor {
  const C = table.shape[1];
  const be = backendOf(table);
  const k = kernelsOf(table);
  const y = empty(be, [...ids.shape, C]); // (..., C)
  assert(table.dtype !== "i32" && !(table.requiresGrad && table.dtype !== "f32"), () => `embedding: table ${table.describe()} must be f32 to train, or a frozen half-precision weight`);
  k.embeddingForward(y.handle, ids.handle, table.handle, ids.size, C, table.dtype as WeightDtype);
  if (needsGrad(table)) {
    record("embedding", [table], [y], ([dy]) => {
      const dt = zeros(be, table.shape);
      k.embeddingBackward(dt.handle, dy!.handle, ids.handle, ids.size, C);
      if (paddingIdx !== null) {
        const zero = zeros(be, [C]);
        k.copy2d(dt.handle, zero.handle, 1, C, C, paddingIdx * C, C, 0, false);
        zero.dispose();
      }
      return [dt];
    });
  }
  return y;
}
