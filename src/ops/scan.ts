/**
 * Differentiable state-space ops: causal depthwise conv1d, the Mamba selective scan and
 * Mamba-2 SSD, each with an optional recurrent state to continue from (`initial`) and to
 * write back (`final`, which may be the same tensor). The state is an input that can carry a
 * gradient (for checks and truncated BPTT); the final state is a side output without one.
 *
 * The `...Step` functions advance one token in inference (no gradient is recorded): the
 * constant-size decoding path.
 */
import { Tensor } from "../tensor/tensor.js";
import { fmtShape, sameShape } from "../tensor/shape.js";
import type { Backend } from "../backend/backend.js";
import type { Conv1dDims, SelectiveScanDims, SsdDims } from "../backend/kernels_scan.js";
import type { UnaryOp } from "../backend/kernels.js";
import { backendOf, empty, kernelsOf } from "../backend/alloc.js";
import { needsGrad, record } from "../autograd/tape.js";
import { copy } from "./elementwise.js";
import { assert } from "../util/errors.js";

/** Steps between saved states in a training forward of the selective scan. */
export const SCAN_CHECKPOINT_EVERY = 64;

function expect(what: string, t: Tensor | null | undefined, shape: number[]): void {
  if (t) assert(sameShape(t.shape, shape), () => `${what}: expected ${fmtShape(shape)}, got ${fmtShape(t.shape)}`);
}

/** Record an op whose inputs may be absent: `slots` and the backward's gradients line up. */
function recordSlots(op: string, slots: (Tensor | null)[], out: Tensor, grads: (dout: Tensor) => (Tensor | null)[]): void {
  const present = slots.filter((t): t is Tensor => t !== null);
  record(op, present, [out], ([dout]) => grads(dout!).filter((_, i) => slots[i] !== null));
}

/** A gradient buffer for `t` when it is present and wants one, else null. */
function gradFor(be: Backend, t: Tensor | null | undefined): Tensor | null {
  return t && t.requiresGrad ? empty(be, t.shape) : null;
}

// ---------------------------------------------------------------- causal depthwise conv1d

export interface ConvStateOptions {
  /** window state (B, W-1, D) holding the inputs before t = 0 (zeros when absent) */
  initial?: Tensor | null;
  /** written with the last W - 1 inputs (may be `initial`) */
  final?: Tensor | null;
}

/** out[b, t, d] = bias[d] + sum_k weight[d, k] * x[b, t + k - (W - 1), d]; x (B, T, D), weight (D, W). */
export function causalConv1d(x: Tensor, weight: Tensor, bias: Tensor | null, opts: ConvStateOptions = {}): Tensor {
  const [B, T, D] = x.shape;
  const W = weight.shape[1];
  expect("conv1d weight", weight, [D, W]);
  expect("conv1d bias", bias, [D]);
  expect("conv1d initial state", opts.initial, [B, W - 1, D]);
  expect("conv1d final state", opts.final, [B, W - 1, D]);
  const be = backendOf(x);
  const k = kernelsOf(x);
  const d: Conv1dDims = { B, T, D, W };
  const grad = needsGrad(x, weight, bias, opts.initial);
  // the backward reads the window that went in, which an in-place state update overwrites
  const initial = grad && opts.initial ? copy(opts.initial) : (opts.initial ?? null);
  const out = empty(be, [B, T, D]); // (B, T, D)
  k.conv1dForward(out.handle, opts.final?.handle ?? null, x.handle, weight.handle, bias?.handle ?? null, initial?.handle ?? null, d);
  if (grad) {
    recordSlots("causal_conv1d", [x, weight, bias, initial], out, (dout) => {
      const dx = empty(be, x.shape);
      const dw = empty(be, weight.shape);
      const db = gradFor(be, bias);
      const ds = gradFor(be, initial);
      k.conv1dBackward(dx.handle, dw.handle, db?.handle ?? null, ds?.handle ?? null, dout.handle, x.handle, weight.handle, initial?.handle ?? null, d);
      return [dx, dw, db, ds];
    });
  }
  return out;
}

/**
 * One token x (B, D) through the window state (B, W-1, D), which is updated in place; `act`
 * (the mixer's activation after the convolution) is applied in the same kernel.
 */
export function causalConv1dStep(x: Tensor, weight: Tensor, bias: Tensor | null, state: Tensor, act?: UnaryOp): Tensor {
  const [B, D] = x.shape;
  const W = weight.shape[1];
  expect("conv1d weight", weight, [D, W]);
  expect("conv1d state", state, [B, W - 1, D]);
  const out = empty(backendOf(x), [B, D]); // (B, D)
  kernelsOf(x).conv1dStep(out.handle, state.handle, x.handle, weight.handle, bias?.handle ?? null, { B, T: 1, D, W, act });
  return out;
}

// ---------------------------------------------------------------- Mamba selective scan

export interface SelectiveScanOptions {
  /** skip connection Dskip (D) */
  Dskip?: Tensor | null;
  /** output gate: out = y * silu(z), z (B, T, D) */
  z?: Tensor | null;
  /** added to dt before the softplus (D): HF dt_proj.bias */
  dtBias?: Tensor | null;
  /** dt = softplus(dt + dtBias) (default true) */
  dtSoftplus?: boolean;
  /** SSM state (B, D, N) to start from, and to write the final state into (may be the same) */
  initial?: Tensor | null;
  final?: Tensor | null;
  /** steps between checkpoints when recording for backward */
  checkpointEvery?: number;
}

/**
 * The selective scan of Mamba (Gu & Dao 2023, Alg. 2): u, dt (B, T, D), A (D, N),
 * Bmat, Cmat (B, T, N) -> y (B, T, D). See kernels_scan.ts for the equations.
 */
export function selectiveScan(u: Tensor, dt: Tensor, A: Tensor, Bmat: Tensor, Cmat: Tensor, opts: SelectiveScanOptions = {}): Tensor {
  const [B, T, D] = u.shape;
  const N = A.shape[1];
  expect("scan dt", dt, [B, T, D]);
  expect("scan A", A, [D, N]);
  expect("scan B", Bmat, [B, T, N]);
  expect("scan C", Cmat, [B, T, N]);
  expect("scan Dskip", opts.Dskip, [D]);
  expect("scan z", opts.z, [B, T, D]);
  expect("scan dt bias", opts.dtBias, [D]);
  expect("scan initial state", opts.initial, [B, D, N]);
  expect("scan final state", opts.final, [B, D, N]);
  const { Dskip = null, z = null, dtBias = null, initial = null } = opts;
  const be = backendOf(u);
  const k = kernelsOf(u);
  const chunk = opts.checkpointEvery ?? SCAN_CHECKPOINT_EVERY;
  const d: SelectiveScanDims = { B, T, D, N, chunk, deltaSoftplus: opts.dtSoftplus ?? true };
  const grad = needsGrad(u, dt, A, Bmat, Cmat, Dskip, z, dtBias, initial);
  const out = empty(be, [B, T, D]); // (B, T, D)
  const checkpoints = grad ? empty(be, [B, Math.ceil(T / chunk), D, N]) : null; // (B, T / chunk, D, N)
  k.selectiveScanForward(
    out.handle,
    opts.final?.handle ?? null,
    checkpoints?.handle ?? null,
    u.handle,
    dt.handle,
    A.handle,
    Bmat.handle,
    Cmat.handle,
    Dskip?.handle ?? null,
    z?.handle ?? null,
    dtBias?.handle ?? null,
    initial?.handle ?? null,
    d,
  );
  if (grad) {
    recordSlots("selective_scan", [u, dt, A, Bmat, Cmat, Dskip, z, dtBias, initial], out, (dout) => {
      const [du, ddt, dA, dB, dC] = [u, dt, A, Bmat, Cmat].map((t) => empty(be, t.shape));
      const [dD, dz, dbias, ds] = [Dskip, z, dtBias, initial].map((t) => gradFor(be, t));
      k.selectiveScanBackward(
        du.handle,
        ddt.handle,
        dA.handle,
        dB.handle,
        dC.handle,
        dD?.handle ?? null,
        dz?.handle ?? null,
        dbias?.handle ?? null,
        ds?.handle ?? null,
        dout.handle,
        u.handle,
        dt.handle,
        A.handle,
        Bmat.handle,
        Cmat.handle,
        Dskip?.handle ?? null,
        z?.handle ?? null,
        dtBias?.handle ?? null,
        checkpoints!.handle,
        d,
      );
      return [du, ddt, dA, dB, dC, dD, dz, dbias, ds];
    });
  }
  return out;
}

/** One token: u, dt, z (B, D), Bmat, Cmat (B, N); the state (B, D, N) is updated in place. */
export function selectiveScanStep(
  u: Tensor,
  dt: Tensor,
  A: Tensor,
  Bmat: Tensor,
  Cmat: Tensor,
  state: Tensor,
  opts: Omit<SelectiveScanOptions, "initial" | "final" | "checkpointEvery"> = {},
): Tensor {
  const [B, D] = u.shape;
  const N = A.shape[1];
  expect("scan state", state, [B, D, N]);
  expect("scan B", Bmat, [B, N]);
  const out = empty(backendOf(u), [B, D]); // (B, D)
  const d: SelectiveScanDims = { B, T: 1, D, N, chunk: 1, deltaSoftplus: opts.dtSoftplus ?? true };
  kernelsOf(u).selectiveScanStep(
    out.handle,
    state.handle,
    u.handle,
    dt.handle,
    A.handle,
    Bmat.handle,
    Cmat.handle,
    opts.Dskip?.handle ?? null,
    opts.z?.handle ?? null,
    opts.dtBias?.handle ?? null,
    d,
  );
  return out;
}

// ---------------------------------------------------------------- Mamba-2 SSD

export interface SsdOptions {
  /** the chunk length of the chunked algorithm (HF chunk_size) */
  chunk: number;
  /** skip connection per head (H) */
  Dskip?: Tensor | null;
  /** added to dt before the softplus (H): HF dt_bias */
  dtBias?: Tensor | null;
  dtSoftplus?: boolean;
  /** HF time_step_limit: dt is clamped to [lo, hi] after the softplus */
  dtLimit?: readonly [number, number];
  /** SSM state (B, H, P, N) to start from and to write back (may be the same tensor) */
  initial?: Tensor | null;
  final?: Tensor | null;
}

function ssdDims(B: number, T: number, H: number, P: number, G: number, N: number, opts: SsdOptions): SsdDims {
  assert(H % G === 0, () => `ssd: ${G} groups do not divide ${H} heads`);
  const [dtMin, dtMax] = opts.dtLimit ?? [0, Infinity];
  return { B, T, H, P, N, G, chunk: opts.chunk, dtSoftplus: opts.dtSoftplus ?? true, dtMin, dtMax };
}

/**
 * Mamba-2's SSD (Dao & Gu 2024): x (B, T, H, P), dt (B, T, H), A (H), Bmat, Cmat (B, T, G, N)
 * -> y (B, T, H, P), computed chunk by chunk (see backend/ref/ssd.ts).
 */
export function ssd(x: Tensor, dt: Tensor, A: Tensor, Bmat: Tensor, Cmat: Tensor, opts: SsdOptions): Tensor {
  const [B, T, H, P] = x.shape;
  const [G, N] = Bmat.shape.slice(2);
  const d = ssdDims(B, T, H, P, G, N, opts);
  expect("ssd dt", dt, [B, T, H]);
  expect("ssd A", A, [H]);
  expect("ssd B", Bmat, [B, T, G, N]);
  expect("ssd C", Cmat, [B, T, G, N]);
  expect("ssd Dskip", opts.Dskip, [H]);
  expect("ssd dt bias", opts.dtBias, [H]);
  expect("ssd initial state", opts.initial, [B, H, P, N]);
  expect("ssd final state", opts.final, [B, H, P, N]);
  const { Dskip = null, dtBias = null, initial = null } = opts;
  const be = backendOf(x);
  const k = kernelsOf(x);
  const grad = needsGrad(x, dt, A, Bmat, Cmat, Dskip, dtBias, initial);
  const y = empty(be, [B, T, H, P]); // (B, T, H, P)
  const checkpoints = grad ? empty(be, [B, Math.ceil(T / d.chunk), H, P, N]) : null; // (B, T / chunk, H, P, N)
  k.ssdForward(
    y.handle,
    opts.final?.handle ?? null,
    checkpoints?.handle ?? null,
    x.handle,
    dt.handle,
    A.handle,
    Bmat.handle,
    Cmat.handle,
    Dskip?.handle ?? null,
    dtBias?.handle ?? null,
    initial?.handle ?? null,
    d,
  );
  if (grad) {
    recordSlots("ssd", [x, dt, A, Bmat, Cmat, Dskip, dtBias, initial], y, (dy) => {
      const [dx, ddt, dA, dB, dC] = [x, dt, A, Bmat, Cmat].map((t) => empty(be, t.shape));
      const [dD, dbias, ds] = [Dskip, dtBias, initial].map((t) => gradFor(be, t));
      k.ssdBackward(
        dx.handle,
        ddt.handle,
        dA.handle,
        dB.handle,
        dC.handle,
        dD?.handle ?? null,
        dbias?.handle ?? null,
        ds?.handle ?? null,
        dy.handle,
        x.handle,
        dt.handle,
        A.handle,
        Bmat.handle,
        Cmat.handle,
        Dskip?.handle ?? null,
        dtBias?.handle ?? null,
        checkpoints!.handle,
        d,
      );
      return [dx, ddt, dA, dB, dC, dD, dbias, ds];
    });
  }
  return y;
}

/** One token: x (B, H, P), dt (B, H), Bmat, Cmat (B, G, N); the state (B, H, P, N) is updated in place. */
export function ssdStep(
  x: Tensor,
  dt: Tensor,
  A: Tensor,
  Bmat: Tensor,
  Cmat: Tensor,
  state: Tensor,
  opts: Omit<SsdOptions, "initial" | "final">,
): Tensor {
  const [B, H, P] = x.shape;
  const [G, N] = Bmat.shape.slice(1);
  const d = ssdDims(B, 1, H, P, G, N, opts);
  expect("ssd state", state, [B, H, P, N]);
  const y = empty(backendOf(x), [B, H, P]); // (B, H, P)
  kernelsOf(x).ssdStep(
    y.handle,
    state.handle,
    x.handle,
    dt.handle,
    A.handle,
    Bmat.handle,
    Cmat.handle,
    opts.Dskip?.handle ?? null,
    opts.dtBias?.handle ?? null,
    d,
  );
  return y;
}
