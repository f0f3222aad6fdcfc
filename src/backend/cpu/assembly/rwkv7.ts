/**
 * RWKV-7's generalized delta rule (see kernels_rwkv.ts, ref/rwkv.ts), per (sequence, head) with
 * the N x N state S (row i = value index, column j = key index):
 *   S_t = S diag(w_t) + (S a_t) b_t^T + v_t k_t^T,    y_t = S_t r_t
 * Row i of the update needs only sa_i = S[i, :] . a and v_i, so rows are independent: the state
 * is kept transposed in the thread's scratch, ST[j][i] (N rounded up to N4 lanes, zero above N),
 * and a block of 4 rows i is one vector per j. For a block: sa = sum_j ST[j] a_j, then
 * ST[j] = ST[j] w_j + sa b_j + v k_j and y = sum_j ST[j] r_j: broadcasts of the step's vectors,
 * no horizontal sums. Checkpoints and states keep the interface's (N, N) layout.
 *
 * The backward (with G = dL/dS_t, also transposed) is, per step,
 *   G += dy r^T;  dr = S_t^T dy;  dv = G k;  dsa = G b;  sa = S_{t-1} a
 *   dk = G^T v;  dw_j = sum_i G_ij S_{t-1},ij;  db = G^T sa;  da = S_{t-1}^T dsa
 *   G <- G diag(w) + dsa a^T
 * where the j-indexed results sum over rows i: per-j vector sums across the row blocks, reduced
 * 4 at a time at the end of the step. Work items are (sequence, head) pairs with disjoint outputs.
 */
import { splitLo, splitHi } from "./common";
import { sp, vat, load4, store4, hsum4 } from "./mixer_common";

@inline function n4(N: i32): i32 {
  return (N + 3) & ~3;
}

/** ST (N, N4) = S^T from an (N, N) state at src (zeros when src is 0). */
function loadT(ST: usize, src: usize, N: i32): void {
  const N4 = n4(N);
  for (let j = 0; j < N; j++) {
    for (let i = 0; i < N4; i++) store<f32>(ST + ((<usize>j * N4 + i) << 2), src && i < N ? load<f32>(src + ((<usize>i * N + j) << 2)) : 0);
  }
}

function storeT(dst: usize, ST: usize, N: i32): void {
  const N4 = n4(N);
  for (let i = 0; i < N; i++) {
    for (let j = 0; j < N; j++) store<f32>(dst + ((<usize>i * N + j) << 2), load<f32>(ST + ((<usize>j * N4 + i) << 2)));
  }
}

/** One step of the update on ST (and y = S r when y is non-zero); o = byte offset of the step's rows. */
@inline function update(ST: usize, r: usize, w: usize, k: usize, v: usize, a: usize, b: usize, y: usize, o: usize, N: i32): void {
  const N4 = n4(N);
  const rowBytes = <usize>N4 << 2;
  for (let i = 0; i < N4; i += 4) {
    const len = min(4, N - i);
    let s = ST + (<usize>i << 2);
    let sa = sp(0);
    for (let j = 0; j < N; j++) {
      sa = f32x4.add(sa, f32x4.mul(v128.load(s), v128.load32_splat(a + o + (<usize>j << 2))));
      s += rowBytes;
    }
    const vv = load4(v + o + (<usize>i << 2), len);
    let acc = sp(0);
    s = ST + (<usize>i << 2);
    for (let j = 0; j < N; j++) {
      const jo = o + (<usize>j << 2);
      const nv = f32x4.add(f32x4.add(f32x4.mul(v128.load(s), v128.load32_splat(w + jo)), f32x4.mul(sa, v128.load32_splat(b + jo))), f32x4.mul(vv, v128.load32_splat(k + jo)));
      v128.store(s, nv);
      acc = f32x4.add(acc, f32x4.mul(nv, v128.load32_splat(r + jo)));
      s += rowBytes;
    }
    if (y) store4(y + o + (<usize>i << 2), acc, len);
  }
}

/** Scratch floats per thread of wkv7Forward: the transposed state. */
export function wkv7ForwardScratchFloats(N: i32): i32 {
  return N * n4(N);
}

export function wkv7Forward(
  tid: i32, nth: i32, y: usize, stateOut: usize, ckpt: usize, r: usize, w: usize, k: usize, v: usize, a: usize, b: usize, state0: usize,
  B: i32, T: i32, H: i32, N: i32, chunk: i32, scratch: usize, stride: i32,
): void {
  const ST = scratch + <usize>tid * stride;
  const NN = <usize>N * N;
  const chunks = (T + chunk - 1) / chunk;
  const lo = splitLo(B * H, tid, nth, 1);
  const hi = splitHi(B * H, tid, nth, 1);
  for (let it = lo; it < hi; it++) {
    const bi = it / H;
    const h = it % H;
    loadT(ST, state0 ? state0 + ((<usize>it * NN) << 2) : 0, N);
    for (let t = 0; t < T; t++) {
      if (ckpt && t % chunk == 0) storeT(ckpt + ((<usize>((bi * chunks + t / chunk) * H + h) * NN) << 2), ST, N);
      update(ST, r, w, k, v, a, b, y, (<usize>((bi * T + t) * H + h) * N) << 2, N);
    }
    if (stateOut) storeT(stateOut + ((<usize>it * NN) << 2), ST, N);
  }
}

/**
 * One token, state (B, H, N, N) in place in its own layout: row i contiguous, so sa_i and y_i are
 * dot products, summed 4 rows at a time (hsum4) and each row read twice from L1.
 */
export function wkv7Step(tid: i32, nth: i32, y: usize, state: usize, r: usize, w: usize, k: usize, v: usize, a: usize, b: usize, B: i32, H: i32, N: i32): void {
  const lo = splitLo(B * H, tid, nth, 1);
  const hi = splitHi(B * H, tid, nth, 1);
  const rowBytes = <usize>N << 2;
  for (let it = lo; it < hi; it++) {
    const o = (<usize>it * N) << 2;
    const S = state + <usize>it * N * rowBytes;
    for (let i = 0; i < N; i += 4) {
      const m = min(4, N - i);
      const sa = hsum4(rowDot(S + <usize>i * rowBytes, a + o, N), m > 1 ? rowDot(S + <usize>(i + 1) * rowBytes, a + o, N) : sp(0),
        m > 2 ? rowDot(S + <usize>(i + 2) * rowBytes, a + o, N) : sp(0), m > 3 ? rowDot(S + <usize>(i + 3) * rowBytes, a + o, N) : sp(0));
      const vv = load4(v + o + (<usize>i << 2), m);
      const y0 = rowUpdate(S + <usize>i * rowBytes, w + o, k + o, b + o, r + o, f32x4.extract_lane(sa, 0), f32x4.extract_lane(vv, 0), N);
      const y1 = m > 1 ? rowUpdate(S + <usize>(i + 1) * rowBytes, w + o, k + o, b + o, r + o, f32x4.extract_lane(sa, 1), f32x4.extract_lane(vv, 1), N) : sp(0);
      const y2 = m > 2 ? rowUpdate(S + <usize>(i + 2) * rowBytes, w + o, k + o, b + o, r + o, f32x4.extract_lane(sa, 2), f32x4.extract_lane(vv, 2), N) : sp(0);
      const y3 = m > 3 ? rowUpdate(S + <usize>(i + 3) * rowBytes, w + o, k + o, b + o, r + o, f32x4.extract_lane(sa, 3), f32x4.extract_lane(vv, 3), N) : sp(0);
      store4(y + o + (<usize>i << 2), hsum4(y0, y1, y2, y3), m);
    }
  }
}

/** Lane-wise partial sums of row . x over N floats (the tail folded into lane 0). */
@inline function rowDot(row: usize, x: usize, N: i32): v128 {
  let acc = sp(0);
  let j = 0;
  for (; j + 4 <= N; j += 4) acc = f32x4.add(acc, f32x4.mul(v128.load(row + (<usize>j << 2)), v128.load(x + (<usize>j << 2))));
  let t: f32 = 0;
  for (; j < N; j++) t += load<f32>(row + (<usize>j << 2)) * load<f32>(x + (<usize>j << 2));
  return f32x4.add(acc, f32x4.replace_lane(sp(0), 0, t));
}

/** row = row w + sa b + v k, in place; returns the lane-wise partial sums of row . r. */
@inline function rowUpdate(row: usize, w: usize, k: usize, b: usize, r: usize, sa: f32, vi: f32, N: i32): v128 {
  const sav = sp(sa);
  const vvi = sp(vi);
  let acc = sp(0);
  let j = 0;
  for (; j + 4 <= N; j += 4) {
    const o = <usize>j << 2;
    const nv = f32x4.add(f32x4.add(f32x4.mul(v128.load(row + o), v128.load(w + o)), f32x4.mul(sav, v128.load(b + o))), f32x4.mul(vvi, v128.load(k + o)));
    v128.store(row + o, nv);
    acc = f32x4.add(acc, f32x4.mul(nv, v128.load(r + o)));
  }
  let t: f32 = 0;
  for (; j < N; j++) {
    const o = <usize>j << 2;
    const nv = load<f32>(row + o) * load<f32>(w + o) + sa * load<f32>(b + o) + vi * load<f32>(k + o);
    store<f32>(row + o, nv);
    t += nv * load<f32>(r + o);
  }
  return f32x4.add(acc, f32x4.replace_lane(sp(0), 0, t));
}

/** Scratch floats per thread of wkv7Backward: G, five per-j sums, the chunk's states. */
export function wkv7BackwardScratchFloats(N: i32, chunk: i32): i32 {
  return N * n4(N) + 20 * N + (chunk + 1) * N * n4(N);
}

export function wkv7Backward(
  tid: i32, nth: i32, dr: usize, dw: usize, dk: usize, dv: usize, da: usize, db: usize, dstate0: usize, dy: usize, dstateT: usize,
  r: usize, w: usize, k: usize, v: usize, a: usize, b: usize, ckpt: usize, B: i32, T: i32, H: i32, N: i32, chunk: i32, scratch: usize, stride: i32,
): void {
  const N4 = n4(N);
  const SN = <usize>N * N4;
  const NN = <usize>N * N;
  const GT = scratch + <usize>tid * stride;
  const sums = GT + (SN << 2); // dr, dk, dw, db, da: N vectors each
  const states = vat(sums, 5 * N);
  const chunks = (T + chunk - 1) / chunk;
  const lo = splitLo(B * H, tid, nth, 1);
  const hi = splitHi(B * H, tid, nth, 1);
  for (let it = lo; it < hi; it++) {
    const bi = it / H;
    const h = it % H;
    loadT(GT, dstateT ? dstateT + ((<usize>it * NN) << 2) : 0, N);
    for (let c = chunks - 1; c >= 0; c--) {
      const t0 = c * chunk;
      const L = min(chunk, T - t0);
      loadT(states, ckpt + ((<usize>((bi * chunks + c) * H + h) * NN) << 2), N);
      for (let j = 0; j < L; j++) {
        memory.copy(states + ((<usize>(j + 1) * SN) << 2), states + ((<usize>j * SN) << 2), SN << 2);
        update(states + ((<usize>(j + 1) * SN) << 2), r, w, k, v, a, b, 0, (<usize>((bi * T + t0 + j) * H + h) * N) << 2, N);
      }
      for (let j = L - 1; j >= 0; j--) {
        const o = (<usize>((bi * T + t0 + j) * H + h) * N) << 2;
        stepBackward(GT, sums, states + ((<usize>j * SN) << 2), states + ((<usize>(j + 1) * SN) << 2), dr, dw, dk, dv, da, db, dy, r, w, k, v, a, b, o, N);
      }
    }
    if (dstate0) storeT(dstate0 + ((<usize>it * NN) << 2), GT, N);
  }
}

@inline function stepBackward(
  GT: usize, sums: usize, prev: usize, next: usize, dr: usize, dw: usize, dk: usize, dv: usize, da: usize, db: usize,
  dy: usize, r: usize, w: usize, k: usize, v: usize, a: usize, b: usize, o: usize, N: i32,
): void {
  const N4 = n4(N);
  const rowBytes = <usize>N4 << 2;
  const sDr = sums;
  const sDk = vat(sums, N);
  const sDw = vat(sums, 2 * N);
  const sDb = vat(sums, 3 * N);
  const sDa = vat(sums, 4 * N);
  memory.fill(sums, 0, <usize>N * 5 * 16);
  for (let i = 0; i < N4; i += 4) {
    const len = min(4, N - i);
    const io = <usize>i << 2;
    const dyv = load4(dy + o + io, len);
    const vv = load4(v + o + io, len);
    let sa = sp(0);
    let dvv = sp(0);
    let dsa = sp(0);
    for (let j = 0; j < N; j++) {
      const so = <usize>j * rowBytes + io;
      const jo = o + (<usize>j << 2);
      v128.store(vat(sDr, j), f32x4.add(v128.load(vat(sDr, j)), f32x4.mul(v128.load(next + so), dyv)));
      const gt = f32x4.add(v128.load(GT + so), f32x4.mul(v128.load32_splat(r + jo), dyv));
      v128.store(GT + so, gt);
      sa = f32x4.add(sa, f32x4.mul(v128.load(prev + so), v128.load32_splat(a + jo)));
      dvv = f32x4.add(dvv, f32x4.mul(gt, v128.load32_splat(k + jo)));
      dsa = f32x4.add(dsa, f32x4.mul(gt, v128.load32_splat(b + jo)));
    }
    store4(dv + o + io, dvv, len);
    for (let j = 0; j < N; j++) {
      const so = <usize>j * rowBytes + io;
      const jo = o + (<usize>j << 2);
      const gt = v128.load(GT + so);
      const pv = v128.load(prev + so);
      v128.store(vat(sDk, j), f32x4.add(v128.load(vat(sDk, j)), f32x4.mul(gt, vv)));
      v128.store(vat(sDw, j), f32x4.add(v128.load(vat(sDw, j)), f32x4.mul(gt, pv)));
      v128.store(vat(sDb, j), f32x4.add(v128.load(vat(sDb, j)), f32x4.mul(gt, sa)));
      v128.store(vat(sDa, j), f32x4.add(v128.load(vat(sDa, j)), f32x4.mul(pv, dsa)));
      v128.store(GT + so, f32x4.add(f32x4.mul(gt, v128.load32_splat(w + jo)), f32x4.mul(dsa, v128.load32_splat(a + jo))));
    }
  }
  reduceInto(dr + o, sDr, N);
  reduceInto(dk + o, sDk, N);
  reduceInto(dw + o, sDw, N);
  reduceInto(db + o, sDb, N);
  reduceInto(da + o, sDa, N);
}

/** dst[j] = sum of the lanes of sums[j], j < N. */
@inline function reduceInto(dst: usize, sums: usize, N: i32): void {
  for (let j = 0; j < N; j += 4) {
    const m = min(4, N - j);
    const s = hsum4(v128.load(vat(sums, j)), m > 1 ? v128.load(vat(sums, j + 1)) : sp(0), m > 2 ? v128.load(vat(sums, j + 2)) : sp(0), m > 3 ? v128.load(vat(sums, j + 3)) : sp(0));
    store4(dst + (<usize>j << 2), s, m);
  }
}
