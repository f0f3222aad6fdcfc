/** Reference embedding lookup, RMSNorm, LayerNorm and rotary embedding. */
import type { RopeDims, WeightDtype } from "../kernels.js";
import type { HostArray } from "../../tensor/dtype.js";
import { halfDecoder } from "../../util/half.js";

export function embeddingForward(out: HostArray, ids: HostArray, table: HostArray, n: number, C: number, tableDtype?: WeightDtype): void {
  const decode = tableDtype === "f16" || tableDtype === "bf16" ? halfDecoder(tableDtype) : null; // half-precision weight bits
  for (let i = 0; i < n; i++) {
    const row = ids[i] * C;
    for (let c = 0; c < C; c++) out[i * C + c] = decode ? decode(table[row + c]) : table[row + c];
  }
}

export function embeddingBackward(dtable: HostArray, dout: HostArray, ids: HostArray, n: number, C: number): void {
  for (let i = 0; i < n; i++) {
    const row = ids[i] * C;
    for (let c = 0; c < C; c++) dtable[row + c] += dout[i * C + c];
  }
}

/** y = x / sqrt(mean(x^2) + eps) * (w + offset) */
export function rmsnormForward(
  out: HostArray,
  rstd: HostArray,
  x: HostArray,
  w: HostArray,
  rows: number,
  C: number,
  eps: number,
  offset: number,
): void {
  for (let r = 0; r < rows; r++) {
    let ss = 0;
    for (let c = 0; c < C; c++) ss += x[r * C + c] * x[r * C + c];
    const s = 1 / Math.sqrt(ss / C + eps);
    rstd[r] = s;
    for (let c = 0; c < C; c++) out[r * C + c] = x[r * C + c] * s * (w[c] + offset);
  }
}

/**
 * With xhat = x * rstd and g = dy * (w + offset):
 * dx = rstd * (g - xhat * mean(g * xhat)),  dw += sum_rows dy * xhat
 */
export function rmsnormBackward(
  dx: HostArray,
  dw: HostArray,
  dy: HostArray,
  x: HostArray,
  w: HostArray,
  rstd: HostArray,
  rows: number,
  C: number,
  offset: number,
): void {
  for (let r = 0; r < rows; r++) {
    const s = rstd[r];
    let dot = 0;
    for (let c = 0; c < C; c++) dot += dy[r * C + c] * (w[c] + offset) * x[r * C + c] * s;
    const m = dot / C;
    for (let c = 0; c < C; c++) {
      const xhat = x[r * C + c] * s;
      const g = dy[r * C + c] * (w[c] + offset);
      dx[r * C + c] = s * (g - xhat * m);
      dw[c] += dy[r * C + c] * xhat;
    }
  }
}

/** y = (x - mean) / sqrt(var + eps) * w + b */
export function layernormForward(
  out: HostArray,
  mean: HostArray,
  rstd: HostArray,
  x: HostArray,
  w: HostArray,
  b: HostArray | null,
  rows: number,
  C: number,
  eps: number,
): void {
  for (let r = 0; r < rows; r++) {
    let mu = 0;
    for (let c = 0; c < C; c++) mu += x[r * C + c];
    mu /= C;
    let v = 0;
    for (let c = 0; c < C; c++) v += (x[r * C + c] - mu) ** 2;
    const s = 1 / Math.sqrt(v / C + eps);
    mean[r] = mu;
    rstd[r] = s;
    for (let c = 0; c < C; c++) out[r * C + c] = (x[r * C + c] - mu) * s * w[c] + (b ? b[c] : 0);
  }
}

/** dx = rstd * (g - mean(g) - xhat * mean(g * xhat)) with g = dy * w; dw += dy * xhat; db += dy */
export function layernormBackward(
  dx: HostArray,
  dw: HostArray,
  db: HostArray | null,
  dy: HostArray,
  x: HostArray,
  w: HostArray,
  mean: HostArray,
  rstd: HostArray,
  rows: number,
  C: number,
): void {
  for (let r = 0; r < rows; r++) {
    const mu = mean[r];
    const s = rstd[r];
    let gMean = 0;
    let gxMean = 0;
    for (let c = 0; c < C; c++) {
      const xhat = (x[r * C + c] - mu) * s;
      const g = dy[r * C + c] * w[c];
      gMean += g;
      gxMean += g * xhat;
    }
    gMean /= C;
    gxMean /= C;
    for (let c = 0; c < C; c++) {
      const xhat = (x[r * C + c] - mu) * s;
      const g = dy[r * C + c] * w[c];
      dx[r * C + c] = s * (g - gMean - xhat * gxMean);
      dw[c] += dy[r * C + c] * xhat;
      if (db) db[c] += dy[r * C + c];
    }
  }
}

/**
 * Rotate-half RoPE (HF apply_rotary_pos_emb): for i < rotDim/2, with angle = pos * invFreq[i],
 *   y[i]        = x[i] cos - x[i + half] sin
 *   y[i + half] = x[i + half] cos + x[i] sin
 * Dims past rotDim pass through. The inverse rotation (sin -> -sin) is the backward pass.
 */
export function ropeForward(out: HostArray, x: HostArray, invFreq: HostArray, d: RopeDims): void {
  const { B, T, H, K, rotDim, pos0, attnScaling, inverse } = d;
  const half = rotDim / 2;
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      const pos = pos0 + t;
      for (let h = 0; h < H; h++) {
        const base = ((b * T + t) * H + h) * K;
        for (let i = 0; i < half; i++) {
          const angle = Math.fround(pos * invFreq[i]);
          const cos = Math.fround(Math.cos(angle) * attnScaling);
          const sin = Math.fround(Math.sin(angle) * attnScaling) * (inverse ? -1 : 1);
          const x1 = x[base + i];
          const x2 = x[base + i + half];
          out[base + i] = x1 * cos - x2 * sin;
          out[base + i + half] = x2 * cos + x1 * sin;
        }
        for (let i = rotDim; i < K; i++) out[base + i] = x[base + i];
      }
    }
  }
}
