/**
 * WGSL training kernels (semantics of backend/ref/train.ts): the AdamW update, one thread per
 * element, and the sum of squares behind the gradient norm, as two deterministic passes (each
 * workgroup sums a fixed block into a partial, one workgroup sums the partials in order).
 */
import type { TrainKernels } from "../kernels_train.js";
import type { GpuContext } from "./context.js";
import { grid1d } from "./context.js";
import { LINEAR_INDEX } from "./wgsl.js";
import { launch, segmentSum, Temps, type S } from "./kit.js";

const WG = 256;
/** elements summed by one workgroup of the first sumSquares pass */
const BLOCK = WG * 16;

export function trainKernels(ctx: GpuContext): TrainKernels<S> {
  return {
    adamwStep(param, m, v, grad, n, h) {
      if (n === 0) return;
      // bias corrections in doubles on the host, as the ref computes them
      const bc1 = 1 - h.beta1 ** h.step;
      const bc2 = 1 - h.beta2 ** h.step;
      launch(
        ctx,
        "adamw",
        () => ({
          label: "adamw",
          uniforms: [["n", "u32"], ["lr", "f32"], ["beta1", "f32"], ["beta2", "f32"], ["eps", "f32"], ["decay", "f32"], ["stepSize", "f32"], ["rsqrtBc2", "f32"], ["gradScale", "f32"]],
          bindings: [["param", "write", "array<f32>"], ["m", "write", "array<f32>"], ["v", "write", "array<f32>"], ["grad", "read", "array<f32>"]],
          body: `${LINEAR_INDEX(WG)}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = linearIndex(gid, nwg);
  if (i >= u.n) { return; }
  let g = grad[i] * u.gradScale;
  var p = param[i];
  p = p - u.decay * p;
  let mi = u.beta1 * m[i] + (1.0 - u.beta1) * g;
  let vi = u.beta2 * v[i] + (1.0 - u.beta2) * g * g;
  m[i] = mi;
  v[i] = vi;
  param[i] = p - u.stepSize * (mi / (sqrt(vi) * u.rsqrtBc2 + u.eps));
}`,
        }),
        [param, m, v, grad],
        [n, h.lr, h.beta1, h.beta2, h.eps, h.lr * h.weightDecay, h.lr / bc1, 1 / Math.sqrt(bc2), h.gradScale],
        grid1d(n, WG),
      );
    },

    sumSquares(out, x, n, slot) {
      const temps = new Temps(ctx);
      const blocks = Math.max(1, Math.ceil(n / BLOCK));
      const partial = temps.get(blocks);
      launch(
        ctx,
        "sumsq:blocks",
        () => ({
          label: "sumsq:blocks",
          uniforms: [["n", "u32"]],
          bindings: [["partial", "write", "array<f32>"], ["x", "read", "array<f32>"]],
          body: `${segmentSum("wsum", WG, "f32")}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let blk = wid.y * nwg.x + wid.x;
  let start = blk * ${BLOCK}u;
  var s = 0.0;
  for (var j = 0u; j < ${BLOCK / WG}u; j++) {
    let i = start + j * ${WG}u + lid;
    if (i < u.n) { s += x[i] * x[i]; }
  }
  let t = wsum(s, lid, ${WG}u);
  if (lid == 0u) { partial[blk] = t; }
}`,
        }),
        [partial, x],
        [n],
        grid1d(blocks, 1),
      );
      launch(
        ctx,
        "sumsq:total",
        () => ({
          label: "sumsq:total",
          uniforms: [["blocks", "u32"], ["slot", "u32"]],
          bindings: [["out", "write", "array<f32>"], ["partial", "read", "array<f32>"]],
          body: `${segmentSum("wsum", WG, "f32")}
@compute @workgroup_size(${WG})
fn main(@builtin(local_invocation_index) lid: u32) {
  var s = 0.0;
  for (var i = lid; i < u.blocks; i += ${WG}u) { s += partial[i]; }
  let t = wsum(s, lid, ${WG}u);
  if (lid == 0u) { out[u.slot] = t; }
}`,
        }),
        [out, partial],
        [blocks, slot],
        [1],
      );
      temps.release();
    },
  };
}
