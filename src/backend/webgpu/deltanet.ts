/**
 * WGSL Gated DeltaNet kernels (semantics of backend/ref/deltanet.ts): the l2 norm (a workgroup
 * per row), the causal depthwise conv (a thread per element; the filter gradient a two-pass
 * reduction, conv_grad.ts), and the gated delta rule.
 *
 * The delta rule runs one workgroup per (batch, value head) with one thread per column e of the
 * (Dk x Dv) state, which it keeps in registers: every update of the rule,
 *   S <- exp(g) S;  S[:, e] += k beta (v[e] - S[:, e] . k);  o[e] = S[:, e] . (scale q),
 * only mixes a column with itself, so the token loop needs no reductions. This is the recurrent
 * form of the chunked kernel (the same states at every chunk start, which it writes for the
 * backward pass, and the same outputs to rounding); it is parallel over B * H * Dv threads.
 *
 * The backward recomputes each chunk's states from its start into a scratch of (chunk + 1)
 * states per head, then runs the reverse-mode step of the ref: column sums by the thread of the
 * column, row sums (dq, dk) by the thread of the row over the states and dS in the scratch.
 * dq and dk of a key head are summed over the value heads that read it in a second, ordered pass.
 */
import { SeqlabError } from "../../util/errors.js";
import type { DeltaNetDims, DeltaNetKernels } from "../kernels_deltanet.js";
import type { GpuContext } from "./context.js";
import { grid1d } from "./context.js";
import { LINEAR_INDEX, MATH } from "./wgsl.js";
import { flags, launch, segmentSum, Temps, type S } from "./kit.js";
import { convWeightGrad } from "./conv_grad.js";

const WG = 256;
const ROW_WG = 64;

const CONV_UNIFORMS: [string, "u32"][] = [["B", "u32"], ["T", "u32"], ["D", "u32"], ["W", "u32"]];

/** x at time t (as i32) of sequence b, channel ch; t < 0 reads the window (or 0). */
const CONV_INPUT = /* wgsl */ `
fn convInput(b: u32, t: i32, ch: u32) -> f32 {
  if (t >= 0) { return x[(b * u.T + u32(t)) * u.D + ch]; }
  if (HAS_WIN) { return win[(b * (u.W - 1u) + u32(i32(u.W) - 1 + t)) * u.D + ch]; }
  return 0.0;
}
`;

const RULE_UNIFORMS: [string, "u32" | "f32"][] = [["B", "u32"], ["T", "u32"], ["H", "u32"], ["G", "u32"], ["chunk", "u32"], ["K", "u32"], ["scale", "f32"], ["L", "u32"]];

export function deltanetKernels(ctx: GpuContext): DeltaNetKernels<S> {
  const forward = (out: S, finalState: S | null, chunkStates: S | null, q: S, k: S, v: S, g: S, beta: S, initialState: S | null, d: DeltaNetDims) => {
    const { Dk, Dv } = d;
    const wg = Math.max(Dk, Dv);
    if (wg > 256) throw new SeqlabError(`webgpu: delta rule head sizes ${Dk}, ${Dv} exceed 256`);
    const temps = new Temps(ctx);
    const f = flags({ HAS_IN: !!initialState, HAS_OUT: !!finalState, HAS_CKPT: !!chunkStates });
    launch(
      ctx,
      `deltanet:fwd:${Dk}:${Dv}:${f.key}`,
      () => ({
        label: "deltanet:fwd",
        uniforms: RULE_UNIFORMS,
        bindings: [
          ["out", "write", "array<f32>"], ["finalState", "write", "array<f32>"], ["ckpt", "write", "array<f32>"], ["q", "read", "array<f32>"], ["k", "read", "array<f32>"],
          ["v", "read", "array<f32>"], ["g", "read", "array<f32>"], ["beta", "read", "array<f32>"], ["initialState", "read", "array<f32>"],
        ],
        body: `${f.wgsl}${MATH}
const DK: u32 = ${Dk}u;
const DV: u32 = ${Dv}u;
var<workgroup> sq: array<f32, DK>;
var<workgroup> sk: array<f32, DK>;
@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) e: u32) {
  let bh = wid.y * nwg.x + wid.x;
  if (bh >= u.B * u.H) { return; }
  let b = bh / u.H;
  let h = bh % u.H;
  let kh = h / (u.H / u.G);
  let col = e < DV;
  var s: array<f32, DK>;
  for (var r = 0u; r < DK; r++) {
    s[r] = 0.0;
    if (HAS_IN && col) { s[r] = initialState[bh * DK * DV + r * DV + e]; }
  }
  for (var t = 0u; t < u.T; t++) {
    if (HAS_CKPT && col && t % u.chunk == 0u) {
      let o = (bh * u.K + t / u.chunk) * DK * DV;
      for (var r = 0u; r < DK; r++) { ckpt[o + r * DV + e] = s[r]; }
    }
    let qk = ((b * u.T + t) * u.G + kh) * DK;
    workgroupBarrier();
    if (e < DK) { sq[e] = q[qk + e] * u.scale; sk[e] = k[qk + e]; }
    workgroupBarrier();
    if (col) {
      let gb = (b * u.T + t) * u.H + h;
      let a = exp_(g[gb]);
      var kv = 0.0;
      for (var r = 0u; r < DK; r++) { s[r] = s[r] * a; kv += s[r] * sk[r]; }
      let delta = beta[gb] * (v[gb * DV + e] - kv);
      var o = 0.0;
      for (var r = 0u; r < DK; r++) { s[r] += sk[r] * delta; o += s[r] * sq[r]; }
      out[gb * DV + e] = o;
    }
  }
  if (HAS_OUT && col) { for (var r = 0u; r < DK; r++) { finalState[bh * DK * DV + r * DV + e] = s[r]; } }
}`,
      }),
      [out, temps.or(finalState), temps.or(chunkStates), q, k, v, g, beta, temps.or(initialState)],
      [d.B, d.T, d.H, d.G, d.chunk, Math.ceil(d.T / d.chunk), d.scale, 0],
      grid1d(d.B * d.H, 1),
    );
    temps.release();
  };

  return {
    l2normForward(out, rnorm, x, rows, C, eps) {
      if (rows === 0) return;
      launch(
        ctx,
        "l2norm:fwd",
        () => ({
          label: "l2norm:fwd",
          uniforms: [["rows", "u32"], ["C", "u32"], ["eps", "f32"]],
          bindings: [["out", "write", "array<f32>"], ["rnorm", "write", "array<f32>"], ["x", "read", "array<f32>"]],
          body: `${segmentSum("wsum", ROW_WG, "f32")}
@compute @workgroup_size(${ROW_WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row = wid.y * nwg.x + wid.x;
  if (row >= u.rows) { return; }
  let base = row * u.C;
  var ss = 0.0;
  for (var c = lid; c < u.C; c += ${ROW_WG}u) { ss += x[base + c] * x[base + c]; }
  let s = 1.0 / sqrt(wsum(ss, lid, ${ROW_WG}u) + u.eps);
  if (lid == 0u) { rnorm[row] = s; }
  for (var c = lid; c < u.C; c += ${ROW_WG}u) { out[base + c] = x[base + c] * s; }
}`,
        }),
        [out, rnorm, x],
        [rows, C, eps],
        grid1d(rows, 1),
      );
    },

    l2normBackward(dx, dy, x, rnorm, rows, C) {
      if (rows === 0) return;
      launch(
        ctx,
        "l2norm:bwd",
        () => ({
          label: "l2norm:bwd",
          uniforms: [["rows", "u32"], ["C", "u32"]],
          bindings: [["dx", "write", "array<f32>"], ["dy", "read", "array<f32>"], ["x", "read", "array<f32>"], ["rnorm", "read", "array<f32>"]],
          body: `${segmentSum("wsum", ROW_WG, "f32")}
@compute @workgroup_size(${ROW_WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row = wid.y * nwg.x + wid.x;
  if (row >= u.rows) { return; }
  let base = row * u.C;
  var p = 0.0;
  for (var c = lid; c < u.C; c += ${ROW_WG}u) { p += x[base + c] * dy[base + c]; }
  let dot = wsum(p, lid, ${ROW_WG}u);
  let s = rnorm[row];
  for (var c = lid; c < u.C; c += ${ROW_WG}u) { dx[base + c] = s * dy[base + c] - x[base + c] * s * s * s * dot; }
}`,
        }),
        [dx, dy, x, rnorm],
        [rows, C],
        grid1d(rows, 1),
      );
    },

    deltanetConvForward(out, windowOut, x, w, windowIn, d) {
      const { B, T, D, W } = d;
      const temps = new Temps(ctx);
      const f = flags({ HAS_WIN: !!windowIn });
      const bindings: [string, "read" | "write", string][] = [["out", "write", "array<f32>"], ["x", "read", "array<f32>"], ["w", "read", "array<f32>"], ["win", "read", "array<f32>"]];
      launch(
        ctx,
        `dnconv:fwd:${f.key}`,
        () => ({
          label: "dnconv:fwd",
          uniforms: CONV_UNIFORMS,
          bindings,
          body: `${f.wgsl}${LINEAR_INDEX(WG)}${CONV_INPUT}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = linearIndex(gid, nwg);
  if (i >= u.B * u.T * u.D) { return; }
  let ch = i % u.D;
  let t = (i / u.D) % u.T;
  let b = i / (u.D * u.T);
  var s = 0.0;
  for (var j = 0u; j < u.W; j++) { s += w[ch * u.W + j] * convInput(b, i32(t) - i32(u.W) + 1 + i32(j), ch); }
  out[i] = s;
}`,
        }),
        [out, x, w, temps.or(windowIn)],
        [B, T, D, W],
        grid1d(B * T * D, WG),
      );
      if (windowOut && W > 1) {
        launch(
          ctx,
          `dnconv:window:${f.key}`,
          () => ({
            label: "dnconv:window",
            uniforms: CONV_UNIFORMS,
            bindings,
            body: `${f.wgsl}${LINEAR_INDEX(WG)}${CONV_INPUT}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = linearIndex(gid, nwg);
  let S = u.W - 1u;
  if (i >= u.B * S * u.D) { return; }
  let ch = i % u.D;
  let r = (i / u.D) % S;
  let b = i / (u.D * S);
  out[i] = convInput(b, i32(u.T) - i32(S) + i32(r), ch);
}`,
          }),
          [windowOut, x, w, temps.or(windowIn)],
          [B, T, D, W],
          grid1d(B * (W - 1) * D, WG),
        );
      }
      temps.release();
    },

    deltanetConvBackward(dx, dw, dy, x, w, windowIn, d) {
      const { B, T, D, W } = d;
      launch(
        ctx,
        "dnconv:bwdx",
        () => ({
          label: "dnconv:bwdx",
          uniforms: CONV_UNIFORMS,
          bindings: [["dx", "write", "array<f32>"], ["dy", "read", "array<f32>"], ["w", "read", "array<f32>"]],
          body: `${LINEAR_INDEX(WG)}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = linearIndex(gid, nwg);
  if (i >= u.B * u.T * u.D) { return; }
  let ch = i % u.D;
  let s = (i / u.D) % u.T;
  let b = i / (u.D * u.T);
  var acc = 0.0;
  for (var j = 0u; j < u.W; j++) {
    let t = s + u.W - 1u - j; // the output that read x[s] through tap j
    if (t < u.T) { acc += w[ch * u.W + j] * dy[(b * u.T + t) * u.D + ch]; }
  }
  dx[i] = acc;
}`,
        }),
        [dx, dy, w],
        [B, T, D, W],
        grid1d(B * T * D, WG),
      );
      convWeightGrad(ctx, "dnconv:bwdw", { dweight: dw, dbias: null, dout: dy, x, stateIn: windowIn, accumulate: true }, B, T, D, W);
    },

    deltanetForward: forward,

    deltanetStep(out, state, q, k, v, g, beta, d) {
      forward(out, state, null, q, k, v, g, beta, state, { ...d, T: 1, chunk: 1 });
    },

    deltanetBackward(dq, dk, dv, dg, dbeta, dout, q, k, v, g, beta, chunkStates, d) {
      const { B, T, H, G, Dk, Dv, chunk } = d;
      const wg = Math.max(Dk, Dv);
      if (wg > 256) throw new SeqlabError(`webgpu: delta rule head sizes ${Dk}, ${Dv} exceed 256`);
      const temps = new Temps(ctx);
      const K = Math.ceil(T / chunk);
      const L = Math.min(chunk, T);
      const n = Dk * Dv;
      const BTH = B * T * H;
      // grads: dq, dk per value head (B, T, H, Dk each) | dg | dbeta (B, T, H)
      const grads = temps.get(2 * BTH * Dk + 2 * BTH);
      // per head: L + 1 states, then dS
      const scratch = temps.get(B * H * (L + 2) * n);
      launch(
        ctx,
        `deltanet:bwd:${Dk}:${Dv}`,
        () => ({
          label: "deltanet:bwd",
          uniforms: RULE_UNIFORMS,
          bindings: [
            ["dv", "write", "array<f32>"], ["grads", "write", "array<f32>"], ["scr", "write", "array<f32>"], ["dout", "read", "array<f32>"], ["q", "read", "array<f32>"],
            ["k", "read", "array<f32>"], ["v", "read", "array<f32>"], ["g", "read", "array<f32>"], ["beta", "read", "array<f32>"], ["ckpt", "read", "array<f32>"],
          ],
          body: `${MATH}
const DK: u32 = ${Dk}u;
const DV: u32 = ${Dv}u;
const NS: u32 = ${n}u;
var<workgroup> sq: array<f32, DK>;
var<workgroup> sk: array<f32, DK>;
var<workgroup> sdo: array<f32, DV>;
var<workgroup> sdelta: array<f32, DV>;
var<workgroup> sdkv: array<f32, DV>;
var<workgroup> sdb: array<f32, DV>;
var<workgroup> sdg: array<f32, DV>;
fn sync() { storageBarrier(); workgroupBarrier(); }
@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) e: u32) {
  let bh = wid.y * nwg.x + wid.x;
  if (bh >= u.B * u.H) { return; }
  let b = bh / u.H;
  let h = bh % u.H;
  let kh = h / (u.H / u.G);
  let col = e < DV;
  let base = bh * (u.L + 2u) * NS;
  let dsBase = base + (u.L + 1u) * NS;
  let BTH = u.B * u.T * u.H;
  var ds: array<f32, DK>;
  var sp: array<f32, DK>;
  for (var r = 0u; r < DK; r++) { ds[r] = 0.0; }
  for (var c = u.K; c > 0u; c--) {
    let t0 = (c - 1u) * u.chunk;
    let t1 = min(u.T, t0 + u.chunk);
    sync();
    // the chunk's states, column e: states[i] before token t0 + i
    var s: array<f32, DK>;
    if (col) {
      for (var r = 0u; r < DK; r++) { s[r] = ckpt[(bh * u.K + c - 1u) * NS + r * DV + e]; scr[base + r * DV + e] = s[r]; }
    }
    for (var t = t0; t < t1; t++) {
      let qk = ((b * u.T + t) * u.G + kh) * DK;
      workgroupBarrier();
      if (e < DK) { sk[e] = k[qk + e]; }
      workgroupBarrier();
      if (col) {
        let gb = (b * u.T + t) * u.H + h;
        let a = exp_(g[gb]);
        var kv = 0.0;
        for (var r = 0u; r < DK; r++) { s[r] = s[r] * a; kv += s[r] * sk[r]; }
        let delta = beta[gb] * (v[gb * DV + e] - kv);
        let so = base + (t - t0 + 1u) * NS;
        for (var r = 0u; r < DK; r++) { s[r] += sk[r] * delta; scr[so + r * DV + e] = s[r]; }
      }
    }
    for (var t = t1; t > t0; t--) {
      let tt = t - 1u;
      let qk = ((b * u.T + tt) * u.G + kh) * DK;
      let gb = (b * u.T + tt) * u.H + h;
      let prev = base + (tt - t0) * NS;
      let next = prev + NS;
      let a = exp_(g[gb]);
      let bt = beta[gb];
      sync();
      if (e < DK) { sq[e] = q[qk + e] * u.scale; sk[e] = k[qk + e]; }
      if (col) { sdo[e] = dout[gb * DV + e]; }
      workgroupBarrier();
      // column e: the forward quantities, then dS += scale q do^T, ddelta, dv, dP, dg
      if (col) {
        var kv = 0.0;
        for (var r = 0u; r < DK; r++) { sp[r] = a * scr[prev + r * DV + e]; kv += sp[r] * sk[r]; }
        let vk = v[gb * DV + e] - kv;
        let delta = bt * vk;
        let doe = sdo[e];
        var ddelta = 0.0;
        for (var r = 0u; r < DK; r++) {
          ds[r] += sq[r] * doe;
          ddelta += ds[r] * sk[r];
          scr[dsBase + r * DV + e] = ds[r];
        }
        dv[gb * DV + e] = bt * ddelta;
        let dkv = -bt * ddelta;
        var dgp = 0.0;
        for (var r = 0u; r < DK; r++) {
          let dP = ds[r] + sk[r] * dkv;
          dgp += dP * sp[r];
          ds[r] = a * dP;
        }
        sdelta[e] = delta;
        sdkv[e] = dkv;
        sdb[e] = ddelta * vk;
        sdg[e] = dgp;
      }
      sync();
      // row e: dq = S_t do (scale), dk = dS delta + P dkv
      if (e < DK) {
        var dqr = 0.0;
        var dkr = 0.0;
        for (var j = 0u; j < DV; j++) {
          dqr += scr[next + e * DV + j] * sdo[j];
          dkr += scr[dsBase + e * DV + j] * sdelta[j] + a * scr[prev + e * DV + j] * sdkv[j];
        }
        grads[gb * DK + e] = dqr * u.scale;
        grads[BTH * DK + gb * DK + e] = dkr;
      }
      if (e == 0u) {
        var dbs = 0.0;
        var dgs = 0.0;
        for (var j = 0u; j < DV; j++) { dbs += sdb[j]; dgs += sdg[j]; }
        grads[2u * BTH * DK + gb] = dgs;
        grads[2u * BTH * DK + BTH + gb] = dbs;
      }
    }
  }
}`,
        }),
        [dv, grads, scratch, dout, q, k, v, g, beta, chunkStates],
        [B, T, H, G, chunk, K, d.scale, L],
        grid1d(B * H, 1),
      );
      // dq, dk of each key head: the sum over the value heads that read it, in order
      launch(
        ctx,
        "deltanet:headsum",
        () => ({
          label: "deltanet:headsum",
          uniforms: [["B", "u32"], ["T", "u32"], ["H", "u32"], ["G", "u32"], ["Dk", "u32"]],
          bindings: [["dq", "write", "array<f32>"], ["dk", "write", "array<f32>"], ["grads", "read", "array<f32>"]],
          body: `${LINEAR_INDEX(WG)}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = linearIndex(gid, nwg);
  if (i >= u.B * u.T * u.G * u.Dk) { return; }
  let r = i % u.Dk;
  let kh = (i / u.Dk) % u.G;
  let bt = i / (u.Dk * u.G);
  let per = u.H / u.G;
  let BTHD = u.B * u.T * u.H * u.Dk;
  var sq = 0.0;
  var sk = 0.0;
  for (var h = kh * per; h < (kh + 1u) * per; h++) {
    let o = (bt * u.H + h) * u.Dk + r;
    sq += grads[o];
    sk += grads[BTHD + o];
  }
  dq[i] = sq;
  dk[i] = sk;
}`,
        }),
        [dq, dk, grads],
        [B, T, H, G, Dk],
        grid1d(B * T * G * Dk, WG),
      );
      ctx.copy(grads, 2 * BTH * Dk * 4, dg.buffer, 0, BTH * 4);
      ctx.copy(grads, (2 * BTH * Dk + BTH) * 4, dbeta.buffer, 0, BTH * 4);
      temps.release();
    },
  };
}
