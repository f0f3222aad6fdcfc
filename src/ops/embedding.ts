/** Token embedding lookup. Ids are validated against the vocabulary before any kernel runs. */
import { Tensor } from "../tensor/tensor.js";
import { backendOf, empty, zeros, kernelsOf } from "../backend/alloc.js";
import { needsGrad, record } from "../autograd/tape.js";

/**
 * ids (...) i32, table (V, C) -> (..., C). With `paddingIdx` (nn.Embedding's padding_idx) that
 * row of the table receives no gradient from this lookup, as in PyTorch.
 */
export function embedding(ids: Tensor, table: Tensor, paddingIdx: number | null = null): Tensor {
  const C = table.shape[1];
  const be = backendOf(table);
  const k = kernelsOf(table);
  const y = empty(be, [...ids.shape, C]); // (..., C)
  k.embeddingForward(y.handle, ids.handle, table.handle, ids.size, C);
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
