/** Splitting and joining along the last dim (the fused projections of HF models). */
import { Tensor } from "../tensor/tensor.js";
import { lastDim, rows } from "../tensor/shape.js";
import { backendOf, empty, zeros, kernelsOf } from "../backend/alloc.js";
import { needsGrad, record } from "../autograd/tape.js";
import { assert } from "../util/errors.js";

/** Split x (..., sum(sizes)) into tensors (..., sizes[i]). */
export function split(x: Tensor, sizes: number[]): Tensor[] {
  const n = lastDim(x.shape);
  assert(sizes.reduce((a, b) => a + b, 0) === n, `split: sizes ${sizes} do not sum to ${n}`);
  const r = rows(x.shape);
  const k = kernelsOf(x);
  const outs: Tensor[] = [];
  let off = 0;
  for (const s of sizes) {
    const y = empty(backendOf(x), [...x.shape.slice(0, -1), s]);
    k.copy2d(y.handle, x.handle, r, s, s, 0, n, off, false);
    outs.push(y);
    off += s;
  }
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
