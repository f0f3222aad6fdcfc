/** Splitting and joining along the last dim (the fused projections of HF models). */
import { Tensor } from "../tensor/tensor.js";
import { lastDim, rows } from "../tensor/shape.js";
import { backendOf, empty, zeros, kernelsOf } from "../backend/alloc.js";
import { needsGrad, record } from "../autograd/tape.js";
import { assert } from "../util/errors.js";

/** Split x (..., sum(sizes)) into tensors (..., sizes[i]). */
export function split(x: Tensor, sizes: number[]): Tensor[] {
  const n = lastDim(x.shape);
  assert(sizes.reduce((a, b) => a + b, 0) === n, () => `split: sizes ${sizes} do not sum to ${n}`);
  const r = rows(x.shape);
  const k = kernelsOf(x);
  const outs = sizes.map((s) => empty(backendOf(x), [...x.shape.slice(0, -1), s]));
  k.split(
    outs.map((y) => y.handle),
    x.handle,
    r,
    sizes,
  );
  if (needsGrad(x)) {
    record("split", [x], outs, (gs) => {
      const dx = zeros(backendOf(x), x.shape);
      let o = 0;
      gs.forEach((g, i) => {
        if (g) k.copy2d(dx.handle, g.handle, r, sizes[i], n, o, sizes[i], 0, false);
        o += sizes[i];
      });
      return [dx];
    });
  }
  return outs;
}

/** Concatenate along the last dim. */
export function concat(xs: Tensor[]): Tensor {
  const r = rows(xs[0].shape);
  const sizes = xs.map((x) => lastDim(x.shape));
  const n = sizes.reduce((a, b) => a + b, 0);
  const y = empty(backendOf(xs[0]), [...xs[0].shape.slice(0, -1), n]);
  const k = kernelsOf(xs[0]);
  let off = 0;
  xs.forEach((x, i) => {
    assert(rows(x.shape) === r, "concat: leading dims differ");
    k.copy2d(y.handle, x.handle, r, sizes[i], n, off, sizes[i], 0, false);
    off += sizes[i];
  });
  if (needsGrad(...xs)) {
    record("concat", xs, [y], ([g]) => {
      let o = 0;
      return xs.map((x, i) => {
        const dx = empty(backendOf(x), x.shape);
        k.copy2d(dx.handle, g!.handle, r, sizes[i], sizes[i], 0, n, o, false);
        o += sizes[i];
        return dx;
      });
    });
  }
  return y;
}

/** x (B, T, C) -> (B, 1, C): the last time step (what generation reads after a prefill). */
export function lastStep(x: Tensor): Tensor {
  const [B, T, C] = x.shape;
  assert(x.rank === 3, () => `lastStep: expected (B, T, C), got rank ${x.rank}`);
  const k = kernelsOf(x);
  const y = empty(backendOf(x), [B, 1, C]); // (B, 1, C)
  k.copy2d(y.handle, x.handle, B, C, C, 0, T * C, (T - 1) * C, false);
  if (needsGrad(x)) {
    record("lastStep", [x], [y], ([g]) => {
      const dx = zeros(backendOf(x), x.shape);
      k.copy2d(dx.handle, g!.handle, B, C, T * C, (T - 1) * C, C, 0, false);
      return [dx];
    });
  }
  return y;
}
