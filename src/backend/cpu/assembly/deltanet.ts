/**
 * Gated DeltaNet (Yang, Kautz & Hatamizadeh 2024; see kernels_deltanet.ts, ref/deltanet.ts) per
 * (sequence, value head), with the (Dk x Dv) state S in the thread's scratch, rows padded to Dv4
 * lanes. Each column e of S is its own recurrence:
 *   S[:, e] *= a;  kv_e = k . S[:, e];  delta_e = beta (v_e - kv_e);  S[:, e] += k delta_e;  o_e = (scale q) . S[:, e]
 * so a block of 4 columns is one vector per row r and every step is broadcasts of k[r], q[r]
 * times rows of S: no horizontal sums. The forward runs this recurrence token by token (the
 * chunked WY form of the reference computes the same outputs and chunk states; on f32x4 without
 * fused multiply-add its extra products do not pay at these head sizes).
 *
 * The backward recomputes each chunk's states from its saved start and runs the reference's
 * reverse-mode step (ref/deltanet.ts stepBackward). dq and dk of a key head sum over the value
 * heads that read it, so a work item is a (sequence, key head) and runs its value heads in order.
 */
import { splitLo, splitHi } from "./common";
import { expv } from "./simd_math";
import { sp, vat, load4, store4, hsum4, lane } from "./mixer_common";

@inline function dv4(Dv: i32): i32 {
  return (Dv + 3) & ~3;
}

@inline function expf(x: f32): f32 {
  return lane(expv(sp(x)));
}

/** Dense (Dk, Dv) state at src (zeros when 0) into scratch rows of Dv4 floats. */
function loadPadded(S: usize, src: usize, Dk: i32, Dv: i32): void {
  const D4 = dv4(Dv);
  for (let r = 0; r < Dk; r++) {
    for (let e = 0; e < D4; e++) store<f32>(S + ((<usize>r * D4 + e) << 2), src && e < Dv ? load<f32>(src + ((<usize>r * Dv + e) << 2)) : 0);
  }
}

function storeDense(dst: usize, S: usize, Dk: i32, Dv: i32): void {
  const D4 = dv4(Dv);
  for (let r = 0; r < Dk; r++) memory.copy(dst + ((<usize>r * Dv) << 2), S + ((<usize>r * D4) << 2), <usize>Dv << 2);
}

/**
 * One token on S (rows rowBytes apart, Dv columns): decay a, write strength bt, and o = S^T (scale q)
 * to out + vo when out is non-zero. k and q rows at qo, v and out rows at vo (byte offsets).
 * `padded`: S rows have zero lanes up to a multiple of 4 (scratch), so whole vectors are read
 * and written; otherwise (a state in place) the last block is partial.
 */
@inline function deltaStep(
  S: usize, rowBytes: usize, q: usize, k: usize, v: usize, out: usize, qo: usize, vo: usize, a: f32, bt: f32, scale: f32, Dk: i32, Dv: i32, padded: bool,
): void {
  for (let e = 0; e < Dv; e += 4) {
    if (e + 4 <= Dv) deltaColumns(S, rowBytes, q, k, v, out, qo, vo, a, bt, scale, Dk, e, 4, 4);
    else if (padded) deltaColumns(S, rowBytes, q, k, v, out, qo, vo, a, bt, scale, Dk, e, 4, Dv - e);
    else deltaColumns(S, rowBytes, q, k, v, out, qo, vo, a, bt, scale, Dk, e, Dv - e, Dv - e);
  }
}

/** deltaStep on columns e .. e + m of S, whose rows are read and written len (4, or m) floats at a time. */
@inline function deltaColumns(
  S: usize, rowBytes: usize, q: usize, k: usize, v: usize, out: usize, qo: usize, vo: usize, a: f32, bt: f32, scale: f32, Dk: i32, e: i32, len: i32, m: i32,
): void {
  const av = sp(a);
  const eo = <usize>e << 2;
  let kv = sp(0);
  let s = S + eo;
  for (let r = 0; r < Dk; r++) {
    const x = f32x4.mul(load4(s, len), av);
    store4(s, x, len);
    kv = f32x4.add(kv, f32x4.mul(v128.load32_splat(k + qo + (<usize>r << 2)), x));
    s += rowBytes;
  }
  const delta = f32x4.mul(sp(bt), f32x4.sub(load4(v + vo + eo, m), kv));
  s = S + eo;
  if (out) {
    let o = sp(0);
    const sv = sp(scale);
    for (let r = 0; r < Dk; r++) {
      const x = f32x4.add(load4(s, len), f32x4.mul(v128.load32_splat(k + qo + (<usize>r << 2)), delta));
      store4(s, x, len);
      o = f32x4.add(o, f32x4.mul(f32x4.mul(sv, v128.load32_splat(q + qo + (<usize>r << 2))), x));
      s += rowBytes;
    }
    store4(out + vo + eo, o, m);
  } else {
    for (let r = 0; r < Dk; r++) {
      store4(s, f32x4.add(load4(s, len), f32x4.mul(v128.load32_splat(k + qo + (<usize>r << 2)), delta)), len);
      s += rowBytes;
    }
  }
}

/** Scratch floats per thread of deltanetForward: the padded state. */
export function deltanetForwardScratchFloats(Dk: i32, Dv: i32): i32 {
  return Dk * dv4(Dv);
}

export function deltanetForward(
  tid: i32, nth: i32, out: usize, finalState: usize, chunkStates: usize, q: usize, k: usize, v: usize, g: usize, beta: usize, initialState: usize,
  B: i32, T: i32, H: i32, G: i32, Dk: i32, Dv: i32, scale: f32, chunk: i32, scratch: usize, stride: i32,
): void {
  const S = scratch + <usize>tid * stride;
  const rowBytes = <usize>dv4(Dv) << 2;
  const n = <usize>Dk * Dv;
  const nChunks = (T + chunk - 1) / chunk;
  const lo = splitLo(B * H, tid, nth, 1);
  const hi = splitHi(B * H, tid, nth, 1);
  for (let it = lo; it < hi; it++) {
    const b = it / H;
    const h = it % H;
    const kh = h / (H / G);
    loadPadded(S, initialState ? initialState + ((<usize>it * n) << 2) : 0, Dk, Dv);
    for (let t = 0; t < T; t++) {
      if (chunkStates && t % chunk == 0) storeDense(chunkStates + ((<usize>(it * nChunks + t / chunk) * n) << 2), S, Dk, Dv);
      const gi = (<usize>((b * T + t) * H + h)) << 2;
      const qo = (<usize>((b * T + t) * G + kh) * Dk) << 2;
      const vo = (<usize>((b * T + t) * H + h) * Dv) << 2;
      deltaStep(S, rowBytes, q, k, v, out, qo, vo, expf(load<f32>(g + gi)), load<f32>(beta + gi), scale, Dk, Dv, true);
    }
    if (finalState) storeDense(finalState + ((<usize>it * n) << 2), S, Dk, Dv);
  }
}

/** One token (T = 1) on the state (B, H, Dk, Dv) in place. */
export function deltanetStep(
  tid: i32, nth: i32, out: usize, state: usize, q: usize, k: usize, v: usize, g: usize, beta: usize, B: i32, H: i32, G: i32, Dk: i32, Dv: i32, scale: f32,
): void {
  const lo = splitLo(B * H, tid, nth, 1);
  const hi = splitHi(B * H, tid, nth, 1);
  for (let it = lo; it < hi; it++) {
    const b = it / H;
    const h = it % H;
    const kh = h / (H / G);
    const qo = (<usize>(b * G + kh) * Dk) << 2;
    const vo = (<usize>it * Dv) << 2;
    deltaStep(state + ((<usize>it * Dk * Dv) << 2), <usize>Dv << 2, q, k, v, out, qo, vo, expf(load<f32>(g + (<usize>it << 2))), load<f32>(beta + (<usize>it << 2)), scale, Dk, Dv, false);
  }
}

/** Scratch floats per thread of deltanetBackward: dS, the per-row dq and dk lane sums, the chunk's states. */
export function deltanetBackwardScratchFloats(Dk: i32, Dv: i32, chunk: i32): i32 {
  return Dk * dv4(Dv) + 8 * Dk + (chunk + 1) * Dk * dv4(Dv);
}

export function deltanetBackward(
  tid: i32, nth: i32, dq: usize, dk: usize, dv: usize, dg: usize, dbeta: usize, dout: usize, q: usize, k: usize, v: usize, g: usize, beta: usize,
  chunkStates: usize, B: i32, T: i32, H: i32, G: i32, Dk: i32, Dv: i32, scale: f32, chunk: i32, scratch: usize, stride: i32,
): void {
  const D4 = dv4(Dv);
  const SN = <usize>Dk * D4;
  const rowBytes = <usize>D4 << 2;
  const n = <usize>Dk * Dv;
  const dS = scratch + <usize>tid * stride;
  const sums = dS + (SN << 2); // dq, dk lane sums: Dk vectors each
  const states = vat(sums, 2 * Dk);
  const nChunks = (T + chunk - 1) / chunk;
  const hpg = H / G;
  const lo = splitLo(B * G, tid, nth, 1);
  const hi = splitHi(B * G, tid, nth, 1);
  for (let it = lo; it < hi; it++) {
    const b = it / G;
    const kh = it % G;
    for (let t = 0; t < T; t++) {
      const qo = (<usize>((b * T + t) * G + kh) * Dk) << 2;
      memory.fill(dq + qo, 0, <usize>Dk << 2);
      memory.fill(dk + qo, 0, <usize>Dk << 2);
    }
    for (let h = kh * hpg; h < (kh + 1) * hpg; h++) {
      memory.fill(dS, 0, SN << 2);
      for (let c = nChunks - 1; c >= 0; c--) {
        const t0 = c * chunk;
        const L = min(chunk, T - t0);
        loadPadded(states, chunkStates + ((<usize>((b * H + h) * nChunks + c) * n) << 2), Dk, Dv);
        for (let i = 0; i < L; i++) {
          const S = states + ((<usize>(i + 1) * SN) << 2);
          memory.copy(S, S - (SN << 2), SN << 2);
          const t = t0 + i;
          const gi = (<usize>((b * T + t) * H + h)) << 2;
          deltaStep(S, rowBytes, q, k, v, 0, (<usize>((b * T + t) * G + kh) * Dk) << 2, (<usize>((b * T + t) * H + h) * Dv) << 2, expf(load<f32>(g + gi)), load<f32>(beta + gi), scale, Dk, Dv, true);
        }
        for (let i = L - 1; i >= 0; i--) {
          const t = t0 + i;
          stepBackward(
            dS, sums, states + ((<usize>i * SN) << 2), states + ((<usize>(i + 1) * SN) << 2), dq, dk, dv, dg, dbeta, dout, q, k, v, g, beta,
            (<usize>((b * T + t) * G + kh) * Dk) << 2, (<usize>((b * T + t) * H + h) * Dv) << 2, (<usize>((b * T + t) * H + h)) << 2, Dk, Dv, scale,
          );
        }
      }
    }
  }
}

/** One token of the reverse pass: dS holds dL/dS_t on entry and dL/dS_{t-1} on return. */
@inline function stepBackward(
  dS: usize, sums: usize, Sprev: usize, S: usize, dq: usize, dk: usize, dv: usize, dg: usize, dbeta: usize, dout: usize,
  q: usize, k: usize, v: usize, g: usize, beta: usize, qo: usize, vo: usize, gi: usize, Dk: i32, Dv: i32, scale: f32,
): void {
  const rowBytes = <usize>dv4(Dv) << 2;
  const a = expf(load<f32>(g + gi));
  const av = sp(a);
  const bt = sp(load<f32>(beta + gi));
  const sq = vat(sums, 0);
  const sk = vat(sums, Dk);
  memory.fill(sums, 0, <usize>Dk * 32);
  let dgAcc = sp(0);
  let dbAcc = sp(0);
  for (let e = 0; e < Dv; e += 4) {
    const len = min(4, Dv - e);
    const eo = <usize>e << 2;
    const dov = load4(dout + vo + eo, len);
    const vv = load4(v + vo + eo, len);
    let kv = sp(0);
    for (let r = 0; r < Dk; r++) kv = f32x4.add(kv, f32x4.mul(v128.load(Sprev + <usize>r * rowBytes + eo), v128.load32_splat(k + qo + (<usize>r << 2))));
    kv = f32x4.mul(kv, av);
    const resid = f32x4.sub(vv, kv);
    const delta = f32x4.mul(bt, resid);
    let ddelta = sp(0);
    for (let r = 0; r < Dk; r++) {
      const o = <usize>r * rowBytes + eo;
      const ro = <usize>r << 2;
      const ds = f32x4.add(v128.load(dS + o), f32x4.mul(sp(scale * load<f32>(q + qo + ro)), dov));
      v128.store(dS + o, ds);
      v128.store(vat(sq, r), f32x4.add(v128.load(vat(sq, r)), f32x4.mul(v128.load(S + o), dov)));
      ddelta = f32x4.add(ddelta, f32x4.mul(ds, v128.load32_splat(k + qo + ro)));
      v128.store(vat(sk, r), f32x4.add(v128.load(vat(sk, r)), f32x4.mul(ds, delta)));
    }
    dbAcc = f32x4.add(dbAcc, f32x4.mul(ddelta, resid));
    store4(dv + vo + eo, f32x4.mul(bt, ddelta), len);
    const dkv = f32x4.neg(f32x4.mul(bt, ddelta));
    for (let r = 0; r < Dk; r++) {
      const o = <usize>r * rowBytes + eo;
      const P = f32x4.mul(av, v128.load(Sprev + o));
      const dP = f32x4.add(v128.load(dS + o), f32x4.mul(v128.load32_splat(k + qo + (<usize>r << 2)), dkv));
      v128.store(vat(sk, r), f32x4.add(v128.load(vat(sk, r)), f32x4.mul(P, dkv)));
      dgAcc = f32x4.add(dgAcc, f32x4.mul(dP, P));
      v128.store(dS + o, f32x4.mul(av, dP));
    }
  }
  for (let r = 0; r < Dk; r += 4) {
    const m = min(4, Dk - r);
    const q4 = hsum4(v128.load(vat(sq, r)), m > 1 ? v128.load(vat(sq, r + 1)) : sp(0), m > 2 ? v128.load(vat(sq, r + 2)) : sp(0), m > 3 ? v128.load(vat(sq, r + 3)) : sp(0));
    const k4 = hsum4(v128.load(vat(sk, r)), m > 1 ? v128.load(vat(sk, r + 1)) : sp(0), m > 2 ? v128.load(vat(sk, r + 2)) : sp(0), m > 3 ? v128.load(vat(sk, r + 3)) : sp(0));
    const ro = qo + (<usize>r << 2);
    store4(dq + ro, f32x4.add(load4(dq + ro, m), f32x4.mul(sp(scale), q4)), m);
    store4(dk + ro, f32x4.add(load4(dk + ro, m), k4), m);
  }
  store<f32>(dbeta + gi, lane(hsum4(dbAcc, sp(0), sp(0), sp(0))));
  store<f32>(dg + gi, lane(hsum4(dgAcc, sp(0), sp(0), sp(0))));
}

/** out = x / sqrt(sum(x^2) + eps) per row; rnorm (rows) saved. */
export function l2normForward(tid: i32, nth: i32, out: usize, rnorm: usize, x: usize, rows: i32, C: i32, eps: f32): void {
  const lo = splitLo(rows, tid, nth, 1);
  const hi = splitHi(rows, tid, nth, 1);
  for (let r = lo; r < hi; r++) {
    const xr = x + ((<usize>r * C) << 2);
    const s: f32 = <f32>1 / sqrt<f32>(rowDot(xr, xr, C) + eps);
    store<f32>(rnorm + (<usize>r << 2), s);
    scaleInto(out + ((<usize>r * C) << 2), xr, s, C);
  }
}

/** dx = rnorm dy - x rnorm^3 (x . dy) */
export function l2normBackward(tid: i32, nth: i32, dx: usize, dy: usize, x: usize, rnorm: usize, rows: i32, C: i32): void {
  const lo = splitLo(rows, tid, nth, 1);
  const hi = splitHi(rows, tid, nth, 1);
  for (let r = lo; r < hi; r++) {
    const o = (<usize>r * C) << 2;
    const s = load<f32>(rnorm + (<usize>r << 2));
    const c3 = sp(s * s * s * rowDot(x + o, dy + o, C));
    const sv = sp(s);
    let c = 0;
    for (; c + 4 <= C; c += 4) {
      const p = o + (<usize>c << 2);
      v128.store(dx + p, f32x4.sub(f32x4.mul(sv, v128.load(dy + p)), f32x4.mul(v128.load(x + p), c3)));
    }
    for (; c < C; c++) {
      const p = o + (<usize>c << 2);
      store<f32>(dx + p, s * load<f32>(dy + p) - load<f32>(x + p) * lane(c3));
    }
  }
}

@inline function rowDot(a: usize, b: usize, C: i32): f32 {
  let s0 = sp(0);
  let s1 = sp(0);
  let c = 0;
  for (; c + 8 <= C; c += 8) {
    s0 = f32x4.add(s0, f32x4.mul(v128.load(a + (<usize>c << 2)), v128.load(b + (<usize>c << 2))));
    s1 = f32x4.add(s1, f32x4.mul(v128.load(a + (<usize>c << 2), 16), v128.load(b + (<usize>c << 2), 16)));
  }
  for (; c + 4 <= C; c += 4) s0 = f32x4.add(s0, f32x4.mul(v128.load(a + (<usize>c << 2)), v128.load(b + (<usize>c << 2))));
  let s = lane(hsum4(f32x4.add(s0, s1), sp(0), sp(0), sp(0)));
  for (; c < C; c++) s += load<f32>(a + (<usize>c << 2)) * load<f32>(b + (<usize>c << 2));
  return s;
}

@inline function scaleInto(out: usize, x: usize, s: f32, C: i32): void {
  const sv = sp(s);
  let c = 0;
  for (; c + 4 <= C; c += 4) v128.store(out + (<usize>c << 2), f32x4.mul(sv, v128.load(x + (<usize>c << 2))));
  for (; c < C; c++) store<f32>(out + (<usize>c << 2), s * load<f32>(x + (<usize>c << 2)));
}
