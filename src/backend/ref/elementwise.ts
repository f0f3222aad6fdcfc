/** Reference elementwise kernels: one statement per definition. */
import type { BinaryOp, UnaryOp } from "../kernels.js";
import type { HostArray } from "../../tensor/dtype.js";
import { f16ToF32, f32ToF16, bf16ToF32, f32ToBf16 } from "../../util/half.js";
import { splitByCopies } from "../split_copies.js";

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);

function erf(x: number): number {
  // Abramowitz-Stegun 7.1.26 is too coarse for 1e-4 parity; use a high-precision series/continued fraction.
  const ax = Math.abs(x);
  if (ax < 2.5) {
    // Maclaurin series, converges quickly for |x| < 2.5
    let sum = ax;
    let term = ax;
    const x2 = ax * ax;
    for (let n = 1; n < 60; n++) {
      term *= -x2 / n;
      const add = term / (2 * n + 1);
      sum += add;
      if (Math.abs(add) < 1e-17) break;
    }
    const r = (2 / Math.sqrt(Math.PI)) * sum;
    return x < 0 ? -r : r;
  }
  // erfc continued fraction for large |x|
  let f = 0;
  for (let n = 60; n >= 1; n--) f = n / 2 / (ax + f);
  const erfc = Math.exp(-ax * ax) / Math.sqrt(Math.PI) / (ax + f);
  return x < 0 ? erfc - 1 : 1 - erfc;
}

export function sigmoid(x: number): number {
  return 1 / (1 + Math.exp(-x));
}

/** softplus as PyTorch computes it (threshold 20: linear above). */
export function softplus(x: number): number {
  return x > 20 ? x : Math.log1p(Math.exp(x));
}

export function unaryValue(op: UnaryOp, x: number): number {
  switch (op) {
    case "silu":
      return x * sigmoid(x);
    case "gelu":
      return 0.5 * x * (1 + erf(x / Math.SQRT2));
    case "gelu_tanh":
      return 0.5 * x * (1 + Math.tanh(SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)));
    case "relu":
      return x > 0 ? x : 0;
    case "relu_sq":
      return x > 0 ? x * x : 0;
    case "sigmoid":
      return sigmoid(x);
    case "softplus":
      return softplus(x);
    case "exp":
      return Math.exp(x);
    case "tanh":
      return Math.tanh(x);
    case "neg":
      return -x;
    case "square":
      return x * x;
  }
}

/** f'(x) */
export function unaryDerivative(op: UnaryOp, x: number): number {
  switch (op) {
    case "silu": {
      const s = sigmoid(x);
      return s * (1 + x * (1 - s));
    }
    case "gelu": {
      const cdf = 0.5 * (1 + erf(x / Math.SQRT2));
      const pdf = Math.exp(-0.5 * x * x) / Math.sqrt(2 * Math.PI);
      return cdf + x * pdf;
    }
    case "gelu_tanh": {
      const u = SQRT_2_OVER_PI * (x + 0.044715 * x * x * x);
      const t = Math.tanh(u);
      const du = SQRT_2_OVER_PI * (1 + 3 * 0.044715 * x * x);
      return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * du;
    }
    case "relu":
      return x > 0 ? 1 : 0;
    case "relu_sq":
      return x > 0 ? 2 * x : 0;
    case "sigmoid": {
      const s = sigmoid(x);
      return s * (1 - s);
    }
    case "softplus":
      return x > 20 ? 1 : sigmoid(x);
    case "exp":
      return Math.exp(x);
    case "tanh": {
      const t = Math.tanh(x);
      return 1 - t * t;
    }
    case "neg":
      return -1;
    case "square":
      return 2 * x;
  }
}

export function fill(out: HostArray, value: number, n: number): void {
  out.fill(value, 0, n);
}

export function copy2d(
  out: HostArray,
  x: HostArray,
  rows: number,
  cols: number,
  outStride: number,
  outOffset: number,
  xStride: number,
  xOffset: number,
  accumulate: boolean,
): void {
  for (let r = 0; r < rows; r++) {
    const o = r * outStride + outOffset;
    const i = r * xStride + xOffset;
    for (let c = 0; c < cols; c++) out[o + c] = (accumulate ? out[o + c] : 0) + x[i + c];
  }
}

export function split(outs: HostArray[], x: HostArray, rows: number, sizes: number[]): void {
  splitByCopies(copy2d, outs, x, rows, sizes);
}

type Half = "f32" | "f16" | "bf16";
export function cast(out: HostArray, x: HostArray, n: number, outDtype: Half, xDtype: Half): void {
  for (let i = 0; i < n; i++) {
    const v = xDtype === "f16" ? f16ToF32(x[i]) : xDtype === "bf16" ? bf16ToF32(x[i]) : x[i];
    out[i] = outDtype === "f16" ? f32ToF16(v) : outDtype === "bf16" ? f32ToBf16(v) : v;
  }
}

export function unaryForward(op: UnaryOp, out: HostArray, x: HostArray, n: number): void {
  for (let i = 0; i < n; i++) out[i] = unaryValue(op, x[i]);
}

export function unaryBackward(op: UnaryOp, dx: HostArray, dy: HostArray, x: HostArray, n: number): void {
  for (let i = 0; i < n; i++) dx[i] = dy[i] * unaryDerivative(op, x[i]);
}

export function binaryForward(op: BinaryOp, out: HostArray, a: HostArray, b: HostArray, n: number, bn: number): void {
  for (let i = 0; i < n; i++) {
    const bv = b[i % bn];
    out[i] = op === "add" ? a[i] + bv : op === "sub" ? a[i] - bv : a[i] * bv;
  }
}

export function axpby(out: HostArray, alpha: number, x: HostArray, beta: number, y: HostArray, n: number): void {
  for (let i = 0; i < n; i++) out[i] = alpha * x[i] + (beta === 0 ? 0 : beta * y[i]);
}

export function sumRows(out: HostArray, x: HostArray, rows: number, cols: number, accumulate: boolean): void {
  for (let c = 0; c < cols; c++) {
    let s = 0;
    for (let r = 0; r < rows; r++) s += x[r * cols + c];
    out[c] = (accumulate ? out[c] : 0) + s;
  }
}

export function swigluForward(out: HostArray, g: HostArray, u: HostArray, n: number): void {
  for (let i = 0; i < n; i++) out[i] = g[i] * sigmoid(g[i]) * u[i];
}

export function swigluBackward(dg: HostArray, du: HostArray, dy: HostArray, g: HostArray, u: HostArray, n: number): void {
  for (let i = 0; i < n; i++) {
    const s = sigmoid(g[i]);
    du[i] = dy[i] * g[i] * s;
    dg[i] = dy[i] * u[i] * s * (1 + g[i] * (1 - s));
  }
}
