/**
 * Materialised attention in WGSL, the O(T^2)-memory baseline the showdown measures the tiled
 * kernel against (semantics of backend/ref/attention.ts attentionNaive*): probs (B, H, T, S)
 * is written out by a softmax kernel with one workgroup per query row, then read by plain
 * one-thread-per-output contractions. The backward pass writes dS (B, H, T, S) the same way and
 * sums each gradient element in one thread, so no atomics are needed.
 */
import type { AttentionDims, CoreKernels } from "../kernels.js";
import type { GpuContext, KernelDef } from "./context.js";
import { grid1d } from "./context.js";
import type { GpuTensorBuffer } from "./pool.js";
import { LINEAR_INDEX } from "./wgsl.js";

type S = GpuTensorBuffer;
const WG = 64;

const UNIFORMS: KernelDef["uniforms"] = [
  ["n", "u32"],
  ["T", "u32"],
  ["S", "u32"],
  ["H", "u32"],
  ["G", "u32"],
  ["K", "u32"],
  ["kvRows", "u32"],
  ["qOffset", "i32"],
  ["causal", "u32"],
  ["scale", "f32"],
];

const uniformValues = (n: number, d: AttentionDims) => [n, d.T, d.S, d.H, d.G, d.K, d.kvRows, d.qOffset, d.causal ? 1 : 0, d.scale];

const COMMON = /* wgsl */ `
fn qRow(b: u32, t: u32, h: u32) -> u32 { return ((b * u.T + t) * u.H + h) * u.K; }
fn kvRow(b: u32, j: u32, g: u32) -> u32 { return ((b * u.kvRows + j) * u.G + g) * u.K; }
/** keys visible to query t */
fn visibleCount(t: u32) -> u32 {
  if (u.causal == 0u) { return u.S; }
  return u32(clamp(u.qOffset + i32(t) + 1, 0, i32(u.S)));
}
var<workgroup> red: array<f32, ${WG}>;
fn reduce(v: f32, lid: u32, isMax: bool) -> f32 {
  red[lid] = v;
  workgroupBarrier();
  for (var s = ${WG / 2}u; s > 0u; s = s >> 1u) {
    if (lid < s) { red[lid] = select(red[lid] + red[lid + s], max(red[lid], red[lid + s]), isMax); }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}
`;

/** One workgroup per row (b, h, t) of the (B, H, T, S) matrices; `body` sees b, h, t, g, row. */
function rowKernel(label: string, bindings: KernelDef["bindings"], body: string): KernelDef {
  return {
    label,
    uniforms: UNIFORMS,
    bindings,
    body: `${COMMON}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let rowIdx = wid.y * nwg.x + wid.x;
  if (rowIdx >= u.n) { return; }
  let t = rowIdx % u.T;
  let h = (rowIdx / u.T) % u.H;
  let b = rowIdx / (u.T * u.H);
  let g = h / (u.H / u.G);
  let row = rowIdx * u.S;
  ${body}
}`,
  };
}

/** One thread per element of an output; `body` sees i. */
function mapKernel(label: string, bindings: KernelDef["bindings"], body: string): KernelDef {
  return {
    label,
    uniforms: UNIFORMS,
    bindings,
    body: `${COMMON}${LINEAR_INDEX(WG)}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = linearIndex(gid, nwg);
  if (i >= u.n) { return; }
  ${body}
}`,
  };
}

export function naiveAttentionKernels(ctx: GpuContext): Pick<CoreKernels<S>, "attentionNaiveForward" | "attentionNaiveBackward"> {
  return {
    attentionNaiveForward(out, probs, q, k, v, d) {
      const rows = d.B * d.H * d.T;
      if (rows === 0) return;
      const ps = ctx.pipeline("attentionNaiveSoftmax", () =>
        rowKernel(
          "attentionNaiveSoftmax",
          [["probs", "write", "array<f32>"], ["q", "read", "array<f32>"], ["k", "read", "array<f32>"]],
          `let n = visibleCount(t);
  let qi = qRow(b, t, h);
  var m = -3.0e38;
  for (var j = lid; j < n; j += ${WG}u) {
    let kj = kvRow(b, j, g);
    var s = 0.0;
    for (var c = 0u; c < u.K; c++) { s += q[qi + c] * k[kj + c]; }
    s *= u.scale;
    probs[row + j] = s;
    m = max(m, s);
  }
  m = reduce(m, lid, true);
  var l = 0.0;
  for (var j = lid; j < n; j += ${WG}u) {
    let p = exp(probs[row + j] - m);
    probs[row + j] = p;
    l += p;
  }
  l = reduce(l, lid, false);
  for (var j = lid; j < u.S; j += ${WG}u) { probs[row + j] = select(0.0, probs[row + j] / l, j < n); }`,
        ),
      );
      ctx.dispatch(ps, [probs, q, k], uniformValues(rows, d), grid1d(rows, 1));
      const n = d.B * d.T * d.H * d.K;
      const pv = ctx.pipeline("attentionNaivePV", () =>
        mapKernel(
          "attentionNaivePV",
          [["out", "write", "array<f32>"], ["probs", "read", "array<f32>"], ["v", "read", "array<f32>"]],
          `let c = i % u.K;
  let h = (i / u.K) % u.H;
  let t = (i / (u.K * u.H)) % u.T;
  let b = i / (u.K * u.H * u.T);
  let g = h / (u.H / u.G);
  let row = ((b * u.H + h) * u.T + t) * u.S;
  let nv = visibleCount(t);
  var o = 0.0;
  for (var j = 0u; j < nv; j++) { o += probs[row + j] * v[kvRow(b, j, g) + c]; }
  out[i] = o;`,
        ),
      );
      ctx.dispatch(pv, [out, probs, v], uniformValues(n, d), grid1d(n, WG));
    },

    attentionNaiveBackward(dq, dk, dv, dout, q, k, v, probs, d) {
      const rows = d.B * d.H * d.T;
      const dS = ctx.pool.acquire(Math.max(1, rows * d.S) * 4);
      if (rows > 0) {
        const pd = ctx.pipeline("attentionNaiveDS", () =>
          rowKernel(
            "attentionNaiveDS",
            [["dS", "write", "array<f32>"], ["dout", "read", "array<f32>"], ["v", "read", "array<f32>"], ["probs", "read", "array<f32>"]],
            `let qi = qRow(b, t, h);
  var rowDot = 0.0;
  for (var j = lid; j < u.S; j += ${WG}u) {
    let vj = kvRow(b, j, g);
    var dp = 0.0;
    for (var c = 0u; c < u.K; c++) { dp += dout[qi + c] * v[vj + c]; }
    dS[row + j] = dp;
    rowDot += dp * probs[row + j];
  }
  rowDot = reduce(rowDot, lid, false);
  for (var j = lid; j < u.S; j += ${WG}u) { dS[row + j] = probs[row + j] * (dS[row + j] - rowDot); }`,
          ),
        );
        ctx.dispatch(pd, [dS, dout, v, probs], uniformValues(rows, d), grid1d(rows, 1));
        const nq = rows * d.K;
        const pq = ctx.pipeline("attentionNaiveDQ", () =>
          mapKernel(
            "attentionNaiveDQ",
            [["dq", "write", "array<f32>"], ["dS", "read", "array<f32>"], ["k", "read", "array<f32>"]],
            `let c = i % u.K;
  let h = (i / u.K) % u.H;
  let t = (i / (u.K * u.H)) % u.T;
  let b = i / (u.K * u.H * u.T);
  let g = h / (u.H / u.G);
  let row = ((b * u.H + h) * u.T + t) * u.S;
  var s = 0.0;
  for (var j = 0u; j < u.S; j++) { s += dS[row + j] * k[kvRow(b, j, g) + c]; }
  dq[i] = u.scale * s;`,
          ),
        );
        ctx.dispatch(pq, [dq, dS, k], uniformValues(nq, d), grid1d(nq, WG));
      }
      const nkv = d.B * d.kvRows * d.G * d.K;
      const pkv = ctx.pipeline("attentionNaiveDKV", () =>
        mapKernel(
          "attentionNaiveDKV",
          [["dk", "write", "array<f32>"], ["dv", "write", "array<f32>"], ["dS", "read", "array<f32>"], ["probs", "read", "array<f32>"], ["q", "read", "array<f32>"], ["dout", "read", "array<f32>"]],
          `let c = i % u.K;
  let g = (i / u.K) % u.G;
  let j = (i / (u.K * u.G)) % u.kvRows;
  let b = i / (u.K * u.G * u.kvRows);
  var sk = 0.0;
  var sv = 0.0;
  if (j < u.S) {
    let hPerG = u.H / u.G;
    for (var hh = 0u; hh < hPerG; hh++) {
      let h = g * hPerG + hh;
      for (var t = 0u; t < u.T; t++) {
        let at = ((b * u.H + h) * u.T + t) * u.S + j;
        let qi = qRow(b, t, h) + c;
        sk += dS[at] * q[qi];
        sv += probs[at] * dout[qi];
      }
    }
  }
  dk[i] = u.scale * sk;
  dv[i] = sv;`,
        ),
      );
      if (nkv > 0) ctx.dispatch(pkv, [dk, dv, dS, probs, q, dout], uniformValues(nkv, d), grid1d(nkv, WG));
      ctx.pool.release(dS);
    },
  };
}
