/**
 * Reference scan kernels (see kernels_scan.ts): the causal depthwise conv1d and the Mamba
 * selective scan, one statement per equation, accumulating in doubles. Mamba-2's SSD lives in
 * ssd.ts and is re-exported here so the whole family spreads into the ref kernel table.
 */
import type { Conv1dDims, SelectiveScanDims } from "../kernels_scan.js";
import type { HostArray } from "../../tensor/dtype.js";
import { sigmoid, softplus, unaryForward } from "./elementwise.js";

export { ssdForward, ssdBackward, ssdStep } from "./ssd.js";

// ---------------------------------------------------------------- causal depthwise conv1d

/** xpad[b, s, c]: the W - 1 window-state rows (zeros without a state), then x. */
function padded(x: HostArray, stateIn: HostArray | null, d: Conv1dDims, b: number, s: number, c: number): number {
  const S = d.W - 1;
  if (s >= S) return x[(b * d.T + s - S) * d.D + c];
  return stateIn ? stateIn[(b * S + s) * d.D + c] : 0;
}

export function conv1dForward(
  out: HostArray,
  stateOut: HostArray | null,
  x: HostArray,
  weight: HostArray,
  bias: HostArray | null,
  stateIn: HostArray | null,
  d: Conv1dDims,
): void {
  const { B, T, D, W } = d;
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      for (let c = 0; c < D; c++) {
        let acc = bias ? bias[c] : 0;
        for (let k = 0; k < W; k++) acc += weight[c * W + k] * padded(x, stateIn, d, b, t + k, c);
        out[(b * T + t) * D + c] = acc;
      }
    }
  }
  if (!stateOut) return;
  // the new window is xpad[T .. T + W - 2]; ascending j reads at or after what it writes, so stateOut may alias stateIn
  const S = W - 1;
  for (let b = 0; b < B; b++) {
    for (let j = 0; j < S; j++) {
      for (let c = 0; c < D; c++) stateOut[(b * S + j) * D + c] = padded(x, stateIn, d, b, T + j, c);
    }
  }
}

export function conv1dBackward(
  dx: HostArray,
  dweight: HostArray,
  dbias: HostArray | null,
  dstateIn: HostArray | null,
  dout: HostArray,
  x: HostArray,
  weight: HostArray,
  stateIn: HostArray | null,
  d: Conv1dDims,
): void {
  const { B, T, D, W } = d;
  const S = W - 1;
  dweight.fill(0, 0, D * W);
  if (dbias) dbias.fill(0, 0, D);
  for (let b = 0; b < B; b++) {
    for (let c = 0; c < D; c++) {
      // dxpad[s] = sum_k w[k] * dout[s - k] over the outputs t = s - k that read xpad[s]
      for (let s = 0; s < S + T; s++) {
        let acc = 0;
        for (let k = 0; k < W; k++) {
          const t = s - k;
          if (t >= 0 && t < T) acc += weight[c * W + k] * dout[(b * T + t) * D + c];
        }
        if (s >= S) dx[(b * T + s - S) * D + c] = acc;
        else if (dstateIn) dstateIn[(b * S + s) * D + c] = acc;
      }
      for (let t = 0; t < T; t++) {
        const g = dout[(b * T + t) * D + c];
        if (dbias) dbias[c] += g;
        for (let k = 0; k < W; k++) dweight[c * W + k] += g * padded(x, stateIn, d, b, t + k, c);
      }
    }
  }
}

export function conv1dStep(
  out: HostArray,
  state: HostArray,
  x: HostArray,
  weight: HostArray,
  bias: HostArray | null,
  d: Conv1dDims,
): void {
  const { B, D, W } = d;
  const S = W - 1;
  for (let b = 0; b < B; b++) {
    for (let c = 0; c < D; c++) {
      let acc = bias ? bias[c] : 0;
      for (let k = 0; k < S; k++) acc += weight[c * W + k] * state[(b * S + k) * D + c];
      acc += weight[c * W + S] * x[b * D + c];
      out[b * D + c] = acc;
      for (let k = 0; k + 1 < S; k++) state[(b * S + k) * D + c] = state[(b * S + k + 1) * D + c];
      if (S > 0) state[(b * S + S - 1) * D + c] = x[b * D + c];
    }
  }
  if (d.act) unaryForward(d.act, out, out, B * D);
}

// ---------------------------------------------------------------- Mamba selective scan

/** The discretisation step: softplus(dt + bias) (or dt + bias). */
function stepSize(dtRaw: number, bias: number, useSoftplus: boolean): number {
  return useSoftplus ? softplus(dtRaw + bias) : dtRaw + bias;
}

/** d(step)/d(dtRaw): softplus' = sigmoid, with PyTorch's linear region above 20. */
function stepSizeGrad(dtRaw: number, bias: number, useSoftplus: boolean): number {
  const v = dtRaw + bias;
  return useSoftplus ? (v > 20 ? 1 : sigmoid(v)) : 1;
}

function silu(v: number): number {
  return v * sigmoid(v);
}

function siluGrad(v: number): number {
  const s = sigmoid(v);
  return s * (1 + v * (1 - s));
}

export function selectiveScanForward(
  out: HostArray,
  stateOut: HostArray | null,
  checkpoints: HostArray | null,
  u: HostArray,
  dt: HostArray,
  A: HostArray,
  Bmat: HostArray,
  Cmat: HostArray,
  Dskip: HostArray | null,
  z: HostArray | null,
  dtBias: HostArray | null,
  stateIn: HostArray | null,
  d: SelectiveScanDims,
): void {
  const { B, T, D, N, chunk } = d;
  const chunks = Math.ceil(T / chunk);
  const h = new Float64Array(N);
  for (let b = 0; b < B; b++) {
    for (let c = 0; c < D; c++) {
      for (let n = 0; n < N; n++) h[n] = stateIn ? stateIn[(b * D + c) * N + n] : 0;
      for (let t = 0; t < T; t++) {
        if (checkpoints && t % chunk === 0) {
          const base = ((b * chunks + t / chunk) * D + c) * N;
          for (let n = 0; n < N; n++) checkpoints[base + n] = h[n];
        }
        const i = (b * T + t) * D + c;
        const delta = stepSize(dt[i], dtBias ? dtBias[c] : 0, d.deltaSoftplus);
        let y = 0;
        for (let n = 0; n < N; n++) {
          const dA = Math.exp(delta * A[c * N + n]);
          const dBu = delta * Bmat[(b * T + t) * N + n] * u[i];
          h[n] = dA * h[n] + dBu;
          y += Cmat[(b * T + t) * N + n] * h[n];
        }
        if (Dskip) y += Dskip[c] * u[i];
        out[i] = z ? y * silu(z[i]) : y;
      }
      if (stateOut) for (let n = 0; n < N; n++) stateOut[(b * D + c) * N + n] = h[n];
    }
  }
}

export function selectiveScanBackward(
  du: HostArray,
  ddt: HostArray,
  dA: HostArray,
  dB: HostArray,
  dC: HostArray,
  dDskip: HostArray | null,
  dz: HostArray | null,
  ddtBias: HostArray | null,
  dstateIn: HostArray | null,
  dout: HostArray,
  u: HostArray,
  dt: HostArray,
  A: HostArray,
  Bmat: HostArray,
  Cmat: HostArray,
  Dskip: HostArray | null,
  z: HostArray | null,
  dtBias: HostArray | null,
  checkpoints: HostArray,
  d: SelectiveScanDims,
): void {
  const { B, T, D, N, chunk } = d;
  const chunks = Math.ceil(T / chunk);
  dA.fill(0, 0, D * N);
  dB.fill(0, 0, B * T * N);
  dC.fill(0, 0, B * T * N);
  if (dDskip) dDskip.fill(0, 0, D);
  if (ddtBias) ddtBias.fill(0, 0, D);
  const g = new Float64Array(N); // dL/dh carried backwards through time
  const hs = new Float64Array((chunk + 1) * N); // the states of one chunk, recomputed: hs[j] = h_{t0 + j - 1}
  for (let b = 0; b < B; b++) {
    for (let c = 0; c < D; c++) {
      g.fill(0);
      const bias = dtBias ? dtBias[c] : 0;
      for (let k = chunks - 1; k >= 0; k--) {
        const t0 = k * chunk;
        const t1 = Math.min(T, t0 + chunk);
        const base = ((b * chunks + k) * D + c) * N;
        for (let n = 0; n < N; n++) hs[n] = checkpoints[base + n];
        for (let t = t0; t < t1; t++) {
          const i = (b * T + t) * D + c;
          const delta = stepSize(dt[i], bias, d.deltaSoftplus);
          for (let n = 0; n < N; n++) {
            const prev = hs[(t - t0) * N + n];
            hs[(t - t0 + 1) * N + n] = Math.exp(delta * A[c * N + n]) * prev + delta * Bmat[(b * T + t) * N + n] * u[i];
          }
        }
        for (let t = t1 - 1; t >= t0; t--) {
          const i = (b * T + t) * D + c;
          const row = (b * T + t) * N;
          const delta = stepSize(dt[i], bias, d.deltaSoftplus);
          // y_t before the gate, then the gate's gradients
          let y = Dskip ? Dskip[c] * u[i] : 0;
          for (let n = 0; n < N; n++) y += Cmat[row + n] * hs[(t - t0 + 1) * N + n];
          let dy = dout[i];
          if (z) {
            if (dz) dz[i] = dout[i] * y * siluGrad(z[i]);
            dy = dout[i] * silu(z[i]);
          }
          let duAcc = Dskip ? dy * Dskip[c] : 0;
          if (dDskip) dDskip[c] += dy * u[i];
          let dDelta = 0;
          for (let n = 0; n < N; n++) {
            const hPrev = hs[(t - t0) * N + n];
            const hNow = hs[(t - t0 + 1) * N + n];
            const a = A[c * N + n];
            const decay = Math.exp(delta * a);
            dC[row + n] += dy * hNow;
            g[n] += dy * Cmat[row + n]; // now the full dL/dh_t
            dDelta += g[n] * (hPrev * decay * a + Bmat[row + n] * u[i]);
            dA[c * N + n] += g[n] * hPrev * decay * delta;
            dB[row + n] += g[n] * delta * u[i];
            duAcc += g[n] * delta * Bmat[row + n];
            g[n] *= decay; // dL/dh_{t-1} through h_t = decay * h_{t-1} + ...
          }
          du[i] = duAcc;
          ddt[i] = dDelta * stepSizeGrad(dt[i], bias, d.deltaSoftplus);
          if (ddtBias) ddtBias[c] += ddt[i];
        }
      }
      if (dstateIn) for (let n = 0; n < N; n++) dstateIn[(b * D + c) * N + n] = g[n];
    }
  }
}

export function selectiveScanStep(
  out: HostArray,
  state: HostArray,
  u: HostArray,
  dt: HostArray,
  A: HostArray,
  Bmat: HostArray,
  Cmat: HostArray,
  Dskip: HostArray | null,
  z: HostArray | null,
  dtBias: HostArray | null,
  d: SelectiveScanDims,
): void {
  const { B, D, N } = d;
  for (let b = 0; b < B; b++) {
    for (let c = 0; c < D; c++) {
      const i = b * D + c;
      const delta = stepSize(dt[i], dtBias ? dtBias[c] : 0, d.deltaSoftplus);
      let y = 0;
      for (let n = 0; n < N; n++) {
        const s = (b * D + c) * N + n;
        state[s] = Math.exp(delta * A[c * N + n]) * state[s] + delta * Bmat[b * N + n] * u[i];
        y += Cmat[b * N + n] * state[s];
      }
      if (Dskip) y += Dskip[c] * u[i];
      out[i] = z ? y * silu(z[i]) : y;
    }
  }
}
