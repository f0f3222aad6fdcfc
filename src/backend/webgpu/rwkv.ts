/**
 * WGSL RWKV kernels (semantics of backend/ref/rwkv.ts).
 *
 * WKV-4: one thread per (batch, channel) walks time in HF's max-tracking form; the backward runs
 * the adjoint recurrence in the same form (see the ref for the equations).
 *
 * WKV-7: one workgroup per (batch, head), one thread per row i of the N x N state, which it
 * keeps in registers (S_t = S diag(w) + (S a) b^T + v k^T only mixes a row with itself). The
 * step's vectors are staged in workgroup memory. The backward recomputes each chunk's states
 * from its checkpoint into a scratch of (chunk + 1) states per head (the contract of
 * kernels_rwkv.ts), then per step: row sums (dv, S a, G b) by the thread of the row, column sums
 * (dr, dk, dw, db, da) by the thread of the column over the state and G in that scratch.
 *
 * Kernels have a limited number of storage bindings (12 on SwiftShader), so some outputs are
 * written to one temporary buffer and copied out.
 */
import { SeqlabError } from "../../util/errors.js";
import { WKV4_EMPTY_MAX, type RwkvKernels } from "../kernels_rwkv.js";
import type { GpuContext } from "./context.js";
import { grid1d } from "./context.js";
import { LINEAR_INDEX, MATH } from "./wgsl.js";
import { flags, launch, Temps, type S } from "./kit.js";

const WG = 64;
const EMPTY = `${WKV4_EMPTY_MAX.toExponential()}`;

export function rwkvKernels(ctx: GpuContext): RwkvKernels<S> {
  const wkv4Forward = (y: S, stateOut: S | null, saved: S | null, w: S, u: S, k: S, v: S, state0: S | null, d: { B: number; T: number; D: number }) => {
    const temps = new Temps(ctx);
    const f = flags({ HAS_IN: !!state0, HAS_OUT: !!stateOut, HAS_SAVED: !!saved });
    launch(
      ctx,
      `wkv4:fwd:${f.key}`,
      () => ({
        label: "wkv4:fwd",
        uniforms: [["B", "u32"], ["T", "u32"], ["D", "u32"]],
        bindings: [
          ["y", "write", "array<f32>"], ["stateOut", "write", "array<f32>"], ["saved", "write", "array<f32>"],
          ["w", "read", "array<f32>"], ["uu", "read", "array<f32>"], ["k", "read", "array<f32>"], ["v", "read", "array<f32>"], ["state0", "read", "array<f32>"],
        ],
        body: `${f.wgsl}${MATH}${LINEAR_INDEX(WG)}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = linearIndex(gid, nwg);
  if (i >= u.B * u.D) { return; }
  let b = i / u.D;
  let c = i % u.D;
  let D = u.D;
  var aa = 0.0;
  var bb = 0.0;
  var pp = ${EMPTY};
  if (HAS_IN) { aa = state0[b * 3u * D + c]; bb = state0[b * 3u * D + D + c]; pp = state0[b * 3u * D + 2u * D + c]; }
  let wc = w[c];
  let uc = uu[c];
  for (var t = 0u; t < u.T; t++) {
    let j = (b * u.T + t) * D + c;
    if (HAS_SAVED) {
      let o = (b * u.T + t) * 3u * D + c;
      saved[o] = aa;
      saved[o + D] = bb;
      saved[o + 2u * D] = pp;
    }
    let kt = k[j];
    let vt = v[j];
    let uk = uc + kt;
    let p = max(pp, uk);
    let e1 = exp_(pp - p);
    let e2 = exp_(uk - p);
    y[j] = (e1 * aa + e2 * vt) / (e1 * bb + e2);
    let wp = wc + pp;
    let q = max(wp, kt);
    let f1 = exp_(wp - q);
    let f2 = exp_(kt - q);
    aa = f1 * aa + f2 * vt;
    bb = f1 * bb + f2;
    pp = q;
  }
  if (HAS_OUT) { stateOut[b * 3u * D + c] = aa; stateOut[b * 3u * D + D + c] = bb; stateOut[b * 3u * D + 2u * D + c] = pp; }
}`,
      }),
      [y, temps.or(stateOut), temps.or(saved), w, u, k, v, temps.or(state0)],
      [d.B, d.T, d.D],
      grid1d(d.B * d.D, WG),
    );
    temps.release();
  };

  const wkv7Forward = (y: S, stateOut: S | null, checkpoints: S | null, r: S, w: S, k: S, v: S, a: S, b: S, state0: S | null, d: { B: number; T: number; H: number; N: number; chunk: number }) => {
    if (d.N > 256) throw new SeqlabError(`webgpu: wkv7 head size ${d.N} exceeds 256`);
    const temps = new Temps(ctx);
    const f = flags({ HAS_IN: !!state0, HAS_OUT: !!stateOut, HAS_CKPT: !!checkpoints });
    const N = d.N;
    launch(
      ctx,
      `wkv7:fwd:${N}:${f.key}`,
      () => ({
        label: "wkv7:fwd",
        uniforms: [["B", "u32"], ["T", "u32"], ["H", "u32"], ["chunk", "u32"], ["K", "u32"]],
        bindings: [
          ["y", "write", "array<f32>"], ["stateOut", "write", "array<f32>"], ["ckpt", "write", "array<f32>"], ["r", "read", "array<f32>"], ["w", "read", "array<f32>"],
          ["k", "read", "array<f32>"], ["v", "read", "array<f32>"], ["a", "read", "array<f32>"], ["bb", "read", "array<f32>"], ["state0", "read", "array<f32>"],
        ],
        body: `${f.wgsl}
const N: u32 = ${N}u;
var<workgroup> sh: array<f32, ${5 * N}>;
@compute @workgroup_size(${N})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) i: u32) {
  let bh = wid.y * nwg.x + wid.x;
  if (bh >= u.B * u.H) { return; }
  let bi = bh / u.H;
  let h = bh % u.H;
  var s: array<f32, N>;
  for (var j = 0u; j < N; j++) {
    s[j] = 0.0;
    if (HAS_IN) { s[j] = state0[(bh * N + i) * N + j]; }
  }
  for (var t = 0u; t < u.T; t++) {
    if (HAS_CKPT && t % u.chunk == 0u) {
      let o = (((bi * u.K + t / u.chunk) * u.H + h) * N + i) * N;
      for (var j = 0u; j < N; j++) { ckpt[o + j] = s[j]; }
    }
    let o = ((bi * u.T + t) * u.H + h) * N;
    workgroupBarrier();
    sh[i] = r[o + i];
    sh[N + i] = w[o + i];
    sh[2u * N + i] = k[o + i];
    sh[3u * N + i] = a[o + i];
    sh[4u * N + i] = bb[o + i];
    workgroupBarrier();
    let vi = v[o + i];
    var sa = 0.0;
    for (var j = 0u; j < N; j++) { sa += s[j] * sh[3u * N + j]; }
    var yi = 0.0;
    for (var j = 0u; j < N; j++) {
      s[j] = s[j] * sh[N + j] + sa * sh[4u * N + j] + vi * sh[2u * N + j];
      yi += s[j] * sh[j];
    }
    y[o + i] = yi;
  }
  if (HAS_OUT) { for (var j = 0u; j < N; j++) { stateOut[(bh * N + i) * N + j] = s[j]; } }
}`,
      }),
      [y, temps.or(stateOut), temps.or(checkpoints), r, w, k, v, a, b, temps.or(state0)],
      [d.B, d.T, d.H, d.chunk, Math.ceil(d.T / d.chunk)],
      grid1d(d.B * d.H, 1),
    );
    temps.release();
  };

  return {
    wkv4Forward,

    wkv4Step(y, state, w, u, k, v, d) {
      wkv4Forward(y, state, null, w, u, k, v, state, { B: d.B, T: 1, D: d.D });
    },

    wkv4Backward(dw, du, dk, dv, dstate0, dy, dstateT, w, u, k, v, y, saved, d) {
      const { B, T, D } = d;
      const temps = new Temps(ctx);
      // dw | du | dstate0, copied out below
      const small = temps.get(2 * B * D + 3 * B * D);
      const f = flags({ HAS_GT: !!dstateT });
      launch(
        ctx,
        `wkv4:bwd:${f.key}`,
        () => ({
          label: "wkv4:bwd",
          uniforms: [["B", "u32"], ["T", "u32"], ["D", "u32"]],
          bindings: [
            ["dk", "write", "array<f32>"], ["dv", "write", "array<f32>"], ["small", "write", "array<f32>"], ["dy", "read", "array<f32>"], ["dstateT", "read", "array<f32>"],
            ["w", "read", "array<f32>"], ["uu", "read", "array<f32>"], ["k", "read", "array<f32>"], ["v", "read", "array<f32>"], ["y", "read", "array<f32>"], ["saved", "read", "array<f32>"],
          ],
          body: `${f.wgsl}${MATH}${LINEAR_INDEX(WG)}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = linearIndex(gid, nwg);
  if (i >= u.B * u.D) { return; }
  let b = i / u.D;
  let c = i % u.D;
  let D = u.D;
  let T = u.T;
  let wc = w[c];
  let uc = uu[c];
  // the final state: one update past the last saved state
  let sl = (b * T + T - 1u) * 3u * D + c;
  let jl = (b * T + T - 1u) * D + c;
  let lwp = wc + saved[sl + 2u * D];
  let lq = max(lwp, k[jl]);
  let la = exp_(lwp - lq) * saved[sl] + exp_(k[jl] - lq) * v[jl];
  let lb = exp_(lwp - lq) * saved[sl + D] + exp_(k[jl] - lq);
  var ga = 0.0;
  var gb = 0.0;
  var gp = ${EMPTY};
  var gMaxRest = 0.0;
  if (HAS_GT) {
    let o = b * 3u * D + c;
    ga = dstateT[o];
    gb = dstateT[o + D];
    gp = -lq;
    gMaxRest = dstateT[o + 2u * D] - ga * la - gb * lb;
  }
  var gw = 0.0;
  var gu = 0.0;
  var maxPathOpen = gMaxRest != 0.0;
  for (var t = T; t > 0u; t--) {
    let j = (b * T + t - 1u) * D + c;
    let so = (b * T + t - 1u) * 3u * D + c;
    let saa = saved[so];
    let sbb = saved[so + D];
    let spp = saved[so + 2u * D];
    let kt = k[j];
    let vt = v[j];
    let yt = y[j];
    let uk = uc + kt;
    let p = max(spp, uk);
    let e1 = exp_(spp - p);
    let e2 = exp_(uk - p);
    let q = dy[j] / (e1 * sbb + e2);
    let eNext = exp_(kt + gp);
    var dkt = q * e2 * (vt - yt) + eNext * (ga * vt + gb);
    dv[j] = q * e2 + eNext * ga;
    gu += q * e2 * (vt - yt);
    gw += exp_(wc + spp + gp) * (saa * ga + sbb * gb);
    if (maxPathOpen && kt >= wc + spp) {
      dkt += gMaxRest;
      gw += gMaxRest * f32(T - t); // T - 1 - (time index t - 1)
      maxPathOpen = false;
    }
    dk[j] = dkt;
    let wg = wc + gp;
    let np = max(wg, -p);
    let f1 = exp_(wg - np);
    let f2 = exp_(-p - np);
    ga = f1 * ga + f2 * q;
    gb = f1 * gb - f2 * q * yt;
    gp = np;
  }
  if (maxPathOpen) { gw += gMaxRest * f32(T); }
  small[i] = gw;
  small[u.B * D + i] = gu;
  let s0 = b * T * 3u * D + c;
  let scale = exp_(gp + saved[s0 + 2u * D]);
  let o = 2u * u.B * D + b * 3u * D + c;
  small[o] = ga * scale;
  small[o + D] = gb * scale;
  small[o + 2u * D] = (ga * saved[s0] + gb * saved[s0 + D]) * scale + select(0.0, gMaxRest, maxPathOpen);
}`,
        }),
        [dk, dv, small, dy, temps.or(dstateT), w, u, k, v, y, saved],
        [B, T, D],
        grid1d(B * D, WG),
      );
      ctx.copy(small, 0, dw.buffer, 0, B * D * 4);
      ctx.copy(small, B * D * 4, du.buffer, 0, B * D * 4);
      if (dstate0) ctx.copy(small, 2 * B * D * 4, dstate0.buffer, 0, 3 * B * D * 4);
      temps.release();
    },

    wkv7Forward,

    wkv7Step(y, state, r, w, k, v, a, b, d) {
      wkv7Forward(y, state, null, r, w, k, v, a, b, state, { B: d.B, T: 1, H: d.H, N: d.N, chunk: 1 });
    },

    wkv7Backward(dr, dw, dk, dv, da, db, dstate0, dy, dstateT, r, w, k, v, a, b, checkpoints, d) {
      const { B, T, H, N, chunk } = d;
      if (N > 256) throw new SeqlabError(`webgpu: wkv7 head size ${N} exceeds 256`);
      const temps = new Temps(ctx);
      const BTHN = B * T * H * N;
      const NN = N * N;
      // grads: dr | dw | dk | dv | da | db (B, T, H, N each) | dstate0 (B, H, N, N)
      const grads = temps.get(6 * BTHN + B * H * NN);
      // per head: chunk + 1 states, then G = dL/dS
      const Lmax = Math.min(chunk, T);
      const scratch = temps.get(B * H * (Lmax + 2) * NN);
      const f = flags({ HAS_GT: !!dstateT });
      launch(
        ctx,
        `wkv7:bwd:${N}:${f.key}`,
        () => ({
          label: "wkv7:bwd",
          uniforms: [["B", "u32"], ["T", "u32"], ["H", "u32"], ["chunk", "u32"], ["K", "u32"], ["L", "u32"]],
          bindings: [
            ["grads", "write", "array<f32>"], ["scr", "write", "array<f32>"], ["dy", "read", "array<f32>"], ["dstateT", "read", "array<f32>"], ["r", "read", "array<f32>"],
            ["w", "read", "array<f32>"], ["k", "read", "array<f32>"], ["v", "read", "array<f32>"], ["a", "read", "array<f32>"], ["bb", "read", "array<f32>"], ["ckpt", "read", "array<f32>"],
          ],
          body: `${f.wgsl}
const N: u32 = ${N}u;
const NN: u32 = ${NN}u;
// dy r w k v a b, then S_(t-1) a and G b of every row
var<workgroup> sh: array<f32, ${9 * N}>;
fn sync() { storageBarrier(); workgroupBarrier(); }
@compute @workgroup_size(${N})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) i: u32) {
  let bh = wid.y * nwg.x + wid.x;
  if (bh >= u.B * u.H) { return; }
  let bi = bh / u.H;
  let h = bh % u.H;
  let base = bh * (u.L + 2u) * NN;
  let gBase = base + (u.L + 1u) * NN;
  let BTHN = u.B * u.T * u.H * N;
  var g: array<f32, N>;
  for (var j = 0u; j < N; j++) {
    g[j] = 0.0;
    if (HAS_GT) { g[j] = dstateT[(bh * N + i) * N + j]; }
  }
  for (var c = u.K; c > 0u; c--) {
    sync();
    let t0 = (c - 1u) * u.chunk;
    let t1 = min(u.T, t0 + u.chunk);
    // the chunk's states, row i: states[m] after m steps
    var s: array<f32, N>;
    let co = (((bi * u.K + c - 1u) * u.H + h) * N + i) * N;
    for (var j = 0u; j < N; j++) { s[j] = ckpt[co + j]; scr[base + i * N + j] = s[j]; }
    for (var t = t0; t < t1; t++) {
      let o = ((bi * u.T + t) * u.H + h) * N;
      workgroupBarrier();
      sh[i] = w[o + i];
      sh[N + i] = k[o + i];
      sh[2u * N + i] = a[o + i];
      sh[3u * N + i] = bb[o + i];
      workgroupBarrier();
      let vi = v[o + i];
      var sa = 0.0;
      for (var j = 0u; j < N; j++) { sa += s[j] * sh[2u * N + j]; }
      let so = base + (t - t0 + 1u) * NN + i * N;
      for (var j = 0u; j < N; j++) {
        s[j] = s[j] * sh[j] + sa * sh[3u * N + j] + vi * sh[N + j];
        scr[so + j] = s[j];
      }
    }
    for (var t = t1; t > t0; t--) {
      let tt = t - 1u;
      let o = ((bi * u.T + tt) * u.H + h) * N;
      let prev = base + (tt - t0) * NN;
      let next = prev + NN;
      sync();
      sh[i] = dy[o + i];
      sh[N + i] = r[o + i];
      sh[2u * N + i] = w[o + i];
      sh[3u * N + i] = k[o + i];
      sh[4u * N + i] = v[o + i];
      sh[5u * N + i] = a[o + i];
      sh[6u * N + i] = bb[o + i];
      workgroupBarrier();
      // row i: G += dy r^T, then S_(t-1) a, G k, G b
      let dyi = sh[i];
      var sa = 0.0;
      var gk = 0.0;
      var gbv = 0.0;
      for (var j = 0u; j < N; j++) {
        g[j] += dyi * sh[N + j];
        sa += scr[prev + i * N + j] * sh[5u * N + j];
        gk += g[j] * sh[3u * N + j];
        gbv += g[j] * sh[6u * N + j];
        scr[gBase + i * N + j] = g[j];
      }
      grads[3u * BTHN + o + i] = gk;
      sh[7u * N + i] = sa;
      sh[8u * N + i] = gbv;
      sync();
      // column i: dr = S_t^T dy, dk = G^T v, dw, db = G^T sa, da = S_(t-1)^T dsa
      var dr_ = 0.0;
      var dk_ = 0.0;
      var dw_ = 0.0;
      var db_ = 0.0;
      var da_ = 0.0;
      for (var m = 0u; m < N; m++) {
        let gm = scr[gBase + m * N + i];
        let pm = scr[prev + m * N + i];
        dr_ += scr[next + m * N + i] * sh[m];
        dk_ += gm * sh[4u * N + m];
        dw_ += gm * pm;
        db_ += gm * sh[7u * N + m];
        da_ += sh[8u * N + m] * pm;
      }
      grads[o + i] = dr_;
      grads[BTHN + o + i] = dw_;
      grads[2u * BTHN + o + i] = dk_;
      grads[4u * BTHN + o + i] = da_;
      grads[5u * BTHN + o + i] = db_;
      // dS_(t-1) = G diag(w) + dsa a^T
      let dsai = sh[8u * N + i];
      for (var j = 0u; j < N; j++) { g[j] = g[j] * sh[2u * N + j] + dsai * sh[5u * N + j]; }
    }
  }
  for (var j = 0u; j < N; j++) { grads[6u * BTHN + (bh * N + i) * N + j] = g[j]; }
}`,
        }),
        [grads, scratch, dy, temps.or(dstateT), r, w, k, v, a, b, checkpoints],
        [B, T, H, chunk, Math.ceil(T / chunk), Lmax],
        grid1d(B * H, 1),
      );
      [dr, dw, dk, dv, da, db].forEach((out, j) => ctx.copy(grads, j * BTHN * 4, out.buffer, 0, BTHN * 4));
      if (dstate0) ctx.copy(grads, 6 * BTHN * 4, dstate0.buffer, 0, B * H * NN * 4);
      temps.release();
    },
  };
}
