/**
 * Mixture-of-experts kernels (see kernels_moe.ts) other than the expert matmuls, which run on the
 * gemm engine through the core matmul (cpu/mixers_moe.ts): the softmax router with torch's
 * top-k (topk.ts), the counting sort of assignments by expert, the gather / weighted combine of
 * token rows, the per-row gate, and the load-balancing loss. Rows (tokens or assignments) are
 * split across threads; the small per-row router arithmetic is scalar f64, as the reference's.
 */
import { splitLo, splitHi } from "./common";
import { expNegv } from "./simd_math";
import { sp, hsum4, lane, hmaxv } from "./mixer_common";
import { torchTopk } from "./topk";

@inline function f32at(p: usize, i: i32): f32 {
  return load<f32>(p + (<usize>i << 2));
}

@inline function i32at(p: usize, i: i32): i32 {
  return load<i32>(p + (<usize>i << 2));
}

/** Scratch floats per thread of the router: the (value, index) pairs of top-k, the probability gradient (f64). */
export function moeRouterScratchFloats(E: i32): i32 {
  return 4 * E;
}

/** probs = softmax(logits); indices = torch.topk(probs, k); weights = the chosen probs (/ their sum when normalize). */
export function moeRouterForward(
  tid: i32, nth: i32, weights: usize, indices: usize, probs: usize, logits: usize, N: i32, E: i32, k: i32, normalize: i32, scratch: usize, stride: i32,
): void {
  const V = scratch + <usize>tid * stride;
  const I = V + (<usize>E << 2);
  const lo = splitLo(N, tid, nth, 1);
  const hi = splitHi(N, tid, nth, 1);
  for (let n = lo; n < hi; n++) {
    const l = logits + ((<usize>n * E) << 2);
    const pr = probs + ((<usize>n * E) << 2);
    let mv = sp(-Infinity);
    let e = 0;
    for (; e + 4 <= E; e += 4) mv = f32x4.max(mv, v128.load(l + (<usize>e << 2)));
    let m = hmaxv(mv);
    for (; e < E; e++) m = max(m, f32at(l, e));
    let z: f64 = 0;
    for (e = 0; e < E; e++) {
      const x = lane(expNegv(sp(f32at(l, e) - m)));
      store<f32>(pr + (<usize>e << 2), x);
      z += x;
    }
    for (e = 0; e < E; e++) store<f32>(pr + (<usize>e << 2), <f32>(<f64>f32at(pr, e) / z));
    memory.copy(V, pr, <usize>E << 2);
    torchTopk(V, I, E, k);
    let sum: f64 = 0;
    for (let s = 0; s < k; s++) sum += f32at(pr, i32at(I, s));
    for (let s = 0; s < k; s++) {
      const ex = i32at(I, s);
      store<i32>(indices + ((<usize>(n * k + s)) << 2), ex);
      const p = <f64>f32at(pr, ex);
      store<f32>(weights + ((<usize>(n * k + s)) << 2), <f32>(normalize ? p / sum : p));
    }
  }
}

/**
 * dp_{i_s} += dw_s / Z - (sum_t dw_t p_{i_t}) / Z^2 (dw_s without normalisation), then
 * dlogit_e = p_e (dp_e - sum_j p_j dp_j).
 */
export function moeRouterBackward(
  tid: i32, nth: i32, dlogits: usize, dweights: usize, dprobs: usize, probs: usize, indices: usize, N: i32, E: i32, k: i32, normalize: i32,
  scratch: usize, stride: i32,
): void {
  const dp = scratch + <usize>tid * stride; // E f64
  const lo = splitLo(N, tid, nth, 1);
  const hi = splitHi(N, tid, nth, 1);
  for (let n = lo; n < hi; n++) {
    const pr = probs + ((<usize>n * E) << 2);
    for (let e = 0; e < E; e++) store<f64>(dp + (<usize>e << 3), dprobs ? <f64>f32at(dprobs, n * E + e) : 0);
    if (dweights) {
      let Z: f64 = 0;
      let dot: f64 = 0;
      for (let s = 0; s < k; s++) {
        const p = <f64>f32at(pr, i32at(indices, n * k + s));
        Z += p;
        dot += <f64>f32at(dweights, n * k + s) * p;
      }
      for (let s = 0; s < k; s++) {
        const e = i32at(indices, n * k + s);
        const dw = <f64>f32at(dweights, n * k + s);
        const at = dp + (<usize>e << 3);
        store<f64>(at, load<f64>(at) + (normalize ? dw / Z - dot / (Z * Z) : dw));
      }
    }
    let pdp: f64 = 0;
    for (let e = 0; e < E; e++) pdp += <f64>f32at(pr, e) * load<f64>(dp + (<usize>e << 3));
    for (let e = 0; e < E; e++) store<f32>(dlogits + ((<usize>(n * E + e)) << 2), <f32>(<f64>f32at(pr, e) * (load<f64>(dp + (<usize>e << 3)) - pdp)));
  }
}

/** Counting sort of the N k assignments by expert, stable in assignment order (one thread; cursor: E ints of scratch). */
export function moeGroup(tid: i32, nth: i32, pos: usize, offsets: usize, indices: usize, N: i32, E: i32, k: i32, cursor: usize): void {
  if (tid != 0) return;
  memory.fill(offsets, 0, (<usize>(E + 1)) << 2);
  for (let a = 0; a < N * k; a++) {
    const at = offsets + ((<usize>(i32at(indices, a) + 1)) << 2);
    store<i32>(at, load<i32>(at) + 1);
  }
  for (let e = 0; e < E; e++) store<i32>(offsets + ((<usize>(e + 1)) << 2), i32at(offsets, e + 1) + i32at(offsets, e));
  memory.copy(cursor, offsets, <usize>E << 2);
  for (let a = 0; a < N * k; a++) {
    const c = cursor + (<usize>i32at(indices, a) << 2);
    const r = load<i32>(c);
    store<i32>(pos + (<usize>a << 2), r);
    store<i32>(c, r + 1);
  }
}

/** xs[pos[a]] = x[a / k], split over assignments (distinct destination rows). */
export function moeGatherForward(tid: i32, nth: i32, xs: usize, x: usize, pos: usize, N: i32, k: i32, C: i32): void {
  const lo = splitLo(N * k, tid, nth, 1);
  const hi = splitHi(N * k, tid, nth, 1);
  const row = <usize>C << 2;
  for (let a = lo; a < hi; a++) memory.copy(xs + <usize>i32at(pos, a) * row, x + <usize>(a / k) * row, row);
}

/** dx[n] = sum over s of dxs[pos[n k + s]], split over tokens. */
export function moeGatherBackward(tid: i32, nth: i32, dx: usize, dxs: usize, pos: usize, N: i32, k: i32, C: i32): void {
  const lo = splitLo(N, tid, nth, 1);
  const hi = splitHi(N, tid, nth, 1);
  const row = <usize>C << 2;
  for (let n = lo; n < hi; n++) {
    const out = dx + <usize>n * row;
    let c = 0;
    for (; c + 4 <= C; c += 4) {
      let s = sp(0);
      for (let j = 0; j < k; j++) s = f32x4.add(s, v128.load(dxs + <usize>i32at(pos, n * k + j) * row + (<usize>c << 2)));
      v128.store(out + (<usize>c << 2), s);
    }
    for (; c < C; c++) {
      let s: f32 = 0;
      for (let j = 0; j < k; j++) s += load<f32>(dxs + <usize>i32at(pos, n * k + j) * row + (<usize>c << 2));
      store<f32>(out + (<usize>c << 2), s);
    }
  }
}

/** out[n] = sum over s of weights[n, s] ys[pos[n k + s]], split over tokens. */
export function moeCombineForward(tid: i32, nth: i32, out: usize, ys: usize, weights: usize, pos: usize, N: i32, k: i32, C: i32): void {
  const lo = splitLo(N, tid, nth, 1);
  const hi = splitHi(N, tid, nth, 1);
  const row = <usize>C << 2;
  for (let n = lo; n < hi; n++) {
    const o = out + <usize>n * row;
    let c = 0;
    for (; c + 4 <= C; c += 4) {
      let s = sp(0);
      for (let j = 0; j < k; j++) {
        s = f32x4.add(s, f32x4.mul(sp(f32at(weights, n * k + j)), v128.load(ys + <usize>i32at(pos, n * k + j) * row + (<usize>c << 2))));
      }
      v128.store(o + (<usize>c << 2), s);
    }
    for (; c < C; c++) {
      let s: f32 = 0;
      for (let j = 0; j < k; j++) s += f32at(weights, n * k + j) * load<f32>(ys + <usize>i32at(pos, n * k + j) * row + (<usize>c << 2));
      store<f32>(o + (<usize>c << 2), s);
    }
  }
}

/** sum of a[0:C] * b[0:C] */
@inline function dot(a: usize, b: usize, C: i32): f32 {
  let s0 = sp(0);
  let s1 = sp(0);
  let c = 0;
  for (; c + 8 <= C; c += 8) {
    s0 = f32x4.add(s0, f32x4.mul(v128.load(a + (<usize>c << 2)), v128.load(b + (<usize>c << 2))));
    s1 = f32x4.add(s1, f32x4.mul(v128.load(a + (<usize>c << 2), 16), v128.load(b + (<usize>c << 2), 16)));
  }
  for (; c + 4 <= C; c += 4) s0 = f32x4.add(s0, f32x4.mul(v128.load(a + (<usize>c << 2)), v128.load(b + (<usize>c << 2))));
  let s = lane(hsum4(f32x4.add(s0, s1), sp(0), sp(0), sp(0)));
  for (; c < C; c++) s += f32at(a, c) * f32at(b, c);
  return s;
}

/** out[r] = s * x[r] over C floats */
@inline function scaleRow(out: usize, x: usize, s: f32, C: i32): void {
  const sv = sp(s);
  let c = 0;
  for (; c + 4 <= C; c += 4) v128.store(out + (<usize>c << 2), f32x4.mul(sv, v128.load(x + (<usize>c << 2))));
  for (; c < C; c++) store<f32>(out + (<usize>c << 2), s * f32at(x, c));
}

/** dys[pos[a]] = weights[a] dout[a / k];  dweights[a] = dout[a / k] . ys[pos[a]]; split over assignments. */
export function moeCombineBackward(
  tid: i32, nth: i32, dys: usize, dweights: usize, dout: usize, ys: usize, weights: usize, pos: usize, N: i32, k: i32, C: i32,
): void {
  const lo = splitLo(N * k, tid, nth, 1);
  const hi = splitHi(N * k, tid, nth, 1);
  const row = <usize>C << 2;
  for (let a = lo; a < hi; a++) {
    const r = <usize>i32at(pos, a) * row;
    const g = dout + <usize>(a / k) * row;
    if (dys) scaleRow(dys + r, g, f32at(weights, a), C);
    if (dweights) store<f32>(dweights + (<usize>a << 2), dot(g, ys + r, C));
  }
}

export function rowScaleForward(tid: i32, nth: i32, out: usize, x: usize, s: usize, rows: i32, C: i32): void {
  const lo = splitLo(rows, tid, nth, 1);
  const hi = splitHi(rows, tid, nth, 1);
  const row = <usize>C << 2;
  for (let r = lo; r < hi; r++) scaleRow(out + <usize>r * row, x + <usize>r * row, f32at(s, r), C);
}

export function rowScaleBackward(tid: i32, nth: i32, dx: usize, ds: usize, dy: usize, x: usize, s: usize, rows: i32, C: i32): void {
  const lo = splitLo(rows, tid, nth, 1);
  const hi = splitHi(rows, tid, nth, 1);
  const row = <usize>C << 2;
  for (let r = lo; r < hi; r++) {
    if (dx) scaleRow(dx + <usize>r * row, dy + <usize>r * row, f32at(s, r), C);
    if (ds) store<f32>(ds + (<usize>r << 2), dot(dy + <usize>r * row, x + <usize>r * row, C));
  }
}

/** count[e] (f64, at counts) = how many of the R k choices picked e. */
@inline function expertCounts(counts: usize, indices: usize, R: i32, E: i32, k: i32): void {
  memory.fill(counts, 0, <usize>E << 3);
  for (let a = 0; a < R * k; a++) {
    const at = counts + (<usize>i32at(indices, a) << 3);
    store<f64>(at, load<f64>(at) + 1);
  }
}

/** loss[0] = E sum_e (count_e / R) (sum_r probs[r, e] / R), on one thread (scratch: E f64 counts). */
export function moeLoadBalancingForward(tid: i32, nth: i32, loss: usize, probs: usize, indices: usize, R: i32, E: i32, k: i32, scratch: usize): void {
  if (tid != 0) return;
  expertCounts(scratch, indices, R, E, k);
  let total: f64 = 0;
  for (let e = 0; e < E; e++) {
    let p: f64 = 0;
    for (let r = 0; r < R; r++) p += f32at(probs, r * E + e);
    total += (load<f64>(scratch + (<usize>e << 3)) / R) * (p / R);
  }
  store<f32>(loss, <f32>(<f64>E * total));
}

/** dprobs[r, e] = dloss E count_e / R^2; every thread counts for itself (scratch: E f64 per thread), then fills its rows. */
export function moeLoadBalancingBackward(tid: i32, nth: i32, dprobs: usize, dloss: usize, indices: usize, R: i32, E: i32, k: i32, scratch: usize, stride: i32): void {
  const counts = scratch + <usize>tid * stride;
  expertCounts(counts, indices, R, E, k);
  const g = <f64>load<f32>(dloss) * <f64>E / (<f64>R * <f64>R);
  const lo = splitLo(R, tid, nth, 1);
  const hi = splitHi(R, tid, nth, 1);
  for (let r = lo; r < hi; r++) {
    for (let e = 0; e < E; e++) store<f32>(dprobs + ((<usize>(r * E + e)) << 2), <f32>(g * load<f64>(counts + (<usize>e << 3))));
  }
}
