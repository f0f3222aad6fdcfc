/** Reference mixture-of-experts kernels (see kernels_moe.ts): routing, grouping, grouped matmuls. */
import type { GroupedMatmulDims } from "../kernels_moe.js";
import type { HostArray } from "../../tensor/dtype.js";
import { torchTopkCpu } from "./torch_topk.js";

export function moeRouterForward(
  weights: HostArray,
  indices: HostArray,
  probs: HostArray,
  logits: HostArray,
  N: number,
  E: number,
  k: number,
  normalize: boolean,
): void {
  for (let n = 0; n < N; n++) {
    let max = -Infinity;
    for (let e = 0; e < E; e++) max = Math.max(max, logits[n * E + e]);
    let z = 0;
    for (let e = 0; e < E; e++) z += Math.exp(logits[n * E + e] - max);
    for (let e = 0; e < E; e++) probs[n * E + e] = Math.exp(logits[n * E + e] - max) / z;
    // select on the stored probabilities, so that ties are the ties torch sees in float32
    const top = torchTopkCpu(probs.subarray(n * E, (n + 1) * E), k);
    let sum = 0;
    for (const e of top) sum += probs[n * E + e];
    top.forEach((e, s) => {
      indices[n * k + s] = e;
      weights[n * k + s] = normalize ? probs[n * E + e] / sum : probs[n * E + e];
    });
  }
}

/**
 * With p = probs and the chosen experts i_s: w_s = p_{i_s} (/ Z, Z = sum_s p_{i_s}), so
 * dp_{i_s} += dw_s / Z - (sum_t dw_t p_{i_t}) / Z^2 (just dw_s without normalisation); then the
 * softmax rule dlogit_e = p_e (dp_e - sum_j p_j dp_j).
 */
export function moeRouterBackward(
  dlogits: HostArray,
  dweights: HostArray | null,
  dprobs: HostArray | null,
  probs: HostArray,
  indices: HostArray,
  N: number,
  E: number,
  k: number,
  normalize: boolean,
): void {
  const dp = new Float64Array(E);
  for (let n = 0; n < N; n++) {
    for (let e = 0; e < E; e++) dp[e] = dprobs ? dprobs[n * E + e] : 0;
    if (dweights) {
      let Z = 0;
      let dot = 0;
      for (let s = 0; s < k; s++) {
        Z += probs[n * E + indices[n * k + s]];
        dot += dweights[n * k + s] * probs[n * E + indices[n * k + s]];
      }
      for (let s = 0; s < k; s++) {
        const e = indices[n * k + s];
        dp[e] += normalize ? dweights[n * k + s] / Z - dot / (Z * Z) : dweights[n * k + s];
      }
    }
    let pdp = 0;
    for (let e = 0; e < E; e++) pdp += probs[n * E + e] * dp[e];
    for (let e = 0; e < E; e++) dlogits[n * E + e] = probs[n * E + e] * (dp[e] - pdp);
  }
}

export function moeGroup(pos: HostArray, offsets: HostArray, indices: HostArray, N: number, E: number, k: number): void {
  const count = new Int32Array(E);
  for (let a = 0; a < N * k; a++) count[indices[a]]++;
  offsets[0] = 0;
  for (let e = 0; e < E; e++) offsets[e + 1] = offsets[e] + count[e];
  const cursor = Int32Array.from(offsets.subarray(0, E));
  for (let a = 0; a < N * k; a++) pos[a] = cursor[indices[a]]++;
}

export function moeGatherForward(xs: HostArray, x: HostArray, pos: HostArray, N: number, k: number, C: number): void {
  for (let a = 0; a < N * k; a++) {
    const n = Math.floor(a / k);
    for (let c = 0; c < C; c++) xs[pos[a] * C + c] = x[n * C + c];
  }
}

export function moeGatherBackward(dx: HostArray, dxs: HostArray, pos: HostArray, N: number, k: number, C: number): void {
  for (let n = 0; n < N; n++) {
    for (let c = 0; c < C; c++) {
      let s = 0;
      for (let j = 0; j < k; j++) s += dxs[pos[n * k + j] * C + c];
      dx[n * C + c] = s;
    }
  }
}

export function moeGroupedMatmulForward(out: HostArray, x: HostArray, w: HostArray, offsets: HostArray, d: GroupedMatmulDims): void {
  const { E, N, K } = d;
  for (let e = 0; e < E; e++) {
    for (let r = offsets[e]; r < offsets[e + 1]; r++) {
      for (let j = 0; j < N; j++) {
        let s = 0;
        for (let i = 0; i < K; i++) s += x[r * K + i] * w[(e * N + j) * K + i];
        out[r * N + j] = s;
      }
    }
  }
}

export function moeGroupedMatmulBackward(
  dx: HostArray | null,
  dw: HostArray | null,
  dy: HostArray,
  x: HostArray,
  w: HostArray,
  offsets: HostArray,
  d: GroupedMatmulDims,
): void {
  const { E, N, K } = d;
  for (let e = 0; e < E; e++) {
    const [r0, r1] = [offsets[e], offsets[e + 1]];
    if (dx) {
      for (let r = r0; r < r1; r++) {
        for (let i = 0; i < K; i++) {
          let s = 0;
          for (let j = 0; j < N; j++) s += dy[r * N + j] * w[(e * N + j) * K + i];
          dx[r * K + i] = s;
        }
      }
    }
    if (dw) {
      for (let j = 0; j < N; j++) {
        for (let i = 0; i < K; i++) {
          let s = 0;
          for (let r = r0; r < r1; r++) s += dy[r * N + j] * x[r * K + i];
          dw[(e * N + j) * K + i] = s;
        }
      }
    }
  }
}

export function moeCombineForward(
  out: HostArray,
  ys: HostArray,
  weights: HostArray,
  pos: HostArray,
  N: number,
  k: number,
  C: number,
): void {
  for (let n = 0; n < N; n++) {
    for (let c = 0; c < C; c++) {
      let s = 0;
      for (let j = 0; j < k; j++) s += weights[n * k + j] * ys[pos[n * k + j] * C + c];
      out[n * C + c] = s;
    }
  }
}

export function moeCombineBackward(
  dys: HostArray | null,
  dweights: HostArray | null,
  dout: HostArray,
  ys: HostArray,
  weights: HostArray,
  pos: HostArray,
  N: number,
  k: number,
  C: number,
): void {
  for (let a = 0; a < N * k; a++) {
    const n = Math.floor(a / k);
    const row = pos[a] * C;
    if (dys) for (let c = 0; c < C; c++) dys[row + c] = weights[a] * dout[n * C + c];
    if (dweights) {
      let s = 0;
      for (let c = 0; c < C; c++) s += dout[n * C + c] * ys[row + c];
      dweights[a] = s;
    }
  }
}

export function rowScaleForward(out: HostArray, x: HostArray, s: HostArray, rows: number, C: number): void {
  for (let r = 0; r < rows; r++) for (let c = 0; c < C; c++) out[r * C + c] = s[r] * x[r * C + c];
}

export function rowScaleBackward(
  dx: HostArray | null,
  ds: HostArray | null,
  dy: HostArray,
  x: HostArray,
  s: HostArray,
  rows: number,
  C: number,
): void {
  for (let r = 0; r < rows; r++) {
    if (dx) for (let c = 0; c < C; c++) dx[r * C + c] = s[r] * dy[r * C + c];
    if (ds) {
      let dot = 0;
      for (let c = 0; c < C; c++) dot += dy[r * C + c] * x[r * C + c];
      ds[r] = dot;
    }
  }
}

function expertCounts(indices: HostArray, R: number, E: number, k: number): Float64Array {
  const count = new Float64Array(E);
  for (let a = 0; a < R * k; a++) count[indices[a]]++;
  return count;
}

export function moeLoadBalancingForward(loss: HostArray, probs: HostArray, indices: HostArray, R: number, E: number, k: number): void {
  const count = expertCounts(indices, R, E, k);
  let total = 0;
  for (let e = 0; e < E; e++) {
    let p = 0;
    for (let r = 0; r < R; r++) p += probs[r * E + e];
    total += (count[e] / R) * (p / R);
  }
  loss[0] = E * total;
}

export function moeLoadBalancingBackward(dprobs: HostArray, dloss: HostArray, indices: HostArray, R: number, E: number, k: number): void {
  const count = expertCounts(indices, R, E, k);
  for (let r = 0; r < R; r++) {
    for (let e = 0; e < E; e++) dprobs[r * E + e] = (dloss[0] * E * count[e]) / (R * R);
  }
}
