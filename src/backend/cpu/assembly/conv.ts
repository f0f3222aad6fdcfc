/**
 * The causal depthwise conv1d in front of Mamba, Mamba-2 and Gated DeltaNet mixers, over
 * channel-last x (B, T, D) with a (D, W) filter, vectorised over 4 channels:
 *   out[b, t, c] = bias[c] + sum_k w[c, k] xpad[b, t + k, c]
 * where xpad is the window state (W - 1 rows, zeros when absent) followed by x.
 *
 * The filter is transposed once per call into the thread's scratch as wT (W, D4) (D4 = D
 * rounded up to 4, zero lanes above D), so a tap is one vector load. The forward splits rows
 * (b, t) across threads; the backward splits channels, so each thread owns its rows of
 * dweight and dbias and sums over (b, t) in a fixed order whatever the thread count.
 */
import { splitLo, splitHi } from "./common";
import { sp, load4, store4, gather4 } from "./mixer_common";

@inline function d4(D: i32): i32 {
  return (D + 3) & ~3;
}

/** wT[k, c] = w[c, k] for c < D, 0 for D <= c < D4. */
function transposeFilter(wT: usize, w: usize, D: i32, W: i32): void {
  const D4 = d4(D);
  for (let c = 0; c < D4; c += 4) {
    const len = min(4, D - c);
    for (let k = 0; k < W; k++) v128.store(wT + ((<usize>k * D4 + c) << 2), gather4(w + ((<usize>c * W + k) << 2), <usize>W << 2, len));
  }
}

/** Start of row s of xpad for sequence b (0 when it is a zero row of an absent state). */
@inline function padRow(x: usize, stateIn: usize, b: i32, s: i32, T: i32, D: i32, W: i32): usize {
  const S = W - 1;
  if (s >= S) return x + ((<usize>(b * T + s - S) * D) << 2);
  return stateIn ? stateIn + ((<usize>(b * S + s) * D) << 2) : 0;
}

/** Scratch floats per thread of the conv kernels: the transposed filter, the backward's tap sums, a zero row and W row addresses. */
export function convScratchFloats(D: i32, W: i32): i32 {
  return d4(D) * (2 * W + 2) + W;
}

/** out (B, T, D); the window state out is a separate call (conv1dWindow), after every thread has read stateIn. */
export function conv1dForward(
  tid: i32, nth: i32, out: usize, x: usize, w: usize, bias: usize, stateIn: usize, B: i32, T: i32, D: i32, W: i32, scratch: usize, stride: i32,
): void {
  const D4 = d4(D);
  const wT = scratch + <usize>tid * stride;
  const zero = wT + ((<usize>(2 * W + 1) * D4) << 2); // a row of zeros stands for an absent window state
  const rows = zero + (<usize>D4 << 2); // the W input rows of the current output row
  transposeFilter(wT, w, D, W);
  memory.fill(zero, 0, <usize>D4 << 2);
  const lo = splitLo(B * T, tid, nth, 1);
  const hi = splitHi(B * T, tid, nth, 1);
  const full = D & ~3;
  for (let row = lo; row < hi; row++) {
    const b = row / T;
    const t = row % T;
    for (let k = 0; k < W; k++) {
      const r = padRow(x, stateIn, b, t + k, T, D, W);
      store<u32>(rows + (<usize>k << 2), <u32>(r ? r : zero));
    }
    const o = out + ((<usize>row * D) << 2);
    let c = 0;
    for (; c < full; c += 4) {
      const cb = <usize>c << 2;
      let acc = bias ? v128.load(bias + cb) : sp(0);
      for (let k = 0; k < W; k++) {
        acc = f32x4.add(acc, f32x4.mul(v128.load(wT + ((<usize>k * D4) << 2) + cb), v128.load(<usize>load<u32>(rows + (<usize>k << 2)) + cb)));
      }
      v128.store(o + cb, acc);
    }
    if (c < D) {
      const len = D - c;
      const cb = <usize>c << 2;
      let acc = bias ? load4(bias + cb, len) : sp(0);
      for (let k = 0; k < W; k++) {
        acc = f32x4.add(acc, f32x4.mul(v128.load(wT + ((<usize>k * D4) << 2) + cb), load4(<usize>load<u32>(rows + (<usize>k << 2)) + cb, len)));
      }
      store4(o + cb, acc, len);
    }
  }
}

/**
 * stateOut (B, W-1, D) = xpad[b, T .. T + W - 2]: the last W - 1 inputs. Rows go in ascending
 * order within a sequence, each read at or after the row it writes, so stateOut may be stateIn.
 */
export function conv1dWindow(tid: i32, nth: i32, stateOut: usize, x: usize, stateIn: usize, B: i32, T: i32, D: i32, W: i32): void {
  const S = W - 1;
  const lo = splitLo(B, tid, nth, 1);
  const hi = splitHi(B, tid, nth, 1);
  const rowBytes = <usize>D << 2;
  for (let b = lo; b < hi; b++) {
    for (let j = 0; j < S; j++) {
      const dst = stateOut + <usize>(b * S + j) * rowBytes;
      const src = padRow(x, stateIn, b, T + j, T, D, W);
      if (src == 0) memory.fill(dst, 0, rowBytes);
      else memory.copy(dst, src, rowBytes);
    }
  }
}

/**
 * dx (B, T, D), dweight (D, W) (written, or accumulated when accumulate), dbias (D) and
 * dstateIn (B, W-1, D) where non-null:
 *   dxpad[s] = sum_k w[k] dout[s - k] (0 <= s - k < T);  dw[k] = sum_{b,t} dout[t] xpad[t + k].
 * Threads own channel ranges (so dw and db need no reduction across threads) and walk the rows
 * in order, the tap sums of their channels in scratch: wT (W, D4), then dw (W, D4), db (D4).
 */
export function conv1dBackward(
  tid: i32, nth: i32, dx: usize, dweight: usize, dbias: usize, dstateIn: usize, dout: usize, x: usize, w: usize, stateIn: usize,
  B: i32, T: i32, D: i32, W: i32, accumulate: i32, scratch: usize, stride: i32,
): void {
  const S = W - 1;
  const D4 = d4(D);
  const wT = scratch + <usize>tid * stride;
  const dw = wT + ((<usize>W * D4) << 2);
  const db = dw + ((<usize>W * D4) << 2);
  transposeFilter(wT, w, D, W);
  const c0 = splitLo(D, tid, nth, 4);
  const c1 = splitHi(D, tid, nth, 4);
  if (c0 >= c1) return;
  memory.fill(dw, 0, (<usize>(W + 1) * D4) << 2);
  for (let b = 0; b < B; b++) {
    // xpad positions s in [0, S + T) read by the outputs s - k, 0 <= s - k < T
    for (let s = 0; s < S + T; s++) {
      const dst = s >= S ? dx + ((<usize>(b * T + s - S) * D) << 2) : dstateIn ? dstateIn + ((<usize>(b * S + s) * D) << 2) : 0;
      if (dst == 0) continue;
      const kLo = max(0, s - T + 1);
      const kHi = min(S, s);
      const g0 = dout + ((<usize>(b * T + s) * D) << 2); // dout row s; row s - k is k rows before
      for (let c = c0; c < c1; c += 4) {
        if (c + 4 <= c1) dxBlock(dst, g0, wT, c, D, D4, kLo, kHi, 4);
        else dxBlock(dst, g0, wT, c, D, D4, kLo, kHi, c1 - c);
      }
    }
    for (let t = 0; t < T; t++) {
      const gRow = dout + ((<usize>(b * T + t) * D) << 2);
      for (let c = c0; c < c1; c += 4) {
        const pb = db + (<usize>c << 2);
        v128.store(pb, f32x4.add(v128.load(pb), load4(gRow + (<usize>c << 2), min(4, c1 - c))));
      }
      for (let k = 0; k < W; k++) {
        const r = padRow(x, stateIn, b, t + k, T, D, W);
        if (r == 0) continue;
        const acc = dw + ((<usize>k * D4) << 2);
        for (let c = c0; c < c1; c += 4) {
          if (c + 4 <= c1) tapBlock(acc, gRow, r, c, 4);
          else tapBlock(acc, gRow, r, c, c1 - c);
        }
      }
    }
  }
  for (let c = c0; c < c1; c++) {
    for (let k = 0; k < W; k++) {
      const v = load<f32>(dw + ((<usize>k * D4 + c) << 2));
      const p = dweight + ((<usize>c * W + k) << 2);
      store<f32>(p, accumulate ? load<f32>(p) + v : v);
    }
    if (dbias) store<f32>(dbias + (<usize>c << 2), load<f32>(db + (<usize>c << 2)));
  }
}

/** dst[c ..] = sum over taps k in [kLo, kHi] of w[k] dout[s - k] (g0 = dout row s). */
@inline function dxBlock(dst: usize, g0: usize, wT: usize, c: i32, D: i32, D4: i32, kLo: i32, kHi: i32, len: i32): void {
  const cb = <usize>c << 2;
  let g = sp(0);
  for (let k = kLo; k <= kHi; k++) {
    g = f32x4.add(g, f32x4.mul(v128.load(wT + ((<usize>k * D4) << 2) + cb), load4(g0 - ((<usize>k * D) << 2) + cb, len)));
  }
  store4(dst + cb, g, len);
}

/** acc[c ..] += dout[t] xpad[t + k] over one block of channels. */
@inline function tapBlock(acc: usize, gRow: usize, r: usize, c: i32, len: i32): void {
  const cb = <usize>c << 2;
  v128.store(acc + cb, f32x4.add(v128.load(acc + cb), f32x4.mul(load4(gRow + cb, len), load4(r + cb, len))));
}

/**
 * One token: out (B, D) = bias + sum_{k < W-1} w[k] state[k] + w[W-1] x, then the window
 * (B, W-1, D) shifts by one row and takes x. Threads split (sequence, 4-channel block) items.
 */
export function conv1dStep(tid: i32, nth: i32, out: usize, state: usize, x: usize, w: usize, bias: usize, B: i32, D: i32, W: i32): void {
  const S = W - 1;
  const groups = (D + 3) >> 2;
  const lo = splitLo(B * groups, tid, nth, 1);
  const hi = splitHi(B * groups, tid, nth, 1);
  const wStride = <usize>W << 2;
  const rowBytes = <usize>D << 2;
  for (let it = lo; it < hi; it++) {
    const b = it / groups;
    const c = (it % groups) << 2;
    const len = min(4, D - c);
    const cb = <usize>c << 2;
    const st = state + <usize>(b * S) * rowBytes + cb;
    const xv = load4(x + <usize>b * rowBytes + cb, len);
    let acc = bias ? load4(bias + cb, len) : sp(0);
    for (let k = 0; k < S; k++) acc = f32x4.add(acc, f32x4.mul(gather4(w + cb * W + (<usize>k << 2), wStride, len), load4(st + <usize>k * rowBytes, len)));
    acc = f32x4.add(acc, f32x4.mul(gather4(w + cb * W + (<usize>S << 2), wStride, len), xv));
    store4(out + <usize>b * rowBytes + cb, acc, len);
    for (let k = 0; k + 1 < S; k++) store4(st + <usize>k * rowBytes, load4(st + <usize>(k + 1) * rowBytes, len), len);
    if (S > 0) store4(st + <usize>(S - 1) * rowBytes, xv, len);
  }
}
