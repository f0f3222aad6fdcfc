/** Reference matrix multiply: out (M, N) (+)= op(a) (M, K) @ op(b) (K, N), optionally batched. */
import type { MatmulDims } from "../kernels.js";
import type { HostArray } from "../../tensor/dtype.js";
import { halfDecoder } from "../../util/half.js";

export function matmul(out: HostArray, a: HostArray, b: HostArray, d: MatmulDims): void {
  if (d.bDtype === "f16" || d.bDtype === "bf16") return matmulHalfB(out, a, b, d, d.bDtype);
  const { M, N, K, transA, transB, accumulate } = d;
  const batch = d.batch ?? 1;
  for (let p = 0; p < batch; p++) {
    const ao = p * (d.strideA ?? M * K);
    const bo = p * (d.strideB ?? K * N);
    const oo = p * (d.strideOut ?? M * N);
    for (let i = 0; i < M; i++) {
      for (let j = 0; j < N; j++) {
        let s = 0;
        for (let k = 0; k < K; k++) {
          const av = transA ? a[ao + k * M + i] : a[ao + i * K + k];
          const bv = transB ? b[bo + j * K + k] : b[bo + k * N + j];
          s += av * bv;
        }
        out[oo + i * N + j] = (accumulate ? out[oo + i * N + j] : 0) + s;
      }
    }
  }
}

/**
 * The same product with b holding half-precision weight bits: column j of op(b) is widened to
 * f32 once, then dotted with every row of op(a) (decoding costs N*K, not M*N*K).
 */
function matmulHalfB(out: HostArray, a: HostArray, b: HostArray, d: MatmulDims, dtype: "f16" | "bf16"): void {
  const { M, N, K, transA, transB, accumulate } = d;
  const decode = halfDecoder(dtype);
  const column = new Float64Array(K);
  for (let p = 0; p < (d.batch ?? 1); p++) {
    const ao = p * (d.strideA ?? M * K);
    const bo = p * (d.strideB ?? K * N);
    const oo = p * (d.strideOut ?? M * N);
    for (let j = 0; j < N; j++) {
      for (let k = 0; k < K; k++) column[k] = decode(transB ? b[bo + j * K + k] : b[bo + k * N + j]);
      for (let i = 0; i < M; i++) {
        let s = 0;
        for (let k = 0; k < K; k++) s += (transA ? a[ao + k * M + i] : a[ao + i * K + k]) * column[k];
        out[oo + i * N + j] = (accumulate ? out[oo + i * N + j] : 0) + s;
      }
    }
  }
}
