/**
 * Differentiable ops for RWKV: token shift, the WKV-4 and WKV-7 recurrences (kernels_rwkv.ts)
 * and the per-head reductions RWKV-7 needs (group norm, L2 normalisation, head sums), the
 * last three composed from core kernels (layernorm, rmsnorm, matmul) so that no backend needs
 * a kernel for them.
 */
import { Tensor } from "../tensor/tensor.js";
import { fmtShape, lastDim, rows } from "../tensor/shape.js";
import { backendOf, empty, fromArray, kernelsOf, zeros } from "../backend/alloc.js";
import { needsGrad, record } from "../autograd/tape.js";
import { assert } from "../util/errors.js";
import { keep } from "../tensor/scope.js";
import type { Backend } from "../backend/backend.js";
import { layernorm, rmsnorm } from "./norm.js";
import { add, mul } from "./elementwise.js";
import { matmulKN } from "./linalg.js";

/**
 * Token shift (RWKV's time_shift): y_t = x_(t-1), with y_0 = prev (the last input of the
 * previous segment, (B, C)) or zeros. x (B, T, C) -> (B, T, C).
 */
export function tokenShift(x: Tensor, prev: Tensor | null = null): Tensor {
  const [B, T, C] = x.shape;
  if (prev) assert(prev.size === B * C, () => `tokenShift: previous input ${fmtShape(prev.shape)} for x ${fmtShape(x.shape)}`);
  const be = backendOf(x);
  const k = kernelsOf(x);
  const y = empty(be, x.shape); // (B, T, C)
  if (prev) k.copy2d(y.handle, prev.handle, B, C, T * C, 0, C, 0, false);
  else k.fill(y.handle, 0, y.size);
  k.copy2d(y.handle, x.handle, B, (T - 1) * C, T * C, C, T * C, 0, false);
  const inputs = prev ? [x, prev] : [x];
  if (needsGrad(...inputs)) {
    record("token_shift", inputs, [y], ([dy]) => {
      const dx = zeros(be, x.shape);
      k.copy2d(dx.handle, dy!.handle, B, (T - 1) * C, T * C, 0, T * C, C, false);
      if (!prev) return [dx];
      const dprev = empty(be, prev.shape);
      k.copy2d(dprev.handle, dy!.handle, B, C, C, 0, T * C, 0, false);
      return [dx, dprev];
    });
  }
  return y;
}

export interface RecurrentResult {
  y: Tensor;
  /** the state after the last step, in the kernel's layout */
  state: Tensor;
}

/**
 * RWKV-4 WKV over a sequence (kernels_rwkv.ts wkv4Forward): w (D) the per-step log decay
 * (-exp(time_decay)), u (D) time_first, k, v (B, T, D), state0 (B, 3, D) or null for the empty
 * state. Differentiable in w, u, k, v and state0; memory for the backward is the state before
 * each step, (B, T, 3, D).
 */
export function wkv4(w: Tensor, u: Tensor, k: Tensor, v: Tensor, state0: Tensor | null = null): RecurrentResult {
  const [B, T, D] = k.shape;
  assert(T >= 1 && v.size === k.size && w.size === D && u.size === D, () => `wkv4: k ${fmtShape(k.shape)}, v ${fmtShape(v.shape)}, w ${fmtShape(w.shape)}, u ${fmtShape(u.shape)}`);
  if (state0) assert(state0.size === B * 3 * D, () => `wkv4: state ${fmtShape(state0.shape)} for ${B} x ${D} channels`);
  const be = backendOf(k);
  const kern = kernelsOf(k);
  const d = { B, T, D };
  const inputs = state0 ? [w, u, k, v, state0] : [w, u, k, v];
  const grad = needsGrad(...inputs);
  const y = empty(be, k.shape); // (B, T, D)
  const state = empty(be, [B, 3, D]); // (B, 3, D)
  const saved = grad ? empty(be, [B, T, 3, D]) : null; // (B, T, 3, D)
  kern.wkv4Forward(y.handle, state.handle, saved?.handle ?? null, w.handle, u.handle, k.handle, v.handle, state0?.handle ?? null, d);
  if (grad) {
    record("wkv4", inputs, [y, state], ([dy, dstate]) => {
      const dyOrZero = dy ?? zeros(be, y.shape);
      const dwRows = empty(be, [B, D]);
      const duRows = empty(be, [B, D]);
      const dk = empty(be, k.shape);
      const dv = empty(be, v.shape);
      const dstate0 = state0?.requiresGrad ? empty(be, state0.shape) : null;
      kern.wkv4Backward(
        dwRows.handle,
        duRows.handle,
        dk.handle,
        dv.handle,
        dstate0?.handle ?? null,
        dyOrZero.handle,
        dstate?.handle ?? null,
        w.handle,
        u.handle,
        k.handle,
        v.handle,
        y.handle,
        saved!.handle,
        d,
      );
      const dw = empty(be, w.shape);
      const du = empty(be, u.shape);
      kern.sumRows(dw.handle, dwRows.handle, B, D, false);
      kern.sumRows(du.handle, duRows.handle, B, D, false);
      for (const t of [dwRows, duRows]) t.dispose();
      if (dyOrZero !== dy) dyOrZero.dispose();
      return [dw, du, dk, dv, dstate0];
    });
  }
  return { y, state };
}

/** One WKV-4 decoding step: k, v (B, D) -> y (B, D); state (B, 3, D) is updated in place. */
export function wkv4Step(w: Tensor, u: Tensor, k: Tensor, v: Tensor, state: Tensor): Tensor {
  assertInference("wkv4Step", w, u, k, v);
  const [B, D] = [state.shape[0], lastDim(state.shape)];
  assert(k.size === B * D && v.size === B * D, () => `wkv4Step: k ${fmtShape(k.shape)} for state ${fmtShape(state.shape)}`);
  const y = empty(backendOf(k), k.shape); // (B, D)
  kernelsOf(k).wkv4Step(y.handle, state.handle, w.handle, u.handle, k.handle, v.handle, { B, D });
  return y;
}

export interface Wkv7Options {
  /** steps between state checkpoints for the backward pass (default N: O(T * C) memory) */
  chunk?: number;
}

/**
 * RWKV-7 generalized delta rule over a sequence (kernels_rwkv.ts wkv7Forward): r, w, k, v, a, b
 * (B, T, H, N) with w the decay in (0, 1), state0 (B, H, N, N) or null for zeros.
 * Differentiable in all of them; the backward keeps one state per `chunk` steps and
 * recomputes the states inside a chunk.
 */
export function wkv7(
  r: Tensor,
  w: Tensor,
  k: Tensor,
  v: Tensor,
  a: Tensor,
  b: Tensor,
  state0: Tensor | null = null,
  opts: Wkv7Options = {},
): RecurrentResult {
  const [B, T, H, N] = r.shape;
  for (const t of [w, k, v, a, b]) assert(t.size === r.size, () => `wkv7: input ${fmtShape(t.shape)} for r ${fmtShape(r.shape)}`);
  if (state0) assert(state0.size === B * H * N * N, () => `wkv7: state ${fmtShape(state0.shape)} for ${B} x ${H} heads of size ${N}`);
  const chunk = opts.chunk ?? N;
  assert(T >= 1 && Number.isInteger(chunk) && chunk >= 1, () => `wkv7: T ${T}, chunk ${chunk}`);
  const be = backendOf(r);
  const kern = kernelsOf(r);
  const d = { B, T, H, N, chunk };
  const inputs = state0 ? [r, w, k, v, a, b, state0] : [r, w, k, v, a, b];
  const grad = needsGrad(...inputs);
  const y = empty(be, r.shape); // (B, T, H, N)
  const state = empty(be, [B, H, N, N]); // (B, H, N, N)
  const checkpoints = grad ? empty(be, [B, Math.ceil(T / chunk), H, N, N]) : null; // (B, T / chunk, H, N, N)
  const h = (t: Tensor | null) => t?.handle ?? null;
  kern.wkv7Forward(y.handle, state.handle, h(checkpoints), r.handle, w.handle, k.handle, v.handle, a.handle, b.handle, h(state0), d);
  if (grad) {
    record("wkv7", inputs, [y, state], ([dy, dstate]) => {
      const dyOrZero = dy ?? zeros(be, y.shape);
      const grads = [r, w, k, v, a, b].map((t) => empty(be, t.shape));
      const dstate0 = state0?.requiresGrad ? empty(be, state0.shape) : null;
      const [dr, dw, dk, dv, da, db] = grads.map((g) => g.handle);
      kern.wkv7Backward(dr, dw, dk, dv, da, db, h(dstate0), dyOrZero.handle, h(dstate), r.handle, w.handle, k.handle, v.handle, a.handle, b.handle, checkpoints!.handle, d);
      if (dyOrZero !== dy) dyOrZero.dispose();
      return [...grads, dstate0];
    });
  }
  return { y, state };
}

/** One WKV-7 decoding step: r, w, k, v, a, b (B, H, N) -> y (B, H, N); state (B, H, N, N) updated in place. */
export function wkv7Step(r: Tensor, w: Tensor, k: Tensor, v: Tensor, a: Tensor, b: Tensor, state: Tensor): Tensor {
  assertInference("wkv7Step", r, w, k, v, a, b);
  const [B, H, N] = state.shape;
  for (const t of [r, w, k, v, a, b]) assert(t.size === B * H * N, () => `wkv7Step: input ${fmtShape(t.shape)} for state ${fmtShape(state.shape)}`);
  const y = empty(backendOf(r), r.shape); // (B, H, N)
  kernelsOf(r).wkv7Step(y.handle, state.handle, r.handle, w.handle, k.handle, v.handle, a.handle, b.handle, { B, H, N });
  return y;
}

/** Steps update their state in place and are not differentiable: decoding runs under noGrad. */
function assertInference(op: string, ...inputs: Tensor[]): void {
  assert(!needsGrad(...inputs), () => `${op} updates its state in place and has no backward; run decoding under noGrad`);
}

// ---------------------------------------------------------------- per-head reductions

/**
 * Filled constants (unit weights, ones), made once per backend and value and kept: uploading
 * them on every call also made the webgpu backend submit its recorded work before each upload,
 * 8 extra submits in every RWKV-7 forward and decoding step.
 */
const constants = new WeakMap<Backend, Map<string, Tensor>>();

function constant(like: Tensor, value: number, shape: number[]): Tensor {
  const be = backendOf(like);
  let cache = constants.get(be);
  if (!cache) constants.set(be, (cache = new Map()));
  const key = `${value} ${shape.join(",")}`;
  const hit = cache.get(key);
  if (hit && !hit.isDisposed) return hit;
  const n = shape.reduce((p, q) => p * q, 1);
  const t = keep(fromArray(be, new Float32Array(n).fill(value), shape));
  cache.set(key, t);
  return t;
}

/**
 * GroupNorm over the last dim split into `groups` contiguous groups (torch nn.GroupNorm on
 * (rows, C) input): each group normalised with its own mean and variance, then the per-channel
 * affine w, b (C). Composed from layernorm over (rows * groups, C / groups) with unit weight.
 */
export function groupNorm(x: Tensor, w: Tensor, b: Tensor, groups: number, eps: number): Tensor {
  const C = lastDim(x.shape);
  assert(C % groups === 0 && w.size === C && b.size === C, () => `groupNorm: ${groups} groups over ${fmtShape(x.shape)}`);
  const N = C / groups;
  const unit = constant(x, 1, [N]);
  const normed = layernorm(x.reshape([rows(x.shape) * groups, N]), unit, null, eps).reshape(x.shape); // (..., C)
  return add(mul(normed, w), b); // (..., C)
}

/**
 * x / ||x|| over consecutive groups of `size` in the last dim (torch F.normalize, p = 2, with
 * sqrt(||x||^2 + 1e-24) for max(||x||, 1e-12): equal wherever ||x|| >> 1e-12). Composed as
 * rmsnorm with weight 1/sqrt(size).
 */
export function l2normalize(x: Tensor, size: number): Tensor {
  const scale = constant(x, 1 / Math.sqrt(size), [size]);
  return rmsnorm(x.reshape([x.size / size, size]), scale, 1e-24 / size).reshape(x.shape); // (..., C)
}

/** Sums over consecutive groups of `size` in the last dim: (..., G * size) -> (..., G). */
export function groupSum(x: Tensor, size: number): Tensor {
  const ones = constant(x, 1, [size, 1]);
  const G = lastDim(x.shape) / size;
  return matmulKN(x.reshape([x.size / size, size]), ones).reshape([...x.shape.slice(0, -1), G]); // (..., G)
}

/** Repeats each entry of the last dim `size` times: (..., G) -> (..., G * size). */
export function groupRepeat(s: Tensor, size: number): Tensor {
  const ones = constant(s, 1, [1, size]);
  const G = lastDim(s.shape);
  return matmulKN(s.reshape([s.size, 1]), ones).reshape([...s.shape.slice(0, -1), G * size]); // (..., G * size)
}
