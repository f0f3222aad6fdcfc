/**
 * Mamba's selective scan (Gu & Dao 2023, Alg. 2; see kernels_scan.ts), vectorised over 4
 * channels d: per step and state index n the four channels share B_t[n] and C_t[n] (one
 * broadcast each), and their states h[n] are four independent recurrences
 *   dt_t = softplus(dt_t + dtBias)   dA = exp(dt_t A[:, n])   h[n] = dA h[n] + dt_t B_t[n] u_t
 *   y_t = sum_n C_t[n] h[n] + Dskip u_t     out_t = y_t silu(z_t)
 * The N state vectors of a channel block live in the thread's scratch (L1) for the whole time
 * loop, with A transposed beside them (At[n] = A[d .. d+3, n]).
 *
 * When A <= 0 and dt goes through softplus (dt >= 0), dt A <= 0 and the cheaper exp for
 * non-positive arguments is exact enough (simd_math expNegv); otherwise the general one.
 *
 * The backward recomputes each chunk's states from its checkpoint (and keeps the step's decay
 * exp(dt A) beside them, so the reverse pass does no exp), then runs the adjoint
 *   g[n] += dy C[n];  dC[n] += dy h_t[n];  dB[n] += g[n] dt u;  ddt += g[n] (h_{t-1}[n] dA A[n] + B[n] u)
 *   dA[n] += g[n] h_{t-1}[n] dA dt;  du += g[n] dt B[n];  g[n] *= dA
 * dB and dC (B, T, N) are sums over channels: a work item is a sequence b and a slab of channel
 * blocks that sums its blocks in order into its own (B, T, N) rows; slabs (more than one only
 * when B is small) are added afterwards in order, as are the per-sequence rows of dA, dDskip
 * and ddtBias, so every result is the same for any thread count.
 */
import { claim, splitLo, splitHi } from "./common";
import { expv, expNegv, sigmoidSide } from "./simd_math";
import { VB, sp, vat, load4, store4, gather4, scatter4, hsum4, softplusv, softplusGradv, hmaxv, lane } from "./mixer_common";

// ---------------------------------------------------------------- shared pieces

/** At[n] = A[c .. c+len, n] (zero lanes above len); returns whether every entry is <= 0. */
@inline function loadAt(At: usize, A: usize, c: i32, N: i32, len: i32): bool {
  let mx = sp(-Infinity);
  for (let n = 0; n < N; n++) {
    const a = gather4(A + ((<usize>c * N + n) << 2), <usize>N << 2, len);
    v128.store(vat(At, n), a);
    mx = f32x4.max(mx, a);
  }
  return hmaxv(mx) <= 0;
}

/** h[n] lanes from a (.., D, N) state at row base (channel c's row): zeros when base is 0. */
@inline function loadState(h: usize, base: usize, N: i32, len: i32): void {
  for (let n = 0; n < N; n++) v128.store(vat(h, n), base ? gather4(base + (<usize>n << 2), <usize>N << 2, len) : sp(0));
}

@inline function storeState(base: usize, h: usize, N: i32, len: i32): void {
  for (let n = 0; n < N; n++) scatter4(base + (<usize>n << 2), <usize>N << 2, v128.load(vat(h, n)), len);
}

@inline function expSel(x: v128, neg: bool): v128 {
  return neg ? expNegv(x) : expv(x);
}

/** dt + bias, through softplus when asked. */
@inline function stepSize(dtv: v128, bias: v128, softplus: i32): v128 {
  const v = f32x4.add(dtv, bias);
  return softplus ? softplusv(v) : v;
}

// ---------------------------------------------------------------- forward

/** Scratch floats per thread of the forward and the step: At and h. */
export function scanForwardScratchFloats(N: i32): i32 {
  return 8 * N;
}

export function selectiveScanForward(
  tid: i32, nth: i32, out: usize, stateOut: usize, ckpt: usize, u: usize, dt: usize, A: usize, Bm: usize, Cm: usize,
  Dskip: usize, z: usize, dtBias: usize, stateIn: usize, B: i32, T: i32, D: i32, N: i32, chunk: i32, softplus: i32,
  scratch: usize, stride: i32,
): void {
  const At = scratch + <usize>tid * stride;
  const h = At + (<usize>N << 4);
  const groups = (D + 3) >> 2;
  const lo = splitLo(B * groups, tid, nth, 1);
  const hi = splitHi(B * groups, tid, nth, 1);
  for (let it = lo; it < hi; it++) {
    const b = it / groups;
    const c = (it % groups) << 2;
    const len = min(4, D - c);
    const neg = loadAt(At, A, c, N, len) && softplus != 0;
    const row = (<usize>(b * D + c) * N) << 2;
    loadState(h, stateIn ? stateIn + row : 0, N, len);
    if (len == 4) {
      if (neg) forwardSteps(out, ckpt, u, dt, Bm, Cm, Dskip, z, dtBias, b, c, T, D, N, chunk, softplus, At, h, 4, true);
      else forwardSteps(out, ckpt, u, dt, Bm, Cm, Dskip, z, dtBias, b, c, T, D, N, chunk, softplus, At, h, 4, false);
    } else {
      forwardSteps(out, ckpt, u, dt, Bm, Cm, Dskip, z, dtBias, b, c, T, D, N, chunk, softplus, At, h, len, false);
    }
    if (stateOut) storeState(stateOut + row, h, N, len);
  }
}

@inline function forwardSteps(
  out: usize, ckpt: usize, u: usize, dt: usize, Bm: usize, Cm: usize, Dskip: usize, z: usize, dtBias: usize,
  b: i32, c: i32, T: i32, D: i32, N: i32, chunk: i32, softplus: i32, At: usize, h: usize, len: i32, neg: bool,
): void {
  const cb = <usize>c << 2;
  const bias = dtBias ? load4(dtBias + cb, len) : sp(0);
  const dsk = Dskip ? load4(Dskip + cb, len) : sp(0);
  const chunks = (T + chunk - 1) / chunk;
  for (let t = 0; t < T; t++) {
    if (ckpt && t % chunk == 0) storeState(ckpt + ((<usize>((b * chunks + t / chunk) * D + c) * N) << 2), h, N, len);
    const i = ((<usize>(b * T + t) * D) << 2) + cb;
    const delta = stepSize(load4(dt + i, len), bias, softplus);
    const uv = load4(u + i, len);
    const du = f32x4.mul(delta, uv);
    const bRow = Bm + ((<usize>(b * T + t) * N) << 2);
    const cRow = Cm + ((<usize>(b * T + t) * N) << 2);
    let y0 = sp(0);
    let y1 = sp(0);
    let n = 0;
    for (; n + 2 <= N; n += 2) {
      const d0 = expSel(f32x4.mul(delta, v128.load(vat(At, n))), neg);
      const d1 = expSel(f32x4.mul(delta, v128.load(vat(At, n + 1))), neg);
      const h0 = f32x4.add(f32x4.mul(d0, v128.load(vat(h, n))), f32x4.mul(du, v128.load32_splat(bRow + (<usize>n << 2))));
      const h1 = f32x4.add(f32x4.mul(d1, v128.load(vat(h, n + 1))), f32x4.mul(du, v128.load32_splat(bRow + (<usize>n << 2), 4)));
      v128.store(vat(h, n), h0);
      v128.store(vat(h, n + 1), h1);
      y0 = f32x4.add(y0, f32x4.mul(h0, v128.load32_splat(cRow + (<usize>n << 2))));
      y1 = f32x4.add(y1, f32x4.mul(h1, v128.load32_splat(cRow + (<usize>n << 2), 4)));
    }
    if (n < N) {
      const d0 = expSel(f32x4.mul(delta, v128.load(vat(At, n))), neg);
      const h0 = f32x4.add(f32x4.mul(d0, v128.load(vat(h, n))), f32x4.mul(du, v128.load32_splat(bRow + (<usize>n << 2))));
      v128.store(vat(h, n), h0);
      y0 = f32x4.add(y0, f32x4.mul(h0, v128.load32_splat(cRow + (<usize>n << 2))));
    }
    let y = f32x4.add(f32x4.add(y0, y1), f32x4.mul(dsk, uv));
    if (z) {
      const zv = load4(z + i, len);
      y = f32x4.mul(y, f32x4.mul(zv, sigmoidSide(zv, 0)));
    }
    store4(out + i, y, len);
  }
}

// ---------------------------------------------------------------- one decoding step

/**
 * One token for B sequences: state (B, D, N) updated in place. Here the state row of a channel
 * is contiguous, so the update is vectorised over n (4 exps per 16 states) and y is one
 * horizontal sum per channel; dt, u, z, Dskip are handled 4 channels at a time.
 */
export function selectiveScanStep(
  tid: i32, nth: i32, out: usize, state: usize, u: usize, dt: usize, A: usize, Bm: usize, Cm: usize,
  Dskip: usize, z: usize, dtBias: usize, B: i32, D: i32, N: i32, softplus: i32,
): void {
  const groups = (D + 3) >> 2;
  const lo = splitLo(B * groups, tid, nth, 1);
  const hi = splitHi(B * groups, tid, nth, 1);
  for (let it = lo; it < hi; it++) {
    const b = it / groups;
    const c = (it % groups) << 2;
    const len = min(4, D - c);
    const i = ((<usize>(b * D + c)) << 2);
    const delta = stepSize(load4(dt + i, len), dtBias ? load4(dtBias + (<usize>c << 2), len) : sp(0), softplus);
    const uv = load4(u + i, len);
    const du = f32x4.mul(delta, uv);
    const bRow = Bm + ((<usize>b * N) << 2);
    const cRow = Cm + ((<usize>b * N) << 2);
    const rows = state + ((<usize>(b * D + c) * N) << 2);
    const aRows = A + ((<usize>c * N) << 2);
    const rowBytes = <usize>N << 2;
    let y = f32x4.splat(0);
    y = f32x4.replace_lane(y, 0, stepRow(rows, aRows, bRow, cRow, f32x4.extract_lane(delta, 0), f32x4.extract_lane(du, 0), N, softplus));
    if (len > 1) y = f32x4.replace_lane(y, 1, stepRow(rows + rowBytes, aRows + rowBytes, bRow, cRow, f32x4.extract_lane(delta, 1), f32x4.extract_lane(du, 1), N, softplus));
    if (len > 2) y = f32x4.replace_lane(y, 2, stepRow(rows + 2 * rowBytes, aRows + 2 * rowBytes, bRow, cRow, f32x4.extract_lane(delta, 2), f32x4.extract_lane(du, 2), N, softplus));
    if (len > 3) y = f32x4.replace_lane(y, 3, stepRow(rows + 3 * rowBytes, aRows + 3 * rowBytes, bRow, cRow, f32x4.extract_lane(delta, 3), f32x4.extract_lane(du, 3), N, softplus));
    if (Dskip) y = f32x4.add(y, f32x4.mul(load4(Dskip + (<usize>c << 2), len), uv));
    if (z) {
      const zv = load4(z + i, len);
      y = f32x4.mul(y, f32x4.mul(zv, sigmoidSide(zv, 0)));
    }
    store4(out + i, y, len);
  }
}

/** h = exp(delta a) h + du B over one channel's row; returns C . h. */
function stepRow(h: usize, a: usize, bRow: usize, cRow: usize, delta: f32, du: f32, N: i32, softplus: i32): f32 {
  let mx = sp(-Infinity);
  let n = 0;
  for (; n + 4 <= N; n += 4) mx = f32x4.max(mx, v128.load(a + (<usize>n << 2)));
  let amax = hmaxv(mx);
  for (; n < N; n++) amax = max(amax, load<f32>(a + (<usize>n << 2)));
  return amax <= 0 && softplus ? stepRowWith(h, a, bRow, cRow, delta, du, N, true) : stepRowWith(h, a, bRow, cRow, delta, du, N, false);
}

@inline function stepRowWith(h: usize, a: usize, bRow: usize, cRow: usize, delta: f32, du: f32, N: i32, neg: bool): f32 {
  const dv = sp(delta);
  const duv = sp(du);
  let y = sp(0);
  let n = 0;
  for (; n + 4 <= N; n += 4) {
    const o = <usize>n << 2;
    const s = f32x4.add(f32x4.mul(expSel(f32x4.mul(dv, v128.load(a + o)), neg), v128.load(h + o)), f32x4.mul(duv, v128.load(bRow + o)));
    v128.store(h + o, s);
    y = f32x4.add(y, f32x4.mul(s, v128.load(cRow + o)));
  }
  let ys = lane(hsum4(y, sp(0), sp(0), sp(0)));
  for (; n < N; n++) {
    const o = <usize>n << 2;
    const s = lane(expSel(sp(delta * load<f32>(a + o)), neg)) * load<f32>(h + o) + du * load<f32>(bRow + o);
    store<f32>(h + o, s);
    ys += s * load<f32>(cRow + o);
  }
  return ys;
}

// ---------------------------------------------------------------- backward

/** Scratch floats per thread of the backward: At, g, dA sums, 2 rows of lane sums, chunk deltas, states, decays. */
export function scanBackwardScratchFloats(N: i32, chunk: i32): i32 {
  return 4 * (5 * N + chunk + (chunk + 1) * N + chunk * N);
}

/**
 * Gradients of selectiveScanForward. dB, dC: the (B, T, N) rows of slab 0 (the outputs
 * themselves when slabs = 1); slab s > 0 writes its own copy at slabTemp + (s - 1) * 2 B T N floats
 * (dB rows, then dC rows). partials (B, D N + 2 D): per sequence, dA then dDskip then ddtBias.
 */
export function selectiveScanBackward(
  tid: i32, nth: i32, du: usize, ddt: usize, dB: usize, dC: usize, dz: usize, dstateIn: usize, partials: usize,
  dout: usize, u: usize, dt: usize, A: usize, Bm: usize, Cm: usize, Dskip: usize, z: usize, dtBias: usize, ckpt: usize,
  B: i32, T: i32, D: i32, N: i32, chunk: i32, softplus: i32, slabs: i32, slabTemp: usize, scratch: usize, stride: i32, counter: usize,
): void {
  const groups = (D + 3) >> 2;
  const w = scratch + <usize>tid * stride;
  const rowsBytes = (<usize>B * T * N) << 2;
  for (let it = claim(counter); it < B * slabs; it = claim(counter)) {
    const b = it / slabs;
    const s = it % slabs;
    const dBs = s == 0 ? dB : slabTemp + <usize>(s - 1) * 2 * rowsBytes;
    const dCs = s == 0 ? dC : slabTemp + <usize>(s - 1) * 2 * rowsBytes + rowsBytes;
    const seqRows = (<usize>b * T * N) << 2;
    memory.fill(dBs + seqRows, 0, (<usize>T * N) << 2);
    memory.fill(dCs + seqRows, 0, (<usize>T * N) << 2);
    const part = partials + ((<usize>b * (D * N + 2 * D)) << 2);
    for (let g = splitLo(groups, s, slabs, 1); g < splitHi(groups, s, slabs, 1); g++) {
      const c = g << 2;
      const len = min(4, D - c);
      const neg = loadAt(w, A, c, N, len) && softplus != 0;
      if (len == 4) {
        if (neg) backwardGroup(du, ddt, dBs, dCs, dz, dstateIn, part, dout, u, dt, Bm, Cm, Dskip, z, dtBias, ckpt, b, c, T, D, N, chunk, softplus, w, 4, true);
        else backwardGroup(du, ddt, dBs, dCs, dz, dstateIn, part, dout, u, dt, Bm, Cm, Dskip, z, dtBias, ckpt, b, c, T, D, N, chunk, softplus, w, 4, false);
      } else {
        backwardGroup(du, ddt, dBs, dCs, dz, dstateIn, part, dout, u, dt, Bm, Cm, Dskip, z, dtBias, ckpt, b, c, T, D, N, chunk, softplus, w, len, false);
      }
    }
  }
}

@inline function backwardGroup(
  du: usize, ddt: usize, dB: usize, dC: usize, dz: usize, dstateIn: usize, part: usize,
  dout: usize, u: usize, dt: usize, Bm: usize, Cm: usize, Dskip: usize, z: usize, dtBias: usize, ckpt: usize,
  b: i32, c: i32, T: i32, D: i32, N: i32, chunk: i32, softplus: i32, w: usize, len: i32, neg: bool,
): void {
  // scratch: At (N) | g (N) | dA sums (N) | row lanes for dB (N) and dC (N) | deltas (chunk) | states ((chunk + 1) N) | decays (chunk N)
  const At = w;
  const gs = vat(w, N);
  const dAs = vat(w, 2 * N);
  const rowB = vat(w, 3 * N);
  const rowC = vat(w, 4 * N);
  const deltas = vat(w, 5 * N);
  const hs = vat(deltas, chunk);
  const decs = vat(hs, (chunk + 1) * N);
  const cb = <usize>c << 2;
  const bias = dtBias ? load4(dtBias + cb, len) : sp(0);
  const dsk = Dskip ? load4(Dskip + cb, len) : sp(0);
  const chunks = (T + chunk - 1) / chunk;
  for (let n = 0; n < N; n++) {
    v128.store(vat(gs, n), sp(0));
    v128.store(vat(dAs, n), sp(0));
  }
  let dDsk = sp(0);
  let dBias = sp(0);
  for (let k = chunks - 1; k >= 0; k--) {
    const t0 = k * chunk;
    const L = min(chunk, T - t0);
    loadState(hs, ckpt + ((<usize>((b * chunks + k) * D + c) * N) << 2), N, len);
    // recompute the chunk's states h_{t0} .. h_{t0 + L} and the decays
    for (let j = 0; j < L; j++) {
      const i = ((<usize>(b * T + t0 + j) * D) << 2) + cb;
      const delta = stepSize(load4(dt + i, len), bias, softplus);
      v128.store(vat(deltas, j), delta);
      const duv = f32x4.mul(delta, load4(u + i, len));
      const bRow = Bm + ((<usize>(b * T + t0 + j) * N) << 2);
      const prev = vat(hs, j * N);
      const next = vat(hs, (j + 1) * N);
      const dec = vat(decs, j * N);
      for (let n = 0; n < N; n++) {
        const e = expSel(f32x4.mul(delta, v128.load(vat(At, n))), neg);
        v128.store(vat(dec, n), e);
        v128.store(vat(next, n), f32x4.add(f32x4.mul(e, v128.load(vat(prev, n))), f32x4.mul(duv, v128.load32_splat(bRow + (<usize>n << 2)))));
      }
    }
    for (let j = L - 1; j >= 0; j--) {
      const t = t0 + j;
      const i = ((<usize>(b * T + t) * D) << 2) + cb;
      const delta = v128.load(vat(deltas, j));
      const uv = load4(u + i, len);
      const g0 = load4(dout + i, len);
      const bRow = Bm + ((<usize>(b * T + t) * N) << 2);
      const cRow = Cm + ((<usize>(b * T + t) * N) << 2);
      const prev = vat(hs, j * N);
      const next = vat(hs, (j + 1) * N);
      const dec = vat(decs, j * N);
      let dy = g0;
      if (z) {
        const zv = load4(z + i, len);
        const sg = sigmoidSide(zv, 0);
        if (dz) {
          // y_t before the gate; dz = dout y silu'(z), silu' = s (1 + z (1 - s))
          let y = f32x4.mul(dsk, uv);
          for (let n = 0; n < N; n++) y = f32x4.add(y, f32x4.mul(v128.load(vat(next, n)), v128.load32_splat(cRow + (<usize>n << 2))));
          const slope = f32x4.mul(sg, f32x4.add(sp(1.0), f32x4.mul(zv, sigmoidSide(zv, 1))));
          store4(dz + i, f32x4.mul(f32x4.mul(g0, y), slope), len);
        }
        dy = f32x4.mul(g0, f32x4.mul(zv, sg));
      }
      let duAcc = f32x4.mul(dsk, dy);
      dDsk = f32x4.add(dDsk, f32x4.mul(dy, uv));
      const dtu = f32x4.mul(delta, uv);
      let dDelta = sp(0);
      for (let n = 0; n < N; n++) {
        const hPrev = v128.load(vat(prev, n));
        const e = v128.load(vat(dec, n));
        const bn = v128.load32_splat(bRow + (<usize>n << 2));
        v128.store(vat(rowC, n), f32x4.mul(dy, v128.load(vat(next, n))));
        const gn = f32x4.add(v128.load(vat(gs, n)), f32x4.mul(dy, v128.load32_splat(cRow + (<usize>n << 2))));
        const he = f32x4.mul(hPrev, e);
        dDelta = f32x4.add(dDelta, f32x4.mul(gn, f32x4.add(f32x4.mul(he, v128.load(vat(At, n))), f32x4.mul(bn, uv))));
        v128.store(vat(dAs, n), f32x4.add(v128.load(vat(dAs, n)), f32x4.mul(f32x4.mul(gn, he), delta)));
        v128.store(vat(rowB, n), f32x4.mul(gn, dtu));
        duAcc = f32x4.add(duAcc, f32x4.mul(f32x4.mul(gn, delta), bn));
        v128.store(vat(gs, n), f32x4.mul(gn, e));
      }
      store4(du + i, duAcc, len);
      const grad = softplus ? softplusGradv(f32x4.add(load4(dt + i, len), bias)) : sp(1.0);
      const ddtv = f32x4.mul(dDelta, grad);
      store4(ddt + i, ddtv, len);
      dBias = f32x4.add(dBias, ddtv);
      addLaneSums(dB + ((<usize>(b * T + t) * N) << 2), rowB, N);
      addLaneSums(dC + ((<usize>(b * T + t) * N) << 2), rowC, N);
    }
  }
  const row = (<usize>(b * D + c) * N) << 2;
  if (dstateIn) storeState(dstateIn + row, gs, N, len);
  storeState(part + ((<usize>c * N) << 2), dAs, N, len);
  store4(part + ((<usize>(D * N + c)) << 2), dDsk, len);
  store4(part + ((<usize>(D * N + D + c)) << 2), dBias, len);
}

/** dst[n] += sum of the lanes of row[n], n < N. */
@inline function addLaneSums(dst: usize, row: usize, N: i32): void {
  let n = 0;
  for (; n + 4 <= N; n += 4) {
    const o = dst + (<usize>n << 2);
    v128.store(o, f32x4.add(v128.load(o), hsum4(v128.load(vat(row, n)), v128.load(vat(row, n + 1)), v128.load(vat(row, n + 2)), v128.load(vat(row, n + 3)))));
  }
  for (; n < N; n++) {
    const o = dst + (<usize>n << 2);
    store<f32>(o, load<f32>(o) + lane(hsum4(v128.load(vat(row, n)), sp(0), sp(0), sp(0))));
  }
}
