/**
 * Reference RWKV kernels (see kernels_rwkv.ts): the WKV-4 recurrence in HF's max-tracking form
 * and the RWKV-7 generalized delta rule, plain loops in JS doubles.
 */
import { WKV4_EMPTY_MAX, type Wkv4Dims, type Wkv7Dims } from "../kernels_rwkv.js";
import type { HostArray } from "../../tensor/dtype.js";

// ---------------------------------------------------------------- WKV-4

/**
 * One channel's WKV-4 state: the running numerator A = aa * e^pp and denominator B = bb * e^pp,
 * divided by e^pp so that neither overflows.
 */
interface Wkv4Channel {
  aa: number;
  bb: number;
  pp: number;
}

/** y_t = (A + e^(u+k) v) / (B + e^(u+k)), evaluated with the larger exponent factored out. */
function wkv4Output(s: Wkv4Channel, u: number, k: number, v: number): number {
  const uk = u + k;
  const p = Math.max(s.pp, uk);
  const e1 = Math.exp(s.pp - p);
  const e2 = Math.exp(uk - p);
  return (e1 * s.aa + e2 * v) / (e1 * s.bb + e2);
}

/** A <- e^w A + e^k v,  B <- e^w B + e^k, with the new exponent max(pp + w, k). */
function wkv4Update(s: Wkv4Channel, w: number, k: number, v: number): void {
  const wp = w + s.pp;
  const p = Math.max(wp, k);
  const e1 = Math.exp(wp - p);
  const e2 = Math.exp(k - p);
  s.aa = e1 * s.aa + e2 * v;
  s.bb = e1 * s.bb + e2;
  s.pp = p;
}

function loadWkv4(state: HostArray | null, b: number, c: number, D: number): Wkv4Channel {
  if (!state) return { aa: 0, bb: 0, pp: WKV4_EMPTY_MAX };
  const o = b * 3 * D + c;
  return { aa: state[o], bb: state[o + D], pp: state[o + 2 * D] };
}

function storeWkv4(state: HostArray, s: Wkv4Channel, o: number, D: number): void {
  state[o] = s.aa;
  state[o + D] = s.bb;
  state[o + 2 * D] = s.pp;
}

export function wkv4Forward(
  y: HostArray,
  stateOut: HostArray | null,
  saved: HostArray | null,
  w: HostArray,
  u: HostArray,
  k: HostArray,
  v: HostArray,
  state0: HostArray | null,
  d: Wkv4Dims,
): void {
  const { B, T, D } = d;
  for (let b = 0; b < B; b++) {
    for (let c = 0; c < D; c++) {
      const s = loadWkv4(state0, b, c, D);
      for (let t = 0; t < T; t++) {
        const i = (b * T + t) * D + c;
        if (saved) storeWkv4(saved, s, (b * T + t) * 3 * D + c, D);
        y[i] = wkv4Output(s, u[c], k[i], v[i]);
        wkv4Update(s, w[c], k[i], v[i]);
      }
      if (stateOut) storeWkv4(stateOut, s, b * 3 * D + c, D);
    }
  }
}

export function wkv4Step(y: HostArray, state: HostArray, w: HostArray, u: HostArray, k: HostArray, v: HostArray, d: { B: number; D: number }): void {
  const { B, D } = d;
  for (let b = 0; b < B; b++) {
    for (let c = 0; c < D; c++) {
      const i = b * D + c;
      const s = loadWkv4(state, b, c, D);
      y[i] = wkv4Output(s, u[c], k[i], v[i]);
      wkv4Update(s, w[c], k[i], v[i]);
      storeWkv4(state, s, b * 3 * D + c, D);
    }
  }
}

/**
 * Reverse pass over time with the adjoints of the real numerator and denominator,
 *   GA_t = dL/dA_t = dy_t / D_t + e^w GA_(t+1),   GB_t = -dy_t y_t / D_t + e^w GB_(t+1)
 * (D_t = B_t + e^(u+k_t)), kept like the forward state as (ga, gb) * e^gp. Then
 *   dv_t = dy_t e^(u+k_t) / D_t + e^(k_t) GA_(t+1)
 *   dk_t = dy_t e^(u+k_t) (v_t - y_t) / D_t + e^(k_t) (v_t GA_(t+1) + GB_(t+1))
 *   du   = sum_t dy_t e^(u+k_t) (v_t - y_t) / D_t
 *   dw   = sum_t e^w (A_t GA_(t+1) + B_t GB_(t+1))
 * The final state (num, den, max) = (A e^-max, B e^-max, max) also carries gradient through its
 * exponent, max_T = k_t* + (T-1-t*) w (t* the last step whose key won the max) or
 * max_0 + T w; that part goes to k_t* (or max_0) and w.
 */
export function wkv4Backward(
  dw: HostArray,
  du: HostArray,
  dk: HostArray,
  dv: HostArray,
  dstate0: HostArray | null,
  dy: HostArray,
  dstateT: HostArray | null,
  w: HostArray,
  u: HostArray,
  k: HostArray,
  v: HostArray,
  y: HostArray,
  saved: HostArray,
  d: Wkv4Dims,
): void {
  const { B, T, D } = d;
  for (let b = 0; b < B; b++) {
    for (let c = 0; c < D; c++) {
      const wc = w[c];
      const uc = u[c];
      const savedAt = (t: number) => loadWkv4(saved, b * T + t, c, D);
      // the final state, one step past the last saved one
      const last = savedAt(T - 1);
      wkv4Update(last, wc, k[(b * T + T - 1) * D + c], v[(b * T + T - 1) * D + c]);
      let ga = 0;
      let gb = 0;
      let gp = WKV4_EMPTY_MAX;
      let gMaxRest = 0; // dL/dmax_T not explained by num_T, den_T
      if (dstateT) {
        const g = loadWkv4(dstateT, b, c, D);
        ga = g.aa;
        gb = g.bb;
        gp = -last.pp;
        gMaxRest = g.pp - g.aa * last.aa - g.bb * last.bb;
      }
      let gw = 0;
      let gu = 0;
      let maxPathOpen = gMaxRest !== 0;
      for (let t = T - 1; t >= 0; t--) {
        const i = (b * T + t) * D + c;
        const s = savedAt(t);
        const kt = k[i];
        const vt = v[i];
        const yt = y[i];
        const uk = uc + kt;
        const p = Math.max(s.pp, uk);
        const e1 = Math.exp(s.pp - p);
        const e2 = Math.exp(uk - p);
        const q = dy[i] / (e1 * s.bb + e2); // dy_t / D_t = q e^-p
        const eNext = Math.exp(kt + gp); // e^(k_t) times the scale of GA_(t+1)
        dk[i] = q * e2 * (vt - yt) + eNext * (ga * vt + gb);
        dv[i] = q * e2 + eNext * ga;
        gu += q * e2 * (vt - yt);
        gw += Math.exp(wc + s.pp + gp) * (s.aa * ga + s.bb * gb);
        if (maxPathOpen && kt >= wc + s.pp) {
          dk[i] += gMaxRest;
          gw += gMaxRest * (T - 1 - t);
          maxPathOpen = false;
        }
        // GA_t = q e^-p + e^w GA_(t+1), GB_t = -q y e^-p + e^w GB_(t+1)
        const wg = wc + gp;
        const np = Math.max(wg, -p);
        const f1 = Math.exp(wg - np);
        const f2 = Math.exp(-p - np);
        ga = f1 * ga + f2 * q;
        gb = f1 * gb - f2 * q * yt;
        gp = np;
      }
      const s0 = savedAt(0);
      if (maxPathOpen) gw += gMaxRest * T;
      dw[b * D + c] = gw;
      du[b * D + c] = gu;
      if (dstate0) {
        // A_0 = num0 e^max0, B_0 = den0 e^max0
        const scale = Math.exp(gp + s0.pp);
        const o = b * 3 * D + c;
        dstate0[o] = ga * scale;
        dstate0[o + D] = gb * scale;
        dstate0[o + 2 * D] = (ga * s0.aa + gb * s0.bb) * scale + (maxPathOpen ? gMaxRest : 0);
      }
    }
  }
}

// ---------------------------------------------------------------- WKV-7

/** S <- S diag(w) + (S a) b^T + v k^T, in place, for one head (offset o into the inputs). */
function wkv7Update(S: Float64Array, w: HostArray, k: HostArray, v: HostArray, a: HostArray, b: HostArray, o: number, N: number): void {
  for (let i = 0; i < N; i++) {
    let sa = 0;
    for (let j = 0; j < N; j++) sa += S[i * N + j] * a[o + j];
    for (let j = 0; j < N; j++) S[i * N + j] = S[i * N + j] * w[o + j] + sa * b[o + j] + v[o + i] * k[o + j];
  }
}

/** y = S r for one head. */
function wkv7Read(y: HostArray, S: Float64Array, r: HostArray, o: number, N: number): void {
  for (let i = 0; i < N; i++) {
    let s = 0;
    for (let j = 0; j < N; j++) s += S[i * N + j] * r[o + j];
    y[o + i] = s;
  }
}

function loadHead(S: Float64Array, src: HostArray | null, offset: number): void {
  if (src) for (let i = 0; i < S.length; i++) S[i] = src[offset + i];
  else S.fill(0);
}

function storeHead(dst: HostArray, S: Float64Array, offset: number): void {
  for (let i = 0; i < S.length; i++) dst[offset + i] = S[i];
}

export function wkv7Forward(
  y: HostArray,
  stateOut: HostArray | null,
  checkpoints: HostArray | null,
  r: HostArray,
  w: HostArray,
  k: HostArray,
  v: HostArray,
  a: HostArray,
  b: HostArray,
  state0: HostArray | null,
  d: Wkv7Dims,
): void {
  const { B, T, H, N, chunk } = d;
  const NN = N * N;
  const chunks = Math.ceil(T / chunk);
  const S = new Float64Array(NN);
  for (let bi = 0; bi < B; bi++) {
    for (let h = 0; h < H; h++) {
      loadHead(S, state0, (bi * H + h) * NN);
      for (let t = 0; t < T; t++) {
        if (checkpoints && t % chunk === 0) storeHead(checkpoints, S, ((bi * chunks + t / chunk) * H + h) * NN);
        const o = ((bi * T + t) * H + h) * N;
        wkv7Update(S, w, k, v, a, b, o, N);
        wkv7Read(y, S, r, o, N);
      }
      if (stateOut) storeHead(stateOut, S, (bi * H + h) * NN);
    }
  }
}

export function wkv7Step(
  y: HostArray,
  state: HostArray,
  r: HostArray,
  w: HostArray,
  k: HostArray,
  v: HostArray,
  a: HostArray,
  b: HostArray,
  d: { B: number; H: number; N: number },
): void {
  const { B, H, N } = d;
  const S = new Float64Array(N * N);
  for (let bh = 0; bh < B * H; bh++) {
    loadHead(S, state, bh * N * N);
    wkv7Update(S, w, k, v, a, b, bh * N, N);
    wkv7Read(y, S, r, bh * N, N);
    storeHead(state, S, bh * N * N);
  }
}

/**
 * With G = dL/dS_t (from later steps and the final state) and sa = S_(t-1) a:
 *   G += dy r^T;  dr = S_t^T dy
 *   dv = G k;  dk = G^T v;  dw_j = sum_i G_ij S_(t-1),ij;  db = G^T sa
 *   dsa = G b;  da = S_(t-1)^T dsa;  dS_(t-1) = G diag(w) + dsa a^T
 */
export function wkv7Backward(
  dr: HostArray,
  dw: HostArray,
  dk: HostArray,
  dv: HostArray,
  da: HostArray,
  db: HostArray,
  dstate0: HostArray | null,
  dy: HostArray,
  dstateT: HostArray | null,
  r: HostArray,
  w: HostArray,
  k: HostArray,
  v: HostArray,
  a: HostArray,
  b: HostArray,
  checkpoints: HostArray,
  d: Wkv7Dims,
): void {
  const { B, T, H, N, chunk } = d;
  const NN = N * N;
  const chunks = Math.ceil(T / chunk);
  const G = new Float64Array(NN);
  const sa = new Float64Array(N);
  const dsa = new Float64Array(N);
  // states[m] is the state after m steps of the current chunk (states[0] = its checkpoint)
  const states = Array.from({ length: chunk + 1 }, () => new Float64Array(NN));
  for (let bi = 0; bi < B; bi++) {
    for (let h = 0; h < H; h++) {
      loadHead(G, dstateT, (bi * H + h) * NN);
      for (let c = chunks - 1; c >= 0; c--) {
        const t0 = c * chunk;
        const t1 = Math.min(T, t0 + chunk);
        loadHead(states[0], checkpoints, ((bi * chunks + c) * H + h) * NN);
        for (let t = t0; t < t1; t++) {
          states[t - t0 + 1].set(states[t - t0]);
          wkv7Update(states[t - t0 + 1], w, k, v, a, b, ((bi * T + t) * H + h) * N, N);
        }
        for (let t = t1 - 1; t >= t0; t--) {
          const o = ((bi * T + t) * H + h) * N;
          const prev = states[t - t0];
          const next = states[t - t0 + 1];
          for (let j = 0; j < N; j++) {
            let s = 0;
            for (let i = 0; i < N; i++) s += next[i * N + j] * dy[o + i];
            dr[o + j] = s;
          }
          for (let i = 0; i < N; i++) for (let j = 0; j < N; j++) G[i * N + j] += dy[o + i] * r[o + j];
          for (let i = 0; i < N; i++) {
            let s = 0;
            let g = 0;
            let gb = 0;
            for (let j = 0; j < N; j++) {
              s += prev[i * N + j] * a[o + j];
              g += G[i * N + j] * k[o + j];
              gb += G[i * N + j] * b[o + j];
            }
            sa[i] = s;
            dv[o + i] = g;
            dsa[i] = gb;
          }
          for (let j = 0; j < N; j++) {
            let gk = 0;
            let gw = 0;
            let gbj = 0;
            let gaj = 0;
            for (let i = 0; i < N; i++) {
              gk += G[i * N + j] * v[o + i];
              gw += G[i * N + j] * prev[i * N + j];
              gbj += G[i * N + j] * sa[i];
              gaj += dsa[i] * prev[i * N + j];
            }
            dk[o + j] = gk;
            dw[o + j] = gw;
            db[o + j] = gbj;
            da[o + j] = gaj;
          }
          for (let i = 0; i < N; i++) for (let j = 0; j < N; j++) G[i * N + j] = G[i * N + j] * w[o + j] + dsa[i] * a[o + j];
        }
      }
      if (dstate0) storeHead(dstate0, G, (bi * H + h) * NN);
    }
  }
}
