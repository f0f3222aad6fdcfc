/**
 * Reference Mamba-2 kernels: the state-space duality (Dao & Gu 2024, "Transformers are SSMs",
 * Listing 1 / state-spaces/mamba ssd_minimal.py; HF Mamba2Mixer.torch_forward).
 *
 * Per head the SSM has a scalar decay, so inside a chunk it is a masked attention,
 *   y_t = sum_{s <= t} exp(a_{s+1} + ... + a_t) (C_t . B_s) dt_s x_s          (diagonal block)
 * and across chunks a recurrence on the (P, N) state that enters each chunk,
 *   y_t += exp(a_{t0} + ... + a_t) S_in C_t                                  (off-diagonal blocks)
 *   S_out = exp(a_{t0} + ... + a_{t1-1}) S_in + sum_s exp(a_{s+1} + ... + a_{t1-1}) dt_s x_s B_s^T
 * with a_t = A dt_t. HF pads T up to a multiple of chunk_size with zeros; a padded step has
 * a = 0 (no decay) and no input, so the last chunk can simply be shorter: same y, same state.
 *
 * ssdSequentialForward is the plain recurrence S_t = exp(a_t) S_{t-1} + dt_t x_t B_t^T, the
 * oracle the chunked form is tested against (it is not a kernel of the table).
 */
import type { SsdDims } from "../kernels_scan.js";
import type { HostArray } from "../../tensor/dtype.js";
import { sigmoid, softplus } from "./elementwise.js";

/** dt = clamp(softplus(dt + bias), dtMin, dtMax) */
function stepSize(dtRaw: number, bias: number, d: SsdDims): number {
  const v = d.dtSoftplus ? softplus(dtRaw + bias) : dtRaw + bias;
  return Math.min(Math.max(v, d.dtMin), d.dtMax);
}

/** d(dt)/d(dtRaw): zero where the clamp is active (PyTorch passes the gradient at the bounds). */
function stepSizeGrad(dtRaw: number, bias: number, d: SsdDims): number {
  const v = dtRaw + bias;
  const sp = d.dtSoftplus ? softplus(v) : v;
  if (sp < d.dtMin || sp > d.dtMax) return 0;
  return d.dtSoftplus ? (v > 20 ? 1 : sigmoid(v)) : 1;
}

/** Buffer offsets of one (b, t): x/y rows per head, dt per head, B/C rows per group. */
function at(d: SsdDims, b: number, t: number, h: number) {
  const g = Math.floor(h / (d.H / d.G));
  return {
    x: ((b * d.T + t) * d.H + h) * d.P,
    dt: (b * d.T + t) * d.H + h,
    bc: ((b * d.T + t) * d.G + g) * d.N,
  };
}

export function ssdForward(
  y: HostArray,
  stateOut: HostArray | null,
  checkpoints: HostArray | null,
  x: HostArray,
  dt: HostArray,
  A: HostArray,
  Bmat: HostArray,
  Cmat: HostArray,
  Dskip: HostArray | null,
  dtBias: HostArray | null,
  stateIn: HostArray | null,
  d: SsdDims,
): void {
  const { B, T, H, P, N, chunk } = d;
  const chunks = Math.ceil(T / chunk);
  const S = new Float64Array(P * N); // the state entering the current chunk
  const dts = new Float64Array(chunk); // dt_t of the chunk
  const la = new Float64Array(chunk); // log-decay a_t = A dt_t
  const cum = new Float64Array(chunk); // a_{t0} + ... + a_t
  const out = new Float64Array(P);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const sBase = (b * H + h) * P * N;
      for (let i = 0; i < P * N; i++) S[i] = stateIn ? stateIn[sBase + i] : 0;
      for (let k = 0; k < chunks; k++) {
        const t0 = k * chunk;
        const L = Math.min(chunk, T - t0);
        if (checkpoints) checkpoints.set(S, ((b * chunks + k) * H + h) * P * N);
        let run = 0;
        for (let j = 0; j < L; j++) {
          const o = at(d, b, t0 + j, h);
          dts[j] = stepSize(dt[o.dt], dtBias ? dtBias[h] : 0, d);
          la[j] = A[h] * dts[j];
          run += la[j];
          cum[j] = run;
        }
        for (let j = 0; j < L; j++) {
          const ot = at(d, b, t0 + j, h);
          // off-diagonal: the entering state, decayed to step t, read out by C_t
          for (let p = 0; p < P; p++) {
            let acc = 0;
            for (let n = 0; n < N; n++) acc += S[p * N + n] * Cmat[ot.bc + n];
            out[p] = Math.exp(cum[j]) * acc;
          }
          // diagonal block: causal "attention" with weights exp(segment sum) (C_t . B_s) dt_s
          let seg = 0;
          for (let s = j; s >= 0; s--) {
            const os = at(d, b, t0 + s, h);
            let cb = 0;
            for (let n = 0; n < N; n++) cb += Cmat[ot.bc + n] * Bmat[os.bc + n];
            const w = Math.exp(seg) * cb * dts[s];
            for (let p = 0; p < P; p++) out[p] += w * x[os.x + p];
            seg += la[s];
          }
          for (let p = 0; p < P; p++) y[ot.x + p] = out[p] + (Dskip ? Dskip[h] * x[ot.x + p] : 0);
        }
        // state passing to the next chunk
        const total = cum[L - 1];
        for (let i = 0; i < P * N; i++) S[i] *= Math.exp(total);
        for (let s = 0; s < L; s++) {
          const os = at(d, b, t0 + s, h);
          const w = Math.exp(total - cum[s]) * dts[s];
          for (let p = 0; p < P; p++) {
            for (let n = 0; n < N; n++) S[p * N + n] += w * x[os.x + p] * Bmat[os.bc + n];
          }
        }
      }
      if (stateOut) stateOut.set(S, sBase);
    }
  }
}

/**
 * The adjoint of the recurrence, chunk by chunk in reverse: the states of a chunk are
 * recomputed from its checkpoint, then G = dL/dS_t runs backwards through
 *   G_t = dy_t C_t^T + exp(a_{t+1}) G_{t+1}.
 */
export function ssdBackward(
  dx: HostArray,
  ddt: HostArray,
  dA: HostArray,
  dB: HostArray,
  dC: HostArray,
  dDskip: HostArray | null,
  ddtBias: HostArray | null,
  dstateIn: HostArray | null,
  dy: HostArray,
  x: HostArray,
  dt: HostArray,
  A: HostArray,
  Bmat: HostArray,
  Cmat: HostArray,
  Dskip: HostArray | null,
  dtBias: HostArray | null,
  checkpoints: HostArray,
  d: SsdDims,
): void {
  const { B, T, H, P, N, G, chunk } = d;
  const chunks = Math.ceil(T / chunk);
  const PN = P * N;
  dA.fill(0, 0, H);
  dB.fill(0, 0, B * T * G * N);
  dC.fill(0, 0, B * T * G * N);
  if (dDskip) dDskip.fill(0, 0, H);
  if (ddtBias) ddtBias.fill(0, 0, H);
  const Gs = new Float64Array(PN);
  const states = new Float64Array((chunk + 1) * PN); // states[j] = S_{t0 + j - 1}
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      Gs.fill(0);
      const bias = dtBias ? dtBias[h] : 0;
      for (let k = chunks - 1; k >= 0; k--) {
        const t0 = k * chunk;
        const L = Math.min(chunk, T - t0);
        states.set(checkpoints.subarray(((b * chunks + k) * H + h) * PN, ((b * chunks + k) * H + h + 1) * PN), 0);
        for (let j = 0; j < L; j++) {
          const o = at(d, b, t0 + j, h);
          const step = stepSize(dt[o.dt], bias, d);
          const decay = Math.exp(step * A[h]);
          for (let p = 0; p < P; p++) {
            for (let n = 0; n < N; n++) {
              const i = p * N + n;
              states[(j + 1) * PN + i] = decay * states[j * PN + i] + step * x[o.x + p] * Bmat[o.bc + n];
            }
          }
        }
        for (let j = L - 1; j >= 0; j--) {
          const o = at(d, b, t0 + j, h);
          const step = stepSize(dt[o.dt], bias, d);
          const decay = Math.exp(step * A[h]);
          const now = (j + 1) * PN;
          const prev = j * PN;
          for (let p = 0; p < P; p++) {
            dx[o.x + p] = Dskip ? Dskip[h] * dy[o.x + p] : 0;
            if (dDskip) dDskip[h] += dy[o.x + p] * x[o.x + p];
            for (let n = 0; n < N; n++) {
              dC[o.bc + n] += dy[o.x + p] * states[now + p * N + n];
              Gs[p * N + n] += dy[o.x + p] * Cmat[o.bc + n]; // now the full dL/dS_t
            }
          }
          let gS = 0; // <G_t, S_{t-1}>
          let dStep = 0;
          for (let p = 0; p < P; p++) {
            for (let n = 0; n < N; n++) {
              const g = Gs[p * N + n];
              gS += g * states[prev + p * N + n];
              dStep += g * x[o.x + p] * Bmat[o.bc + n];
              dx[o.x + p] += g * step * Bmat[o.bc + n];
              dB[o.bc + n] += g * step * x[o.x + p];
            }
          }
          dStep += gS * decay * A[h];
          dA[h] += gS * decay * step;
          for (let i = 0; i < PN; i++) Gs[i] *= decay;
          ddt[o.dt] = dStep * stepSizeGrad(dt[o.dt], bias, d);
          if (ddtBias) ddtBias[h] += ddt[o.dt];
        }
      }
      if (dstateIn) dstateIn.set(Gs, (b * H + h) * PN);
    }
  }
}

/** One step of the recurrence for head h of sequence b, on the state at `sBase` (HF's decode branch). */
function recur(
  y: HostArray,
  state: HostArray,
  sBase: number,
  o: { x: number; dt: number; bc: number },
  x: HostArray,
  dt: HostArray,
  A: HostArray,
  Bmat: HostArray,
  Cmat: HostArray,
  Dskip: HostArray | null,
  dtBias: HostArray | null,
  h: number,
  d: SsdDims,
): void {
  const step = stepSize(dt[o.dt], dtBias ? dtBias[h] : 0, d);
  const decay = Math.exp(step * A[h]);
  for (let p = 0; p < d.P; p++) {
    let acc = 0;
    for (let n = 0; n < d.N; n++) {
      const i = sBase + p * d.N + n;
      state[i] = decay * state[i] + step * Bmat[o.bc + n] * x[o.x + p];
      acc += state[i] * Cmat[o.bc + n];
    }
    y[o.x + p] = acc + (Dskip ? Dskip[h] * x[o.x + p] : 0);
  }
}

export function ssdStep(
  y: HostArray,
  state: HostArray,
  x: HostArray,
  dt: HostArray,
  A: HostArray,
  Bmat: HostArray,
  Cmat: HostArray,
  Dskip: HostArray | null,
  dtBias: HostArray | null,
  d: SsdDims,
): void {
  const one = { ...d, T: 1 };
  for (let b = 0; b < d.B; b++) {
    for (let h = 0; h < d.H; h++) {
      recur(y, state, (b * d.H + h) * d.P * d.N, at(one, b, 0, h), x, dt, A, Bmat, Cmat, Dskip, dtBias, h, one);
    }
  }
}

/** The plain sequential recurrence over T steps (the oracle for the chunked ssdForward). */
export function ssdSequentialForward(
  y: HostArray,
  stateOut: HostArray | null,
  x: HostArray,
  dt: HostArray,
  A: HostArray,
  Bmat: HostArray,
  Cmat: HostArray,
  Dskip: HostArray | null,
  dtBias: HostArray | null,
  stateIn: HostArray | null,
  d: SsdDims,
): void {
  const PN = d.P * d.N;
  const S = new Float64Array(PN);
  for (let b = 0; b < d.B; b++) {
    for (let h = 0; h < d.H; h++) {
      for (let i = 0; i < PN; i++) S[i] = stateIn ? stateIn[(b * d.H + h) * PN + i] : 0;
      for (let t = 0; t < d.T; t++) recur(y, S, 0, at(d, b, t, h), x, dt, A, Bmat, Cmat, Dskip, dtBias, h, d);
      if (stateOut) stateOut.set(S, (b * d.H + h) * PN);
    }
  }
}
