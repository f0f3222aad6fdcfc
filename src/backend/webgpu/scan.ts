/**
 * WGSL state-space kernels (semantics of backend/ref/scan.ts and ssd.ts): the causal depthwise
 * conv1d, the Mamba selective scan and Mamba-2's SSD. Both scans run on the chunk-parallel
 * linear scan of scan_core.ts (backward: scan_backward.ts); the one-token steps are one thread
 * per channel (Mamba) or per (head, row of the state) (SSD), each owning its slice of the state.
 *
 * conv1d: one thread per output element; the filter gradients, sums over (b, t), are a two-pass
 * reduction (conv_grad.ts).
 */
import type { ScanKernels, SsdDims } from "../kernels_scan.js";
import type { GpuContext } from "./context.js";
import { grid1d } from "./context.js";
import { LINEAR_INDEX, MATH } from "./wgsl.js";
import { UNARY } from "./elementwise.js";
import { flags, launch, Temps, type S } from "./kit.js";
import { ScanCore, type ScanShape } from "./scan_core.js";
import { scanBackward } from "./scan_backward.js";
import { convWeightGrad } from "./conv_grad.js";

const WG = 256;

const CONV_UNIFORMS: [string, "u32"][] = [["B", "u32"], ["T", "u32"], ["D", "u32"], ["W", "u32"]];

/** xpad(b, s, c): the W - 1 window rows (zeros without a state), then x. */
const PADDED = /* wgsl */ `
fn padded(b: u32, s: u32, c: u32) -> f32 {
  let S = u.W - 1u;
  if (s >= S) { return x[(b * u.T + s - S) * u.D + c]; }
  if (HAS_STATE) { return stateIn[(b * S + s) * u.D + c]; }
  return 0.0;
}
`;

export function ssdShape(d: SsdDims): ScanShape {
  return {
    B: d.B, T: d.T, Dc: d.H * d.P, N: d.N, chunk: d.chunk, R: d.P, G: d.G, aPerState: false,
    softplus: d.dtSoftplus, clamp: true, dtMin: d.dtMin, dtMax: d.dtMax,
  };
}

export function scanKernels(ctx: GpuContext): ScanKernels<S> {
  const core = new ScanCore(ctx);
  const mambaShape = (d: { B: number; T: number; D: number; N: number; chunk: number; deltaSoftplus: boolean }): ScanShape => ({
    B: d.B, T: d.T, Dc: d.D, N: d.N, chunk: d.chunk, R: 1, G: 1, aPerState: true,
    softplus: d.deltaSoftplus, clamp: false, dtMin: 0, dtMax: 0,
  });

  return {
    conv1dForward(out, stateOut, x, weight, bias, stateIn, d) {
      const { B, T, D, W } = d;
      const temps = new Temps(ctx);
      const f = flags({ HAS_STATE: !!stateIn, HAS_BIAS: !!bias });
      const bindings: [string, "read" | "write", string][] = [
        ["out", "write", "array<f32>"], ["x", "read", "array<f32>"], ["weight", "read", "array<f32>"], ["bias", "read", "array<f32>"], ["stateIn", "read", "array<f32>"],
      ];
      if (B * T * D > 0) {
        launch(
          ctx,
          `conv1d:fwd:${f.key}`,
          () => ({
            label: "conv1d:fwd",
            uniforms: CONV_UNIFORMS,
            bindings,
            body: `${f.wgsl}${LINEAR_INDEX(WG)}${PADDED}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = linearIndex(gid, nwg);
  if (i >= u.B * u.T * u.D) { return; }
  let c = i % u.D;
  let t = (i / u.D) % u.T;
  let b = i / (u.D * u.T);
  var acc = 0.0;
  if (HAS_BIAS) { acc = bias[c]; }
  for (var k = 0u; k < u.W; k++) { acc += weight[c * u.W + k] * padded(b, t + k, c); }
  out[i] = acc;
}`,
          }),
          [out, x, weight, temps.or(bias), temps.or(stateIn)],
          [B, T, D, W],
          grid1d(B * T * D, WG),
        );
      }
      if (stateOut && W > 1 && B * D > 0) {
        // the new window is xpad[T .. T + W - 2] (a separate pass: stateOut may alias stateIn)
        launch(
          ctx,
          `conv1d:window:${f.key}`,
          () => ({
            label: "conv1d:window",
            uniforms: CONV_UNIFORMS,
            bindings: [["stateOut", "write", "array<f32>"], ...bindings.slice(1)],
            body: `${f.wgsl}${LINEAR_INDEX(WG)}${PADDED}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = linearIndex(gid, nwg);
  let S = u.W - 1u;
  if (i >= u.B * S * u.D) { return; }
  let c = i % u.D;
  let j = (i / u.D) % S;
  let b = i / (u.D * S);
  stateOut[i] = padded(b, u.T + j, c);
}`,
          }),
          [stateOut, x, weight, temps.or(bias), temps.or(stateIn)],
          [B, T, D, W],
          grid1d(B * (W - 1) * D, WG),
        );
      }
      temps.release();
    },

    conv1dBackward(dx, dweight, dbias, dstateIn, dout, x, weight, stateIn, d) {
      const { B, T, D, W } = d;
      const temps = new Temps(ctx);
      const f = flags({ HAS_DSTATE: !!dstateIn });
      const S = W - 1;
      // dxpad[s] = sum_k w[k] dout[s - k]: dx for s >= S, dstateIn below
      launch(
        ctx,
        `conv1d:bwdx:${f.key}`,
        () => ({
          label: "conv1d:bwdx",
          uniforms: CONV_UNIFORMS,
          bindings: [["dx", "write", "array<f32>"], ["dstate", "write", "array<f32>"], ["dout", "read", "array<f32>"], ["weight", "read", "array<f32>"]],
          body: `${f.wgsl}${LINEAR_INDEX(WG)}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = linearIndex(gid, nwg);
  let S = u.W - 1u;
  let rows = S + u.T;
  if (i >= u.B * rows * u.D) { return; }
  let c = i % u.D;
  let s = (i / u.D) % rows;
  let b = i / (u.D * rows);
  if (s < S && !HAS_DSTATE) { return; }
  var acc = 0.0;
  for (var k = 0u; k < u.W; k++) {
    if (s >= k && s - k < u.T) { acc += weight[c * u.W + k] * dout[(b * u.T + s - k) * u.D + c]; }
  }
  if (s >= S) { dx[(b * u.T + s - S) * u.D + c] = acc; }
  else if (HAS_DSTATE) { dstate[(b * S + s) * u.D + c] = acc; }
}`,
        }),
        [dx, temps.or(dstateIn), dout, weight],
        [B, T, D, W],
        grid1d(B * (S + T) * D, WG),
      );
      convWeightGrad(ctx, "conv1d:bwdw", { dweight, dbias, dout, x, stateIn, accumulate: false }, B, T, D, W);
      temps.release();
    },

    conv1dStep(out, state, x, weight, bias, d) {
      const { B, D, W } = d;
      const temps = new Temps(ctx);
      const f = flags({ HAS_BIAS: !!bias });
      const act = d.act ? UNARY[d.act][0] : "v";
      launch(
        ctx,
        `conv1d:step:${f.key}:${d.act ?? ""}`,
        () => ({
          label: "conv1d:step",
          uniforms: CONV_UNIFORMS,
          bindings: [["out", "write", "array<f32>"], ["state", "write", "array<f32>"], ["x", "read", "array<f32>"], ["weight", "read", "array<f32>"], ["bias", "read", "array<f32>"]],
          body: `${f.wgsl}${MATH}${LINEAR_INDEX(WG)}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = linearIndex(gid, nwg);
  if (i >= u.B * u.D) { return; }
  let c = i % u.D;
  let b = i / u.D;
  let S = u.W - 1u;
  var acc = 0.0;
  if (HAS_BIAS) { acc = bias[c]; }
  for (var k = 0u; k < S; k++) { acc += weight[c * u.W + k] * state[(b * S + k) * u.D + c]; }
  let xi = x[i];
  acc += weight[c * u.W + S] * xi;
  let v = acc;
  out[i] = ${act};
  // this thread owns column (b, :, c) of the window: shift it and append x
  for (var k = 0u; k + 1u < S; k++) { state[(b * S + k) * u.D + c] = state[(b * S + k + 1u) * u.D + c]; }
  if (S > 0u) { state[(b * S + S - 1u) * u.D + c] = xi; }
}`,
        }),
        [out, state, x, weight, temps.or(bias)],
        [B, 1, D, W],
        grid1d(B * D, WG),
      );
      temps.release();
    },

    selectiveScanForward(out, stateOut, checkpoints, u, dt, A, Bmat, Cmat, Dskip, z, dtBias, stateIn, d) {
      core.forward(out, stateOut, checkpoints, { u, dt, A, Bmat, Cmat, Dskip, z, dtBias }, stateIn, mambaShape(d), "sscan");
    },

    selectiveScanBackward(du, ddt, dA, dB, dC, dDskip, dz, ddtBias, dstateIn, dout, u, dt, A, Bmat, Cmat, Dskip, z, dtBias, checkpoints, d) {
      scanBackward(ctx, { du, ddt, dA, dB, dC, dDskip, dz, ddtBias, dstateIn }, dout, { u, dt, A, Bmat, Cmat, Dskip, z, dtBias }, checkpoints, mambaShape(d), "sscan");
    },

    selectiveScanStep(out, state, u, dt, A, Bmat, Cmat, Dskip, z, dtBias, d) {
      stepKernel(ctx, out, state, { u, dt, A, Bmat, Cmat, Dskip, z, dtBias }, mambaShape({ ...d, T: 1 }), "sscan");
    },

    ssdForward(y, stateOut, checkpoints, x, dt, A, Bmat, Cmat, Dskip, dtBias, stateIn, d) {
      core.forward(y, stateOut, checkpoints, { u: x, dt, A, Bmat, Cmat, Dskip, z: null, dtBias }, stateIn, ssdShape(d), "ssd");
    },

    ssdBackward(dx, ddt, dA, dB, dC, dDskip, ddtBias, dstateIn, dy, x, dt, A, Bmat, Cmat, Dskip, dtBias, checkpoints, d) {
      scanBackward(ctx, { du: dx, ddt, dA, dB, dC, dDskip, dz: null, ddtBias, dstateIn }, dy, { u: x, dt, A, Bmat, Cmat, Dskip, z: null, dtBias }, checkpoints, ssdShape(d), "ssd");
    },

    ssdStep(y, state, x, dt, A, Bmat, Cmat, Dskip, dtBias, d) {
      stepKernel(ctx, y, state, { u: x, dt, A, Bmat, Cmat, Dskip, z: null, dtBias }, ssdShape({ ...d, T: 1 }), "ssd");
    },
  };
}

/**
 * One token of either scan: a thread per channel walks its N states in place,
 * h = exp(step A) h + step B u,  y = C . h + Dskip u  (gated by silu(z) when given).
 */
function stepKernel(
  ctx: GpuContext,
  out: S,
  state: S,
  x: { u: S; dt: S; A: S; Bmat: S; Cmat: S; Dskip: S | null; z: S | null; dtBias: S | null },
  s: ScanShape,
  tag: string,
): void {
  const temps = new Temps(ctx);
  const f = flags({ HAS_D: !!x.Dskip, HAS_Z: !!x.z, HAS_BIAS: !!x.dtBias, SOFTPLUS: s.softplus, CLAMP: s.clamp, A_PER_N: s.aPerState });
  launch(
    ctx,
    `${tag}:step:${f.key}`,
    () => ({
      label: `${tag}:step`,
      uniforms: [["B", "u32"], ["Dc", "u32"], ["N", "u32"], ["R", "u32"], ["G", "u32"], ["dtMin", "f32"], ["dtMax", "f32"]],
      bindings: [
        ["out", "write", "array<f32>"], ["state", "write", "array<f32>"], ["uu", "read", "array<f32>"], ["dt", "read", "array<f32>"], ["A", "read", "array<f32>"],
        ["Bm", "read", "array<f32>"], ["Cm", "read", "array<f32>"], ["Dskip", "read", "array<f32>"], ["z", "read", "array<f32>"], ["dtBias", "read", "array<f32>"],
      ],
      body: `${f.wgsl}${MATH}${LINEAR_INDEX(WG)}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = linearIndex(gid, nwg);
  if (i >= u.B * u.Dc) { return; }
  let d = i % u.Dc;
  let b = i / u.Dc;
  let per = u.Dc / u.R;
  let p = d / u.R;
  var v = dt[b * per + p];
  if (HAS_BIAS) { v += dtBias[p]; }
  var delta = v;
  if (SOFTPLUS) { delta = softplus_(v); }
  if (CLAMP) { delta = min(max(delta, u.dtMin), u.dtMax); }
  let bc = (b * u.G + d / (u.Dc / u.G)) * u.N;
  let x = uu[i];
  var y = 0.0;
  for (var n = 0u; n < u.N; n++) {
    var a = A[p];
    if (A_PER_N) { a = A[d * u.N + n]; }
    let si = i * u.N + n;
    // the decay as the forward kernels compute it (the hardware exp2 of step * A log2 e)
    let h = exp2(delta * (a * LOG2E)) * state[si] + delta * Bm[bc + n] * x;
    state[si] = h;
    y += Cm[bc + n] * h;
  }
  if (HAS_D) { y += Dskip[p] * x; }
  if (HAS_Z) { let zz = z[i]; y = y * zz * sigmoid_(zz); }
  out[i] = y;
}`,
    }),
    [out, state, x.u, x.dt, x.A, x.Bmat, x.Cmat, temps.or(x.Dskip), temps.or(x.z), temps.or(x.dtBias)],
    [s.B, s.Dc, s.N, s.R, s.G, s.clamp ? s.dtMin : 0, s.clamp ? s.dtMax : 0],
    grid1d(s.B * s.Dc, WG),
  );
  temps.release();
}
