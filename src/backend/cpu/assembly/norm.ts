/**
 * Embedding lookup (f32 tables, or f16/bf16 tables widened row by row), RMSNorm, LayerNorm and rotary embedding. Rows are independent, so threads
 * take row ranges; the weight gradients (a sum over rows) go to per-thread partial rows that
 * reducePartials then adds into the gradient, column range by column range.
 */
import { splitLo, splitHi, hsum, at32 } from "./common";
import { F16, BF16, loadHalf4, loadHalf1 } from "./half";

export function embeddingForward(tid: i32, nth: i32, out: usize, ids: usize, table: usize, n: i32, C: i32, kind: i32): void {
  const lo = splitLo(n, tid, nth, 1);
  const hi = splitHi(n, tid, nth, 1);
  const rowBytes = <usize>C * 4;
  if (kind == 0) {
    for (let i = lo; i < hi; i++) memory.copy(out + <usize>i * rowBytes, table + <usize>load<i32>(ids + (<usize>i << 2)) * rowBytes, rowBytes);
  } else if (kind == F16) {
    for (let i = lo; i < hi; i++) widenRow(F16, out + <usize>i * rowBytes, table + <usize>load<i32>(ids + (<usize>i << 2)) * C * 2, C);
  } else {
    for (let i = lo; i < hi; i++) widenRow(BF16, out + <usize>i * rowBytes, table + <usize>load<i32>(ids + (<usize>i << 2)) * C * 2, C);
  }
}

/** dst[0:C] = src[0:C] widened from half precision of `kind` (f16 or bf16 bits). */
@inline function widenRow(kind: i32, dst: usize, src: usize, C: i32): void {
  let c = 0;
  for (; c + 4 <= C; c += 4) v128.store(at32(dst, c), loadHalf4(src + (<usize>c << 1), kind));
  for (; c < C; c++) store<f32>(at32(dst, c), loadHalf1(src + (<usize>c << 1), kind));
}

/** dtable[ids[i]] += dout[i]; threads own column ranges, so repeated ids never race. */
export function embeddingBackward(tid: i32, nth: i32, dtable: usize, dout: usize, ids: usize, n: i32, C: i32): void {
  const c0 = splitLo(C, tid, nth, 16);
  const c1 = splitHi(C, tid, nth, 16);
  for (let i = 0; i < n; i++) {
    const dst = dtable + (<usize>load<i32>(ids + (<usize>i << 2)) * C + c0) * 4;
    const src = dout + (<usize>i * C + c0) * 4;
    addInto(dst, src, c1 - c0);
  }
}

/** dst[0:len] += src[0:len] */
@inline function addInto(dst: usize, src: usize, len: i32): void {
  let c = 0;
  for (; c + 4 <= len; c += 4) v128.store(at32(dst, c), f32x4.add(v128.load(at32(dst, c)), v128.load(at32(src, c))));
  for (; c < len; c++) store<f32>(at32(dst, c), load<f32>(at32(dst, c)) + load<f32>(at32(src, c)));
}

/** Sum of x[0:C]^2 (or of x[0:C] * y[0:C]). */
@inline function dot(x: usize, y: usize, C: i32): f32 {
  let s0 = f32x4.splat(0), s1 = f32x4.splat(0);
  let c = 0;
  for (; c + 8 <= C; c += 8) {
    s0 = f32x4.add(s0, f32x4.mul(v128.load(at32(x, c)), v128.load(at32(y, c))));
    s1 = f32x4.add(s1, f32x4.mul(v128.load(at32(x, c), 16), v128.load(at32(y, c), 16)));
  }
  let s = hsum(f32x4.add(s0, s1));
  for (; c < C; c++) s += load<f32>(at32(x, c)) * load<f32>(at32(y, c));
  return s;
}

@inline function sum(x: usize, C: i32): f32 {
  let s0 = f32x4.splat(0);
  let c = 0;
  for (; c + 4 <= C; c += 4) s0 = f32x4.add(s0, v128.load(at32(x, c)));
  let s = hsum(s0);
  for (; c < C; c++) s += load<f32>(at32(x, c));
  return s;
}

/** y = x * rstd * (w + offset) */
export function rmsnormForward(
  tid: i32, nth: i32, out: usize, rstd: usize, x: usize, w: usize, rows: i32, C: i32, eps: f32, offset: f32,
): void {
  const lo = splitLo(rows, tid, nth, 1);
  const hi = splitHi(rows, tid, nth, 1);
  const ov = f32x4.splat(offset);
  for (let r = lo; r < hi; r++) {
    const xr = x + <usize>r * C * 4;
    const yr = out + <usize>r * C * 4;
    const s = <f32>(1.0 / Math.sqrt(<f64>dot(xr, xr, C) / C + eps));
    store<f32>(at32(rstd, r), s);
    const sv = f32x4.splat(s);
    let c = 0;
    for (; c + 4 <= C; c += 4) {
      v128.store(at32(yr, c), f32x4.mul(f32x4.mul(v128.load(at32(xr, c)), sv), f32x4.add(v128.load(at32(w, c)), ov)));
    }
    for (; c < C; c++) store<f32>(at32(yr, c), load<f32>(at32(xr, c)) * s * (load<f32>(at32(w, c)) + offset));
  }
}

/**
 * With xhat = x rstd and g = dy (w + offset): dx = rstd (g - xhat mean(g xhat)); dw's sum over rows
 * of dy xhat goes to `partials`, one row per block of rows (see rmsnormBackwardRows); the caller adds them.
 */
export function rmsnormBackward(
  tid: i32, nth: i32, dx: usize, dy: usize, x: usize, w: usize, rstd: usize,
  rows: i32, C: i32, offset: f32, partials: usize, blocks: i32,
): void {
  for (let blk = splitLo(blocks, tid, nth, 1); blk < splitHi(blocks, tid, nth, 1); blk++) {
    const acc = partials + <usize>blk * C * 4;
    memory.fill(acc, 0, <usize>C * 4);
    rmsnormBackwardRows(dx, acc, dy, x, w, rstd, splitLo(rows, blk, blocks, 1), splitHi(rows, blk, blocks, 1), C, offset);
  }
}

/**
 * The gradients of norm backward's weights are sums over rows. They are summed in blocks of rows
 * fixed by the row count alone (the block b of `blocks` covers rows splitLo(rows, b, blocks)..),
 * whichever thread takes a block, and the blocks are added in order: the same bits on any number
 * of threads.
 */
@inline
function rmsnormBackwardRows(dx: usize, acc: usize, dy: usize, x: usize, w: usize, rstd: usize, lo: i32, hi: i32, C: i32, offset: f32): void {
  const ov = f32x4.splat(offset);
  for (let r = lo; r < hi; r++) {
    const xr = x + <usize>r * C * 4;
    const dyr = dy + <usize>r * C * 4;
    const dxr = dx + <usize>r * C * 4;
    const s = load<f32>(at32(rstd, r));
    // mean over c of g * xhat = s / C * sum dy (w + offset) x
    let d0 = f32x4.splat(0);
    let c = 0;
    for (; c + 4 <= C; c += 4) {
      const g = f32x4.mul(v128.load(at32(dyr, c)), f32x4.add(v128.load(at32(w, c)), ov));
      d0 = f32x4.add(d0, f32x4.mul(g, v128.load(at32(xr, c))));
    }
    let dsum = hsum(d0);
    for (; c < C; c++) dsum += load<f32>(at32(dyr, c)) * (load<f32>(at32(w, c)) + offset) * load<f32>(at32(xr, c));
    const m = (dsum * s) / <f32>C;
    const sv = f32x4.splat(s);
    const mv = f32x4.splat(m);
    c = 0;
    for (; c + 4 <= C; c += 4) {
      const xhat = f32x4.mul(v128.load(at32(xr, c)), sv);
      const dyv = v128.load(at32(dyr, c));
      const g = f32x4.mul(dyv, f32x4.add(v128.load(at32(w, c)), ov));
      v128.store(at32(dxr, c), f32x4.mul(sv, f32x4.sub(g, f32x4.mul(xhat, mv))));
      v128.store(at32(acc, c), f32x4.add(v128.load(at32(acc, c)), f32x4.mul(dyv, xhat)));
    }
    for (; c < C; c++) {
      const xhat = load<f32>(at32(xr, c)) * s;
      const dyv = load<f32>(at32(dyr, c));
      const g = dyv * (load<f32>(at32(w, c)) + offset);
      store<f32>(at32(dxr, c), s * (g - xhat * m));
      store<f32>(at32(acc, c), load<f32>(at32(acc, c)) + dyv * xhat);
    }
  }
}

/** y = (x - mean) rstd w + b */
export function layernormForward(
  tid: i32, nth: i32, out: usize, mean: usize, rstd: usize, x: usize, w: usize, b: usize, hasB: i32,
  rows: i32, C: i32, eps: f32,
): void {
  const lo = splitLo(rows, tid, nth, 1);
  const hi = splitHi(rows, tid, nth, 1);
  for (let r = lo; r < hi; r++) {
    const xr = x + <usize>r * C * 4;
    const yr = out + <usize>r * C * 4;
    const mu = sum(xr, C) / <f32>C;
    const muv = f32x4.splat(mu);
    let v0 = f32x4.splat(0);
    let c = 0;
    for (; c + 4 <= C; c += 4) {
      const d = f32x4.sub(v128.load(at32(xr, c)), muv);
      v0 = f32x4.add(v0, f32x4.mul(d, d));
    }
    let v = hsum(v0);
    for (; c < C; c++) {
      const d = load<f32>(at32(xr, c)) - mu;
      v += d * d;
    }
    const s = <f32>(1.0 / Math.sqrt(<f64>v / C + eps));
    store<f32>(at32(mean, r), mu);
    store<f32>(at32(rstd, r), s);
    const sv = f32x4.splat(s);
    c = 0;
    for (; c + 4 <= C; c += 4) {
      let y = f32x4.mul(f32x4.mul(f32x4.sub(v128.load(at32(xr, c)), muv), sv), v128.load(at32(w, c)));
      if (hasB) y = f32x4.add(y, v128.load(at32(b, c)));
      v128.store(at32(yr, c), y);
    }
    for (; c < C; c++) {
      const y = (load<f32>(at32(xr, c)) - mu) * s * load<f32>(at32(w, c));
      store<f32>(at32(yr, c), hasB ? y + load<f32>(at32(b, c)) : y);
    }
  }
}

/**
 * dx = rstd (g - mean(g) - xhat mean(g xhat)) with g = dy w; the sums over rows of dy xhat (dw) and
 * dy (db) go to `partials` as [dw | db] rows, one per block of rows (as rmsnormBackward's).
 */
export function layernormBackward(
  tid: i32, nth: i32, dx: usize, hasDb: i32, dy: usize, x: usize, w: usize,
  mean: usize, rstd: usize, rows: i32, C: i32, partials: usize, blocks: i32,
): void {
  for (let blk = splitLo(blocks, tid, nth, 1); blk < splitHi(blocks, tid, nth, 1); blk++) {
    const accW = partials + <usize>blk * 2 * C * 4;
    memory.fill(accW, 0, <usize>C * 8);
    layernormBackwardRows(dx, accW, accW + <usize>C * 4, hasDb, dy, x, w, mean, rstd, splitLo(rows, blk, blocks, 1), splitHi(rows, blk, blocks, 1), C);
  }
}

@inline
function layernormBackwardRows(
  dx: usize, accW: usize, accB: usize, hasDb: i32, dy: usize, x: usize, w: usize, mean: usize, rstd: usize, lo: i32, hi: i32, C: i32,
): void {
  for (let r = lo; r < hi; r++) {
    const xr = x + <usize>r * C * 4;
    const dyr = dy + <usize>r * C * 4;
    const dxr = dx + <usize>r * C * 4;
    const mu = load<f32>(at32(mean, r));
    const s = load<f32>(at32(rstd, r));
    const muv = f32x4.splat(mu);
    const sv = f32x4.splat(s);
    let gs = f32x4.splat(0), gx = f32x4.splat(0);
    let c = 0;
    for (; c + 4 <= C; c += 4) {
      const xhat = f32x4.mul(f32x4.sub(v128.load(at32(xr, c)), muv), sv);
      const g = f32x4.mul(v128.load(at32(dyr, c)), v128.load(at32(w, c)));
      gs = f32x4.add(gs, g);
      gx = f32x4.add(gx, f32x4.mul(g, xhat));
    }
    let gMean = hsum(gs);
    let gxMean = hsum(gx);
    for (; c < C; c++) {
      const xhat = (load<f32>(at32(xr, c)) - mu) * s;
      const g = load<f32>(at32(dyr, c)) * load<f32>(at32(w, c));
      gMean += g;
      gxMean += g * xhat;
    }
    gMean /= <f32>C;
    gxMean /= <f32>C;
    const gmv = f32x4.splat(gMean);
    const gxv = f32x4.splat(gxMean);
    c = 0;
    for (; c + 4 <= C; c += 4) {
      const xhat = f32x4.mul(f32x4.sub(v128.load(at32(xr, c)), muv), sv);
      const dyv = v128.load(at32(dyr, c));
      const g = f32x4.mul(dyv, v128.load(at32(w, c)));
      v128.store(at32(dxr, c), f32x4.mul(sv, f32x4.sub(f32x4.sub(g, gmv), f32x4.mul(xhat, gxv))));
      v128.store(at32(accW, c), f32x4.add(v128.load(at32(accW, c)), f32x4.mul(dyv, xhat)));
      if (hasDb) v128.store(at32(accB, c), f32x4.add(v128.load(at32(accB, c)), dyv));
    }
    for (; c < C; c++) {
      const xhat = (load<f32>(at32(xr, c)) - mu) * s;
      const dyv = load<f32>(at32(dyr, c));
      const g = dyv * load<f32>(at32(w, c));
      store<f32>(at32(dxr, c), s * (g - gMean - xhat * gxMean));
      store<f32>(at32(accW, c), load<f32>(at32(accW, c)) + dyv * xhat);
      if (hasDb) store<f32>(at32(accB, c), load<f32>(at32(accB, c)) + dyv);
    }
  }
}

/** out[c] += sum over p < parts of partials[p * stride + c] for c < C; threads own column ranges. */
export function reducePartials(tid: i32, nth: i32, out: usize, partials: usize, parts: i32, stride: i32, C: i32): void {
  const c0 = splitLo(C, tid, nth, 16);
  const c1 = splitHi(C, tid, nth, 16);
  for (let p = 0; p < parts; p++) addInto(at32(out, c0), partials + (<usize>p * stride + c0) * 4, c1 - c0);
}

/**
 * Rotate-half RoPE on x (B, T, H, K): for i < rotDim/2 with angle = pos invFreq[i],
 * y[i] = x[i] cos - x[i + half] sin, y[i + half] = x[i + half] cos + x[i] sin; dims past rotDim
 * pass through. cos and sin are computed once per time step (in f64, as the reference does)
 * into the thread's scratch and reused by every head.
 */
export function ropeForward(
  tid: i32, nth: i32, out: usize, x: usize, invFreq: usize, B: i32, T: i32, H: i32, K: i32, rotDim: i32,
  pos0: i32, attnScaling: f32, inverse: i32, scratch: usize, scratchStride: i32,
): void {
  const half = rotDim >> 1;
  const cosT = scratch + <usize>tid * scratchStride;
  const sinT = cosT + <usize>half * 4;
  const lo = splitLo(B * T, tid, nth, 1);
  const hi = splitHi(B * T, tid, nth, 1);
  const sign: f64 = inverse ? -1 : 1;
  for (let row = lo; row < hi; row++) {
    const pos = pos0 + (row % T);
    for (let i = 0; i < half; i++) {
      const angle = <f64><f32>(<f64>pos * <f64>load<f32>(at32(invFreq, i)));
      store<f32>(at32(cosT, i), <f32>(Math.cos(angle) * attnScaling));
      store<f32>(at32(sinT, i), <f32>(<f64><f32>(Math.sin(angle) * attnScaling) * sign));
    }
    for (let h = 0; h < H; h++) {
      const base = (<usize>row * H + h) * K * 4;
      const xr = x + base;
      const yr = out + base;
      let i = 0;
      for (; i + 4 <= half; i += 4) {
        const c = v128.load(at32(cosT, i));
        const s = v128.load(at32(sinT, i));
        const x1 = v128.load(at32(xr, i));
        const x2 = v128.load(at32(xr, i + half));
        v128.store(at32(yr, i), f32x4.sub(f32x4.mul(x1, c), f32x4.mul(x2, s)));
        v128.store(at32(yr, i + half), f32x4.add(f32x4.mul(x2, c), f32x4.mul(x1, s)));
      }
      for (; i < half; i++) {
        const c = load<f32>(at32(cosT, i));
        const s = load<f32>(at32(sinT, i));
        const x1 = load<f32>(at32(xr, i));
        const x2 = load<f32>(at32(xr, i + half));
        store<f32>(at32(yr, i), x1 * c - x2 * s);
        store<f32>(at32(yr, i + half), x2 * c + x1 * s);
      }
      if (rotDim < K && yr != xr) memory.copy(at32(yr, rotDim), at32(xr, rotDim), <usize>(K - rotDim) * 4);
    }
  }
}
