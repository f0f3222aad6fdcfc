/**
 * RWKV-4's WKV recurrence (see kernels_rwkv.ts; HF rwkv_linear_attention_cpu), each channel an
 * independent scalar recurrence in max-tracking form, vectorised over 4 channels: work items
 * are (sequence, block of 4 channels), with disjoint outputs (dw, du are per sequence).
 *   y_t = (e^(pp - p) aa + e^(u + k - p) v) / (e^(pp - p) bb + e^(u + k - p)),  p = max(pp, u + k)
 *   aa <- e^(w + pp - p') aa + e^(k - p') v,  bb <- e^(w + pp - p') bb + e^(k - p'),  pp <- p' = max(w + pp, k)
 * Exponents of the form x - max(x, ..) are <= 0 and use the cheaper expNegv; the backward's
 * other exponents (scales of the adjoint state) may be positive and use expv.
 */
import { splitLo, splitHi } from "./common";
import { expv, expNegv } from "./simd_math";
import { sp, load4, store4 } from "./mixer_common";

const EMPTY_MAX: f32 = -1e38;

@inline function output(aa: v128, bb: v128, pp: v128, uu: v128, kk: v128, vv: v128): v128 {
  const uk = f32x4.add(uu, kk);
  const p = f32x4.max(pp, uk);
  const e1 = expNegv(f32x4.sub(pp, p));
  const e2 = expNegv(f32x4.sub(uk, p));
  return f32x4.div(f32x4.add(f32x4.mul(e1, aa), f32x4.mul(e2, vv)), f32x4.add(f32x4.mul(e1, bb), e2));
}

/** The decay weights (e^(w + pp - p'), e^(k - p')) of one update, p' = max(w + pp, k). */
@inline function decayWeight(wp: v128, kk: v128): v128 {
  return expNegv(f32x4.sub(wp, f32x4.max(wp, kk)));
}

@inline function inputWeight(wp: v128, kk: v128): v128 {
  return expNegv(f32x4.sub(kk, f32x4.max(wp, kk)));
}

export function wkv4Forward(
  tid: i32, nth: i32, y: usize, stateOut: usize, saved: usize, w: usize, u: usize, k: usize, v: usize, state0: usize, B: i32, T: i32, D: i32,
): void {
  const groups = (D + 3) >> 2;
  const lo = splitLo(B * groups, tid, nth, 1);
  const hi = splitHi(B * groups, tid, nth, 1);
  const plane = <usize>D << 2;
  for (let it = lo; it < hi; it++) {
    const b = it / groups;
    const c = (it % groups) << 2;
    const len = min(4, D - c);
    const cb = <usize>c << 2;
    const s0 = state0 + ((<usize>b * 3 * D) << 2) + cb;
    let aa = state0 ? load4(s0, len) : sp(0);
    let bb = state0 ? load4(s0 + plane, len) : sp(0);
    let pp = state0 ? load4(s0 + 2 * plane, len) : sp(EMPTY_MAX);
    const ww = load4(w + cb, len);
    const uu = load4(u + cb, len);
    for (let t = 0; t < T; t++) {
      const i = ((<usize>(b * T + t) * D) << 2) + cb;
      if (saved) {
        const sv = saved + ((<usize>(b * T + t) * 3 * D) << 2) + cb;
        store4(sv, aa, len);
        store4(sv + plane, bb, len);
        store4(sv + 2 * plane, pp, len);
      }
      const kk = load4(k + i, len);
      const vv = load4(v + i, len);
      store4(y + i, output(aa, bb, pp, uu, kk, vv), len);
      const wp = f32x4.add(ww, pp);
      const e1 = decayWeight(wp, kk);
      const e2 = inputWeight(wp, kk);
      aa = f32x4.add(f32x4.mul(e1, aa), f32x4.mul(e2, vv));
      bb = f32x4.add(f32x4.mul(e1, bb), e2);
      pp = f32x4.max(wp, kk);
    }
    if (stateOut) {
      const so = stateOut + ((<usize>b * 3 * D) << 2) + cb;
      store4(so, aa, len);
      store4(so + plane, bb, len);
      store4(so + 2 * plane, pp, len);
    }
  }
}

export function wkv4Step(tid: i32, nth: i32, y: usize, state: usize, w: usize, u: usize, k: usize, v: usize, B: i32, D: i32): void {
  const groups = (D + 3) >> 2;
  const lo = splitLo(B * groups, tid, nth, 1);
  const hi = splitHi(B * groups, tid, nth, 1);
  const plane = <usize>D << 2;
  for (let it = lo; it < hi; it++) {
    const b = it / groups;
    const c = (it % groups) << 2;
    const len = min(4, D - c);
    const cb = <usize>c << 2;
    const s = state + ((<usize>b * 3 * D) << 2) + cb;
    const i = ((<usize>b * D) << 2) + cb;
    const aa = load4(s, len);
    const bb = load4(s + plane, len);
    const pp = load4(s + 2 * plane, len);
    const kk = load4(k + i, len);
    const vv = load4(v + i, len);
    store4(y + i, output(aa, bb, pp, load4(u + cb, len), kk, vv), len);
    const wp = f32x4.add(load4(w + cb, len), pp);
    const e1 = decayWeight(wp, kk);
    const e2 = inputWeight(wp, kk);
    store4(s, f32x4.add(f32x4.mul(e1, aa), f32x4.mul(e2, vv)), len);
    store4(s + plane, f32x4.add(f32x4.mul(e1, bb), e2), len);
    store4(s + 2 * plane, f32x4.max(wp, kk), len);
  }
}

/**
 * Gradients of wkv4Forward (the reference's reverse pass, ref/rwkv.ts wkv4Backward), per lane:
 * the adjoint (ga, gb) * e^gp of the numerator and denominator runs backwards, and the gradient
 * reaching the final state's exponent goes to the last key that won the max (a lane mask).
 */
export function wkv4Backward(
  tid: i32, nth: i32, dw: usize, du: usize, dk: usize, dv: usize, dstate0: usize, dy: usize, dstateT: usize,
  w: usize, u: usize, k: usize, v: usize, y: usize, saved: usize, B: i32, T: i32, D: i32,
): void {
  const groups = (D + 3) >> 2;
  const lo = splitLo(B * groups, tid, nth, 1);
  const hi = splitHi(B * groups, tid, nth, 1);
  const plane = <usize>D << 2;
  for (let it = lo; it < hi; it++) {
    const b = it / groups;
    const c = (it % groups) << 2;
    const len = min(4, D - c);
    const cb = <usize>c << 2;
    const wc = load4(w + cb, len);
    const uc = load4(u + cb, len);
    // the final state, one step past the last saved one
    const lastAt = saved + ((<usize>(b * T + T - 1) * 3 * D) << 2) + cb;
    const li = ((<usize>(b * T + T - 1) * D) << 2) + cb;
    const kl = load4(k + li, len);
    const wpl = f32x4.add(wc, load4(lastAt + 2 * plane, len));
    const le1 = decayWeight(wpl, kl);
    const le2 = inputWeight(wpl, kl);
    const lastA = f32x4.add(f32x4.mul(le1, load4(lastAt, len)), f32x4.mul(le2, load4(v + li, len)));
    const lastB = f32x4.add(f32x4.mul(le1, load4(lastAt + plane, len)), le2);
    const lastP = f32x4.max(wpl, kl);
    let ga = sp(0);
    let gb = sp(0);
    let gp = sp(EMPTY_MAX);
    let gMaxRest = sp(0);
    if (dstateT) {
      const g = dstateT + ((<usize>b * 3 * D) << 2) + cb;
      ga = load4(g, len);
      gb = load4(g + plane, len);
      gp = f32x4.neg(lastP);
      gMaxRest = f32x4.sub(f32x4.sub(load4(g + 2 * plane, len), f32x4.mul(ga, lastA)), f32x4.mul(gb, lastB));
    }
    let gw = sp(0);
    let gu = sp(0);
    let open = f32x4.ne(gMaxRest, sp(0));
    for (let t = T - 1; t >= 0; t--) {
      const i = ((<usize>(b * T + t) * D) << 2) + cb;
      const s = saved + ((<usize>(b * T + t) * 3 * D) << 2) + cb;
      const aa = load4(s, len);
      const bb = load4(s + plane, len);
      const pp = load4(s + 2 * plane, len);
      const kt = load4(k + i, len);
      const vt = load4(v + i, len);
      const yt = load4(y + i, len);
      const uk = f32x4.add(uc, kt);
      const p = f32x4.max(pp, uk);
      const e1 = expNegv(f32x4.sub(pp, p));
      const e2 = expNegv(f32x4.sub(uk, p));
      const q = f32x4.div(load4(dy + i, len), f32x4.add(f32x4.mul(e1, bb), e2));
      const eNext = expv(f32x4.add(kt, gp));
      const qe = f32x4.mul(q, e2);
      const vy = f32x4.sub(vt, yt);
      let dkv = f32x4.add(f32x4.mul(qe, vy), f32x4.mul(eNext, f32x4.add(f32x4.mul(ga, vt), gb)));
      store4(dv + i, f32x4.add(qe, f32x4.mul(eNext, ga)), len);
      gu = f32x4.add(gu, f32x4.mul(qe, vy));
      gw = f32x4.add(gw, f32x4.mul(expv(f32x4.add(f32x4.add(wc, pp), gp)), f32x4.add(f32x4.mul(aa, ga), f32x4.mul(bb, gb))));
      const hit = v128.and(open, f32x4.ge(kt, f32x4.add(wc, pp)));
      dkv = f32x4.add(dkv, v128.and(gMaxRest, hit));
      gw = f32x4.add(gw, v128.and(f32x4.mul(gMaxRest, sp(<f32>(T - 1 - t))), hit));
      open = v128.andnot(open, hit);
      store4(dk + i, dkv, len);
      const wg = f32x4.add(wc, gp);
      const np = f32x4.max(wg, f32x4.neg(p));
      const f1 = expNegv(f32x4.sub(wg, np));
      const f2 = expNegv(f32x4.sub(f32x4.neg(p), np));
      ga = f32x4.add(f32x4.mul(f1, ga), f32x4.mul(f2, q));
      gb = f32x4.sub(f32x4.mul(f1, gb), f32x4.mul(f32x4.mul(f2, q), yt));
      gp = np;
    }
    gw = f32x4.add(gw, v128.and(f32x4.mul(gMaxRest, sp(<f32>T)), open));
    store4(dw + ((<usize>b * D) << 2) + cb, gw, len);
    store4(du + ((<usize>b * D) << 2) + cb, gu, len);
    if (dstate0) {
      const s0 = saved + ((<usize>(b * T) * 3 * D) << 2) + cb;
      const scale = expv(f32x4.add(gp, load4(s0 + 2 * plane, len)));
      const o = dstate0 + ((<usize>b * 3 * D) << 2) + cb;
      store4(o, f32x4.mul(ga, scale), len);
      store4(o + plane, f32x4.mul(gb, scale), len);
      const gpp = f32x4.mul(f32x4.add(f32x4.mul(ga, load4(s0, len)), f32x4.mul(gb, load4(s0 + plane, len))), scale);
      store4(o + 2 * plane, f32x4.add(gpp, v128.and(gMaxRest, open)), len);
    }
  }
}
