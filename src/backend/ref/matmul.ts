/** Reference matrix multiply: out (M, N) (+)= op(a) (M, K) @ op(b) (K, N), optionally batched. */
import type { MatmulDims } from "../kernels.js";
import type { HostArray } from "../../tensor/dtype.js";
import { f16ToF32, bf16ToF32 } from "../../util/half.js";

export function matmul(out: HostArray, a: HostArray, b: HostArray, d: MatmulDims): void {
  const { M, N, K, transA, transB, accumulate } = d;
  const batch = d.batch ?? 1;
  const bDtype = d.bDtype ?? "f32";
  const bValue = (i: number) => (bDtype === "f16" ? f16ToF32(b[i]) : bDtype === "bf16" ? bf16ToF32(b[i]) : b[i]);
  for (let p = 0; p < batch; p++) {
    const ao = p * (d.strideA ?? M * K);
    const bo = p * (d.strideB ?? K * N);
    const oo = p * (d.strideOut ?? M * N);
    for (let i = 0; i < M; i++) {
      for (let j = 0; j < N; j++) {
        let s = 0;
        for (let k = 0; k < K; k++) {
          const av = transA ? a[ao + k * M + i] : a[ao + i * K + k];
          const bv = bValue(transB ? bo + j * K + k : bo + k * N + j);
          s += av * bv;
        }
        out[oo + i * N + j] = (accumulate ? out[oo + i * N + j] : 0) + s;
      }
    }
  }
}
