/**
 * Differentiable elementwise ops. Binary ops take b either of a's shape or of a trailing shape
 * that repeats (a bias row, a per-channel scale, a scalar): the kernel's period form.
 */
import { Tensor } from "../tensor/tensor.js";
import { fmtShape, numel } from "../tensor/shape.js";
import type { BinaryOp, UnaryOp } from "../backend/kernels.js";
import { backendOf, empty, kernelsOf } from "../backend/alloc.js";
import { needsGrad, record } from "../autograd/tape.js";
import { assert } from "../util/errors.js";

function like(x: Tensor): Tensor {
  return empty(backendOf(x), x.shape, "f32");
}

export function unary(op: UnaryOp, x: Tensor): Tensor {
  const y = like(x);
  kernelsOf(x).unaryForward(op, y.handle, x.handle, x.size);
  if (needsGrad(x)) {
    record(op, [x], [y], ([dy]) => {
      const dx = like(x);
      kernelsOf(x).unaryBackward(op, dx.handle, dy!.handle, x.handle, x.size);
      return [dx];
    });
  }
  return y;
}

export const silu = (x: Tensor) => unary("silu", x);
export const sigmoid = (x: Tensor) => unary("sigmoid", x);
export const softplus = (x: Tensor) => unary("softplus", x);
export const exp = (x: Tensor) => unary("exp", x);
export const tanh = (x: Tensor) => unary("tanh", x);
export const neg = (x: Tensor) => unary("neg", x);

/** The period of b within a: b's shape must be a suffix of a's (or equal). */
function period(a: Tensor, b: Tensor): number {
  const suffix = a.shape.slice(a.rank - b.rank);
  const ok = b.rank <= a.rank && b.shape.every((d, i) => d === suffix[i] || (d === 1 && numel(b.shape) === 1));
  assert(ok, () => `cannot broadcast ${fmtShape(b.shape)} against ${fmtShape(a.shape)}`);
  return b.size;
}

export function binary(op: BinaryOp, a: Tensor, b: Tensor): Tensor {
  const bn = period(a, b);
  const y = like(a);
  kernelsOf(a).binaryForward(op, y.handle, a.handle, b.handle, a.size, bn);
  if (needsGrad(a, b)) {
    record(op, [a, b], [y], ([dy]) => {
      const k = kernelsOf(a);
      let da: Tensor | null = null;
      let db: Tensor | null = null;
      if (a.requiresGrad) {
        da = like(a);
        if (op === "mul") k.binaryForward("mul", da.handle, dy!.handle, b.handle, a.size, bn);
        else k.copy2d(da.handle, dy!.handle, 1, a.size, a.size, 0, a.size, 0, false);
      }
      if (b.requiresGrad) {
        // d(a op b)/db, summed over the repeats of b
        let full = dy!;
        if (op === "mul") {
          full = like(a);
          k.binaryForward("mul", full.handle, dy!.handle, a.handle, a.size, a.size);
        }
        db = like(b);
        k.sumRows(db.handle, full.handle, a.size / bn, bn, false);
        if (op === "sub") k.axpby(db.handle, -1, db.handle, 0, db.handle, bn);
        if (full !== dy) full.dispose();
      }
      return [da, db];
    });
  }
  return y;
}

export const add = (a: Tensor, b: Tensor) => binary("add", a, b);
export const sub = (a: Tensor, b: Tensor) => binary("sub", a, b);
export const mul = (a: Tensor, b: Tensor) => binary("mul", a, b);

/** alpha * x */
export function scale(x: Tensor, alpha: number): Tensor {
  const y = like(x);
  kernelsOf(x).axpby(y.handle, alpha, x.handle, 0, x.handle, x.size);
  if (needsGrad(x)) {
    record("scale", [x], [y], ([dy]) => {
      const dx = like(x);
      kernelsOf(x).axpby(dx.handle, alpha, dy!.handle, 0, dy!.handle, x.size);
      return [dx];
    });
  }
  return y;
}

/** silu(g) * u: the gated FFN of Llama-family models (Shazeer 2020, "GLU variants"). */
export function swiglu(g: Tensor, u: Tensor): Tensor {
  assert(g.size === u.size, "swiglu: gate and up sizes differ");
  const y = like(g);
  kernelsOf(g).swigluForward(y.handle, g.handle, u.handle, g.size);
  if (needsGrad(g, u)) {
    record("swiglu", [g, u], [y], ([dy]) => {
      const dg = like(g);
      const du = like(u);
      kernelsOf(g).swigluBackward(dg.handle, du.handle, dy!.handle, g.handle, u.handle, g.size);
      return [dg, du];
    });
  }
  return y;
}

/** A copy that does not share storage (and is differentiable). */
export function copy(x: Tensor): Tensor {
  const y = like(x);
  kernelsOf(x).copy2d(y.handle, x.handle, 1, x.size, x.size, 0, x.size, 0, false);
  if (needsGrad(x)) record("copy", [x], [y], ([dy]) => [copy(dy!)]);
  return y;
}
