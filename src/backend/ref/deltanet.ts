/**
 * Reference Gated DeltaNet kernels (see kernels_deltanet.ts): the l2 norm, the causal conv, the
 * chunked delta rule and its backward, and the recurrent step. The sequential form that the
 * chunked one is tested against is in deltanet_sequential.ts.
 */
import type { DeltaNetConvDims, DeltaNetDims } from "../kernels_deltanet.js";
import type { HostArray } from "../../tensor/dtype.js";

export function l2normForward(out: HostArray, rnorm: HostArray, x: HostArray, rows: number, C: number, eps: number): void {
  for (let r = 0; r < rows; r++) {
    let ss = 0;
    for (let c = 0; c < C; c++) ss += x[r * C + c] * x[r * C + c];
    const s = 1 / Math.sqrt(ss + eps);
    rnorm[r] = s;
    for (let c = 0; c < C; c++) out[r * C + c] = x[r * C + c] * s;
  }
}

export function l2normBackward(dx: HostArray, dy: HostArray, x: HostArray, rnorm: HostArray, rows: number, C: number): void {
  for (let r = 0; r < rows; r++) {
    const s = rnorm[r];
    let dot = 0;
    for (let c = 0; c < C; c++) dot += x[r * C + c] * dy[r * C + c];
    for (let c = 0; c < C; c++) dx[r * C + c] = s * dy[r * C + c] - x[r * C + c] * s * s * s * dot;
  }
}

// ---- causal depthwise conv ----

/** x at time `t` of sequence b, channel ch, where t < 0 reads the window (or 0) */
function convInput(x: HostArray, windowIn: HostArray | null, b: number, t: number, ch: number, d: DeltaNetConvDims): number {
  const { T, D, W } = d;
  if (t >= 0) return x[(b * T + t) * D + ch];
  return windowIn ? windowIn[(b * (W - 1) + (W - 1 + t)) * D + ch] : 0;
}

export function deltanetConvForward(
  out: HostArray,
  windowOut: HostArray | null,
  x: HostArray,
  w: HostArray,
  windowIn: HostArray | null,
  d: DeltaNetConvDims,
): void {
  const { B, T, D, W } = d;
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      for (let ch = 0; ch < D; ch++) {
        let s = 0;
        for (let j = 0; j < W; j++) s += w[ch * W + j] * convInput(x, windowIn, b, t - (W - 1) + j, ch, d);
        out[(b * T + t) * D + ch] = s;
      }
    }
  }
  if (!windowOut) return;
  const next = new Float64Array(B * (W - 1) * D); // windowOut may alias windowIn: read everything first
  for (let b = 0; b < B; b++) {
    for (let r = 0; r < W - 1; r++) {
      for (let ch = 0; ch < D; ch++) next[(b * (W - 1) + r) * D + ch] = convInput(x, windowIn, b, T - (W - 1) + r, ch, d);
    }
  }
  windowOut.set(next);
}

export function deltanetConvBackward(
  dx: HostArray,
  dw: HostArray,
  dy: HostArray,
  x: HostArray,
  w: HostArray,
  windowIn: HostArray | null,
  d: DeltaNetConvDims,
): void {
  const { B, T, D, W } = d;
  for (let b = 0; b < B; b++) {
    for (let s = 0; s < T; s++) {
      for (let ch = 0; ch < D; ch++) {
        let acc = 0;
        for (let j = 0; j < W; j++) {
          const t = s + (W - 1) - j; // the output that read x[s] through tap j
          if (t < T) acc += w[ch * W + j] * dy[(b * T + t) * D + ch];
        }
        dx[(b * T + s) * D + ch] = acc;
      }
    }
    for (let ch = 0; ch < D; ch++) {
      for (let j = 0; j < W; j++) {
        let acc = 0;
        for (let t = 0; t < T; t++) acc += dy[(b * T + t) * D + ch] * convInput(x, windowIn, b, t - (W - 1) + j, ch, d);
        dw[ch * W + j] += acc;
      }
    }
  }
}

// ---- the gated delta rule ----

/** Offsets of one (b, h) pair: where its q/k rows, v/out rows, g/beta entries and state start. */
function head(d: DeltaNetDims, b: number, h: number) {
  const { T, H, G, Dk, Dv } = d;
  const kh = Math.floor(h / (H / G)); // the key head this value head reads
  return {
    qk: (t: number) => ((b * T + t) * G + kh) * Dk,
    vo: (t: number) => ((b * T + t) * H + h) * Dv,
    gb: (t: number) => (b * T + t) * H + h,
    state: (b * H + h) * Dk * Dv,
  };
}

function readState(src: HostArray | null, offset: number, n: number): Float64Array {
  const S = new Float64Array(n);
  if (src) for (let i = 0; i < n; i++) S[i] = src[offset + i];
  return S;
}

export function deltanetForward(
  out: HostArray,
  finalState: HostArray | null,
  chunkStates: HostArray | null,
  q: HostArray,
  k: HostArray,
  v: HostArray,
  g: HostArray,
  beta: HostArray,
  initialState: HostArray | null,
  d: DeltaNetDims,
): void {
  const { B, T, H, Dk, Dv, scale, chunk } = d;
  const nChunks = Math.ceil(T / chunk);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const at = head(d, b, h);
      const S = readState(initialState, at.state, Dk * Dv);
      for (let c = 0; c < nChunks; c++) {
        if (chunkStates) chunkStates.set(S, ((b * H + h) * nChunks + c) * Dk * Dv);
        chunkForward(S, out, q, k, v, g, beta, at, c * chunk, Math.min(chunk, T - c * chunk), Dk, Dv, scale);
      }
      if (finalState) finalState.set(S, at.state);
    }
  }
}

/**
 * One chunk of L tokens from t0, state S (Dk x Dv) updated in place. With Gam_i the cumulative
 * log decay inside the chunk, the delta-rule writes u_i satisfy
 *   u_i = beta_i (v_i - exp(Gam_i) S^T k_i) - sum_{j<i} beta_i exp(Gam_i - Gam_j) (k_i . k_j) u_j,
 * a unit lower-triangular system solved by forward substitution; then
 *   o_i = exp(Gam_i) S^T q_i + sum_{j<=i} exp(Gam_i - Gam_j) (q_i . k_j) u_j
 *   S  <- exp(Gam_last) S + sum_j exp(Gam_last - Gam_j) k_j u_j^T.
 */
function chunkForward(
  S: Float64Array,
  out: HostArray,
  q: HostArray,
  k: HostArray,
  v: HostArray,
  g: HostArray,
  beta: HostArray,
  at: ReturnType<typeof head>,
  t0: number,
  L: number,
  Dk: number,
  Dv: number,
  scale: number,
): void {
  const Gam = new Float64Array(L);
  for (let i = 0; i < L; i++) Gam[i] = (i > 0 ? Gam[i - 1] : 0) + g[at.gb(t0 + i)];
  const kdot = (i: number, j: number) => dot(k, at.qk(t0 + i), k, at.qk(t0 + j), Dk);
  const qdot = (i: number, j: number) => scale * dot(q, at.qk(t0 + i), k, at.qk(t0 + j), Dk);
  const u = new Float64Array(L * Dv);
  for (let i = 0; i < L; i++) {
    const bi = beta[at.gb(t0 + i)];
    const ki = at.qk(t0 + i);
    for (let e = 0; e < Dv; e++) {
      let Sk = 0;
      for (let a = 0; a < Dk; a++) Sk += S[a * Dv + e] * k[ki + a];
      u[i * Dv + e] = bi * (v[at.vo(t0 + i) + e] - Math.exp(Gam[i]) * Sk);
    }
    for (let j = 0; j < i; j++) {
      const A = bi * Math.exp(Gam[i] - Gam[j]) * kdot(i, j);
      for (let e = 0; e < Dv; e++) u[i * Dv + e] -= A * u[j * Dv + e];
    }
  }
  for (let i = 0; i < L; i++) {
    const qi = at.qk(t0 + i);
    for (let e = 0; e < Dv; e++) {
      let Sq = 0;
      for (let a = 0; a < Dk; a++) Sq += S[a * Dv + e] * q[qi + a];
      let o = Math.exp(Gam[i]) * scale * Sq;
      for (let j = 0; j <= i; j++) o += Math.exp(Gam[i] - Gam[j]) * qdot(i, j) * u[j * Dv + e];
      out[at.vo(t0 + i) + e] = o;
    }
  }
  const last = Gam[L - 1];
  for (let a = 0; a < Dk; a++) {
    for (let e = 0; e < Dv; e++) {
      let s = Math.exp(last) * S[a * Dv + e];
      for (let j = 0; j < L; j++) s += Math.exp(last - Gam[j]) * k[at.qk(t0 + j) + a] * u[j * Dv + e];
      S[a * Dv + e] = s;
    }
  }
}

function dot(x: HostArray, xo: number, y: HostArray, yo: number, n: number): number {
  let s = 0;
  for (let i = 0; i < n; i++) s += x[xo + i] * y[yo + i];
  return s;
}

/**
 * One token of the recurrence on S (Dk x Dv), in place; returns nothing, writes o (Dv) at `oOff`:
 *   P = exp(g) S;  delta = beta (v - P^T k);  S = P + k delta^T;  o = S^T (scale q)
 */
function recurrentStep(
  S: Float64Array,
  out: HostArray,
  oOff: number,
  q: HostArray,
  k: HostArray,
  kOff: number,
  v: HostArray,
  vOff: number,
  gt: number,
  bt: number,
  Dk: number,
  Dv: number,
  scale: number,
): void {
  const a = Math.exp(gt);
  for (let i = 0; i < Dk * Dv; i++) S[i] *= a;
  for (let e = 0; e < Dv; e++) {
    let kv = 0;
    for (let r = 0; r < Dk; r++) kv += S[r * Dv + e] * k[kOff + r];
    const delta = bt * (v[vOff + e] - kv);
    for (let r = 0; r < Dk; r++) S[r * Dv + e] += k[kOff + r] * delta;
  }
  for (let e = 0; e < Dv; e++) {
    let o = 0;
    for (let r = 0; r < Dk; r++) o += S[r * Dv + e] * scale * q[kOff + r];
    out[oOff + e] = o;
  }
}

export function deltanetStep(
  out: HostArray,
  state: HostArray,
  q: HostArray,
  k: HostArray,
  v: HostArray,
  g: HostArray,
  beta: HostArray,
  d: DeltaNetDims,
): void {
  const { B, H, Dk, Dv, scale } = d;
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const at = head({ ...d, T: 1 }, b, h);
      const S = readState(state, at.state, Dk * Dv);
      recurrentStep(S, out, at.vo(0), q, k, at.qk(0), v, at.vo(0), g[at.gb(0)], beta[at.gb(0)], Dk, Dv, scale);
      state.set(S, at.state);
    }
  }
}

/**
 * Reverse mode through the recurrence, chunk by chunk from the last: each chunk's per-token
 * states are recomputed from its saved starting state, then for t from last to first, with
 * P = exp(g_t) S_{t-1}, delta = beta (v - P^T k), S_t = P + k delta^T, o = S_t^T (scale q):
 *   dS += scale q do^T;  dq = scale S_t do;  dk += dS delta;  ddelta = dS^T k
 *   dbeta = ddelta . (v - P^T k);  dv = beta ddelta;  dkv = -beta ddelta
 *   dP = dS + k dkv^T;  dk += P dkv;  dg = <dP, P>;  dS_{t-1} = exp(g_t) dP
 * dq and dk of a key head sum over the value heads that read it.
 */
export function deltanetBackward(
  dq: HostArray,
  dk: HostArray,
  dv: HostArray,
  dg: HostArray,
  dbeta: HostArray,
  dout: HostArray,
  q: HostArray,
  k: HostArray,
  v: HostArray,
  g: HostArray,
  beta: HostArray,
  chunkStates: HostArray,
  d: DeltaNetDims,
): void {
  const { B, T, H, Dk, Dv, scale, chunk } = d;
  const nChunks = Math.ceil(T / chunk);
  dq.fill(0);
  dk.fill(0);
  const n = Dk * Dv;
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const at = head(d, b, h);
      const dS = new Float64Array(n);
      for (let c = nChunks - 1; c >= 0; c--) {
        const t0 = c * chunk;
        const L = Math.min(chunk, T - t0);
        // states[i] is the state before token t0 + i (states[L] after the chunk)
        const states = new Float64Array((L + 1) * n);
        states.set(chunkStates.subarray(((b * H + h) * nChunks + c) * n, ((b * H + h) * nChunks + c + 1) * n));
        const scratch = new Float64Array(Dv);
        for (let i = 0; i < L; i++) {
          const S = states.subarray((i + 1) * n, (i + 2) * n);
          S.set(states.subarray(i * n, (i + 1) * n));
          const t = t0 + i;
          recurrentStep(S, scratch, 0, q, k, at.qk(t), v, at.vo(t), g[at.gb(t)], beta[at.gb(t)], Dk, Dv, scale);
        }
        for (let i = L - 1; i >= 0; i--) {
          stepBackward(dS, states.subarray(i * n, (i + 1) * n), states.subarray((i + 1) * n, (i + 2) * n), t0 + i, at, d, {
            dq, dk, dv, dg, dbeta, dout, q, k, v, g, beta,
          });
        }
      }
    }
  }
}

interface StepBuffers {
  dq: HostArray;
  dk: HostArray;
  dv: HostArray;
  dg: HostArray;
  dbeta: HostArray;
  dout: HostArray;
  q: HostArray;
  k: HostArray;
  v: HostArray;
  g: HostArray;
  beta: HostArray;
}

/** One token of the reverse pass: dS holds dL/dS_t on entry and dL/dS_{t-1} on return. */
function stepBackward(
  dS: Float64Array,
  Sprev: Float64Array,
  S: Float64Array,
  t: number,
  at: ReturnType<typeof head>,
  d: DeltaNetDims,
  x: StepBuffers,
): void {
  const { Dk, Dv, scale } = d;
  const [qo, vo, gi] = [at.qk(t), at.vo(t), at.gb(t)];
  const a = Math.exp(x.g[gi]);
  const bt = x.beta[gi];
  // forward quantities of this token
  const kv = new Float64Array(Dv);
  for (let e = 0; e < Dv; e++) for (let r = 0; r < Dk; r++) kv[e] += a * Sprev[r * Dv + e] * x.k[qo + r];
  const delta = new Float64Array(Dv).map((_, e) => bt * (x.v[vo + e] - kv[e]));
  // o = S^T (scale q)
  for (let r = 0; r < Dk; r++) {
    let s = 0;
    for (let e = 0; e < Dv; e++) {
      dS[r * Dv + e] += scale * x.q[qo + r] * x.dout[vo + e];
      s += S[r * Dv + e] * x.dout[vo + e];
    }
    x.dq[qo + r] += scale * s;
  }
  // S = P + k delta^T
  const ddelta = new Float64Array(Dv);
  for (let r = 0; r < Dk; r++) {
    let s = 0;
    for (let e = 0; e < Dv; e++) {
      s += dS[r * Dv + e] * delta[e];
      ddelta[e] += dS[r * Dv + e] * x.k[qo + r];
    }
    x.dk[qo + r] += s;
  }
  // delta = beta (v - P^T k)
  let db = 0;
  const dkv = new Float64Array(Dv);
  for (let e = 0; e < Dv; e++) {
    db += ddelta[e] * (x.v[vo + e] - kv[e]);
    x.dv[vo + e] = bt * ddelta[e];
    dkv[e] = -bt * ddelta[e];
  }
  x.dbeta[gi] = db;
  // kv = P^T k, P = a Sprev
  let dgt = 0;
  for (let r = 0; r < Dk; r++) {
    let s = 0;
    for (let e = 0; e < Dv; e++) {
      const P = a * Sprev[r * Dv + e];
      const dP = dS[r * Dv + e] + x.k[qo + r] * dkv[e];
      s += P * dkv[e];
      dgt += dP * P;
      dS[r * Dv + e] = a * dP;
    }
    x.dk[qo + r] += s;
  }
  x.dg[gi] = dgt;
}
