/**
 * Reference causal attention with grouped KV heads.
 * Layouts: q, out (B, T, H, K); k, v (B, kvRows, G, K); lse (B, H, T); probs (B, H, T, S).
 * Query head h reads KV head floor(h / (H / G)).
 *
 * attentionForward is the tiled algorithm of FlashAttention (Dao et al. 2022, Alg. 1) with the
 * FlashAttention-2 backward (Dao 2023, Alg. 2): an online softmax over key blocks, so memory is
 * O(T) and only the log-sum-exp per query row is saved. attentionNaive* materialises the
 * (T, S) probability matrix: the O(T^2)-memory baseline the showdown measures against.
 */
import type { AttentionDims } from "../kernels.js";
import type { HostArray } from "../../tensor/dtype.js";
import { decodeHalf } from "../../util/half.js";

const KEY_BLOCK = 32;

const qIndex = (d: AttentionDims, b: number, t: number, h: number) => ((b * d.T + t) * d.H + h) * d.K;
const kvIndex = (d: AttentionDims, b: number, j: number, g: number) => ((b * d.kvRows + j) * d.G + g) * d.K;
/** keys visible to query t: all S, or causally up to qOffset + t */
const visible = (d: AttentionDims, t: number) => (d.causal ? Math.min(d.S, d.qOffset + t + 1) : d.S);

/** The kernels other than attentionForward take f32 keys and values only. */
function f32KV(d: AttentionDims, kernel: string): void {
  if ((d.kvDtype ?? "f32") !== "f32") throw new Error(`internal: ${kernel} takes f32 keys and values, got ${d.kvDtype}`);
}

function dot(a: HostArray, ao: number, b: HostArray, bo: number, K: number): number {
  let s = 0;
  for (let c = 0; c < K; c++) s += a[ao + c] * b[bo + c];
  return s;
}

export function attentionForward(
  out: HostArray,
  lse: HostArray,
  q: HostArray,
  k16: HostArray,
  v16: HostArray,
  d: AttentionDims,
): void {
  const { B, T, H, G, K, scale } = d;
  // an f16 cache holds rounded keys and values; attention computes on them widened
  const k = d.kvDtype === "f16" ? decodeHalf(k16 as Uint16Array, "f16") : k16;
  const v = d.kvDtype === "f16" ? decodeHalf(v16 as Uint16Array, "f16") : v16;
  const acc = new Float64Array(K);
  const s = new Float64Array(KEY_BLOCK);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const g = Math.floor(h / (H / G));
      for (let t = 0; t < T; t++) {
        const qi = qIndex(d, b, t, h);
        const n = visible(d, t);
        let m = -Infinity; // running max of scores
        let l = 0; // running sum of exp(score - m)
        acc.fill(0);
        for (let j0 = 0; j0 < n; j0 += KEY_BLOCK) {
          const j1 = Math.min(n, j0 + KEY_BLOCK);
          let mBlock = -Infinity;
          for (let j = j0; j < j1; j++) {
            s[j - j0] = scale * dot(q, qi, k, kvIndex(d, b, j, g), K);
            mBlock = Math.max(mBlock, s[j - j0]);
          }
          const mNew = Math.max(m, mBlock);
          const correction = Math.exp(m - mNew);
          l *= correction;
          for (let c = 0; c < K; c++) acc[c] *= correction;
          for (let j = j0; j < j1; j++) {
            const p = Math.exp(s[j - j0] - mNew);
            l += p;
            const vj = kvIndex(d, b, j, g);
            for (let c = 0; c < K; c++) acc[c] += p * v[vj + c];
          }
          m = mNew;
        }
        for (let c = 0; c < K; c++) out[qi + c] = n > 0 ? acc[c] / l : 0;
        lse[(b * H + h) * T + t] = n > 0 ? m + Math.log(l) : -Infinity;
      }
    }
  }
}

export function attentionBackward(
  dq: HostArray,
  dk: HostArray,
  dv: HostArray,
  dout: HostArray,
  q: HostArray,
  k: HostArray,
  v: HostArray,
  out: HostArray,
  lse: HostArray,
  d: AttentionDims,
): void {
  f32KV(d, "attentionBackward");
  const { B, T, H, G, K, scale } = d;
  dq.fill(0, 0, B * T * H * K);
  dk.fill(0, 0, B * d.kvRows * G * K);
  dv.fill(0, 0, B * d.kvRows * G * K);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const g = Math.floor(h / (H / G));
      for (let t = 0; t < T; t++) {
        const qi = qIndex(d, b, t, h);
        const L = lse[(b * H + h) * T + t];
        const D = dot(dout, qi, out, qi, K); // rowsum(dO * O)
        for (let j = 0; j < visible(d, t); j++) {
          const kj = kvIndex(d, b, j, g);
          const p = Math.exp(scale * dot(q, qi, k, kj, K) - L);
          const dp = dot(dout, qi, v, kj, K);
          const ds = p * (dp - D);
          for (let c = 0; c < K; c++) {
            dv[kj + c] += p * dout[qi + c];
            dq[qi + c] += scale * ds * k[kj + c];
            dk[kj + c] += scale * ds * q[qi + c];
          }
        }
      }
    }
  }
}

export function attentionNaiveForward(
  out: HostArray,
  probs: HostArray,
  q: HostArray,
  k: HostArray,
  v: HostArray,
  d: AttentionDims,
): void {
  f32KV(d, "attentionNaiveForward");
  const { B, T, S, H, G, K, scale } = d;
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const g = Math.floor(h / (H / G));
      for (let t = 0; t < T; t++) {
        const qi = qIndex(d, b, t, h);
        const row = ((b * H + h) * T + t) * S;
        const n = visible(d, t);
        let m = -Infinity;
        for (let j = 0; j < n; j++) {
          probs[row + j] = scale * dot(q, qi, k, kvIndex(d, b, j, g), K);
          m = Math.max(m, probs[row + j]);
        }
        let l = 0;
        for (let j = 0; j < n; j++) {
          probs[row + j] = Math.exp(probs[row + j] - m);
          l += probs[row + j];
        }
        for (let j = 0; j < S; j++) probs[row + j] = j < n ? probs[row + j] / l : 0;
        for (let c = 0; c < K; c++) {
          let o = 0;
          for (let j = 0; j < n; j++) o += probs[row + j] * v[kvIndex(d, b, j, g) + c];
          out[qi + c] = o;
        }
      }
    }
  }
}

export function attentionNaiveBackward(
  dq: HostArray,
  dk: HostArray,
  dv: HostArray,
  dout: HostArray,
  q: HostArray,
  k: HostArray,
  v: HostArray,
  probs: HostArray,
  d: AttentionDims,
): void {
  f32KV(d, "attentionNaiveBackward");
  const { B, T, S, H, G, K, scale } = d;
  dq.fill(0, 0, B * T * H * K);
  dk.fill(0, 0, B * d.kvRows * G * K);
  dv.fill(0, 0, B * d.kvRows * G * K);
  const dp = new Float64Array(S);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const g = Math.floor(h / (H / G));
      for (let t = 0; t < T; t++) {
        const qi = qIndex(d, b, t, h);
        const row = ((b * H + h) * T + t) * S;
        let rowDot = 0;
        for (let j = 0; j < S; j++) {
          dp[j] = dot(dout, qi, v, kvIndex(d, b, j, g), K);
          rowDot += dp[j] * probs[row + j];
        }
        for (let j = 0; j < S; j++) {
          const p = probs[row + j];
          if (p === 0) continue;
          const kj = kvIndex(d, b, j, g);
          const ds = p * (dp[j] - rowDot);
          for (let c = 0; c < K; c++) {
            dv[kj + c] += p * dout[qi + c];
            dq[qi + c] += scale * ds * k[kj + c];
            dk[kj + c] += scale * ds * q[qi + c];
          }
        }
      }
    }
  }
}
