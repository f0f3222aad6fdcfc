/** Token embedding lookup. Ids are validated against the vocabulary before any kernel runs. */
import { Tensor } from "../tensor/tensor.js";
import { backendOf, empty, zeros, kernelsOf } from "../backend/alloc.js";
import { needsGrad, record } from "../autograd/tape.js";

/** ids (...) i32, table (V, C) -> (..., C) */
export function embedding(ids: Tensor, table: Tensor): Tensor {
  const C = table.shape[1];
  const be = backendOf(table);
  const k = kernelsOf(table);
  const y = empty(be, [...ids.shape, C]); // (..., C)
  k.embeddingForward(y.handle, ids.handle, table.handle, ids.size, C);
  if (needsGrad(table)) {
    record("embedding", [table], [y], ([dy]) => {
      const dt = zeros(be, table.shape);
      k.embeddingBackward(dt.handle, dy!.handle, ids.handle, ids.size, C);
      return [dt];
    });
  }
  return y;
}
