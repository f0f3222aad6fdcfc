/**
 * WGSL softmax cross-entropy (semantics of backend/ref/loss.ts). The forward pass runs one
 * workgroup per row with an online log-sum-exp (each thread keeps a running max and sum, and
 * the pairs are merged in a tree), then one workgroup sums the per-row losses and counts the
 * rows that have a target: the mean is computed on the device, deterministically.
 */
import type { CoreKernels } from "../kernels.js";
import type { GpuContext } from "./context.js";
import { grid1d } from "./context.js";
import type { GpuTensorBuffer } from "./pool.js";
import { LINEAR_INDEX } from "./wgsl.js";

type S = GpuTensorBuffer;
const WG = 256;

/** Tree merge of (max, sum of exp(x - max)) pairs, and of plain vec2 sums. */
const REDUCE = /* wgsl */ `
var<workgroup> red: array<vec2<f32>, ${WG}>;
fn mergeLse(a: vec2<f32>, b: vec2<f32>) -> vec2<f32> {
  let m = max(a.x, b.x);
  return vec2<f32>(m, a.y * exp(a.x - m) + b.y * exp(b.x - m));
}
fn reduceLse(v: vec2<f32>, lid: u32) -> vec2<f32> {
  red[lid] = v;
  workgroupBarrier();
  for (var s = ${WG / 2}u; s > 0u; s = s >> 1u) {
    if (lid < s) { red[lid] = mergeLse(red[lid], red[lid + s]); }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}
fn reduceSum(v: vec2<f32>, lid: u32) -> vec2<f32> {
  red[lid] = v;
  workgroupBarrier();
  for (var s = ${WG / 2}u; s > 0u; s = s >> 1u) {
    if (lid < s) { red[lid] = red[lid] + red[lid + s]; }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}
`;

export function lossKernels(ctx: GpuContext): Pick<CoreKernels<S>, "crossEntropyForward" | "crossEntropyBackward"> {
  /** out[0] = (sum over rows of terms[2r], count of rows with terms[2r+1] = 1) */
  const sumTerms = (out: GPUBuffer, terms: GPUBuffer, N: number) => {
    const p = ctx.pipeline("crossEntropyTotal", () => ({
      label: "crossEntropyTotal",
      uniforms: [["N", "u32"]],
      bindings: [["out", "write", "array<vec2<f32>>"], ["terms", "read", "array<vec2<f32>>"]],
      body: `${REDUCE}
@compute @workgroup_size(${WG})
fn main(@builtin(local_invocation_index) lid: u32) {
  var s = vec2<f32>(0.0);
  for (var r = lid; r < u.N; r += ${WG}u) { s += terms[r]; }
  s = reduceSum(s, lid);
  if (lid == 0u) { out[0] = s; }
}`,
    }));
    ctx.dispatch(p, [out, terms], [N], [1]);
  };

  return {
    crossEntropyForward(loss, lse, logits, targets, N, V) {
      const terms = ctx.pool.acquire(Math.max(1, N) * 8);
      const total = ctx.pool.acquire(16);
      if (N > 0) {
        const p = ctx.pipeline("crossEntropyRows", () => ({
          label: "crossEntropyRows",
          uniforms: [["N", "u32"], ["V", "u32"]],
          bindings: [["lse", "write", "array<f32>"], ["terms", "write", "array<vec2<f32>>"], ["logits", "read", "array<f32>"], ["targets", "read", "array<i32>"]],
          body: `${REDUCE}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let r = wid.y * nwg.x + wid.x;
  if (r >= u.N) { return; }
  let base = r * u.V;
  var acc = vec2<f32>(-3.0e38, 0.0);
  for (var j = lid; j < u.V; j += ${WG}u) { acc = mergeLse(acc, vec2<f32>(logits[base + j], 1.0)); }
  acc = reduceLse(acc, lid);
  if (lid == 0u) {
    let l = acc.x + log(acc.y);
    lse[r] = l;
    let tgt = targets[r];
    terms[r] = select(vec2<f32>(0.0), vec2<f32>(l - logits[base + u32(max(tgt, 0))], 1.0), tgt >= 0);
  }
}`,
        }));
        ctx.dispatch(p, [lse, terms, logits, targets], [N, V], grid1d(N, 1));
      }
      sumTerms(total, terms, N);
      const pm = ctx.pipeline("crossEntropyMean", () => ({
        label: "crossEntropyMean",
        uniforms: [],
        bindings: [["loss", "write", "array<f32>"], ["total", "read", "array<vec2<f32>>"]],
        body: `
@compute @workgroup_size(1)
fn main() {
  let t = total[0];
  loss[0] = select(0.0, t.x / t.y, t.y > 0.0);
}`,
      }));
      ctx.dispatch(pm, [loss, total], [], [1]);
      ctx.pool.release(terms);
      ctx.pool.release(total);
    },

    crossEntropyBackward(dlogits, dloss, logits, lse, targets, N, V) {
      if (N * V === 0) return;
      const counted = ctx.pool.acquire(Math.max(1, N) * 8);
      const total = ctx.pool.acquire(16);
      const pc = ctx.pipeline("crossEntropyCounted", () => ({
        label: "crossEntropyCounted",
        uniforms: [["N", "u32"]],
        bindings: [["counted", "write", "array<vec2<f32>>"], ["targets", "read", "array<i32>"]],
        body: `${LINEAR_INDEX(WG)}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let r = linearIndex(gid, nwg);
  if (r >= u.N) { return; }
  counted[r] = vec2<f32>(0.0, select(0.0, 1.0, targets[r] >= 0));
}`,
      }));
      ctx.dispatch(pc, [counted, targets], [N], grid1d(N, WG));
      sumTerms(total, counted, N);
      const p = ctx.pipeline("crossEntropyBackward", () => ({
        label: "crossEntropyBackward",
        uniforms: [["n", "u32"], ["V", "u32"]],
        bindings: [
          ["dlogits", "write", "array<f32>"],
          ["dloss", "read", "array<f32>"],
          ["logits", "read", "array<f32>"],
          ["lse", "read", "array<f32>"],
          ["targets", "read", "array<i32>"],
          ["total", "read", "array<vec2<f32>>"],
        ],
        body: `${LINEAR_INDEX(WG)}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = linearIndex(gid, nwg);
  if (i >= u.n) { return; }
  let r = i / u.V;
  let j = i - r * u.V;
  let tgt = targets[r];
  let count = total[0].y;
  let g = select(0.0, dloss[0] / count, count > 0.0);
  let p = exp(logits[i] - lse[r]);
  dlogits[i] = select(0.0, g * (p - select(0.0, 1.0, i32(j) == tgt)), tgt >= 0);
}`,
      }));
      ctx.dispatch(p, [dlogits, dloss, logits, lse, targets, total], [N * V, V], grid1d(N * V, WG));
      ctx.pool.release(counted);
      ctx.pool.release(total);
    },
  };
}
