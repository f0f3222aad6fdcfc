/**
 * The gated delta rule token by token, the oracle for the chunked kernel (not part of the kernel
 * table). Same layouts and dims as deltanetForward (see kernels_deltanet.ts); d.chunk is ignored.
 * Per value head h, key head kh = floor(h / (H / G)), state S (Dk x Dv):
 *   S <- exp(g_t) S
 *   S <- S + k_t (beta_t (v_t - S^T k_t))^T
 *   o_t = S^T (scale q_t)
 */
import type { DeltaNetDims } from "../kernels_deltanet.js";
import type { HostArray } from "../../tensor/dtype.js";

export function deltanetSequentialForward(
  out: HostArray,
  finalState: HostArray | null,
  q: HostArray,
  k: HostArray,
  v: HostArray,
  g: HostArray,
  beta: HostArray,
  initialState: HostArray | null,
  d: DeltaNetDims,
): void {
  const { B, T, H, G, Dk, Dv, scale } = d;
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const kh = Math.floor(h / (H / G));
      const s0 = (b * H + h) * Dk * Dv;
      const S = new Float64Array(Dk * Dv);
      if (initialState) for (let i = 0; i < Dk * Dv; i++) S[i] = initialState[s0 + i];
      for (let t = 0; t < T; t++) {
        const qk = ((b * T + t) * G + kh) * Dk;
        const vo = ((b * T + t) * H + h) * Dv;
        const gb = (b * T + t) * H + h;
        for (let i = 0; i < Dk * Dv; i++) S[i] *= Math.exp(g[gb]);
        for (let e = 0; e < Dv; e++) {
          let kv = 0;
          for (let r = 0; r < Dk; r++) kv += S[r * Dv + e] * k[qk + r];
          const delta = beta[gb] * (v[vo + e] - kv);
          for (let r = 0; r < Dk; r++) S[r * Dv + e] += k[qk + r] * delta;
        }
        for (let e = 0; e < Dv; e++) {
          let o = 0;
          for (let r = 0; r < Dk; r++) o += S[r * Dv + e] * scale * q[qk + r];
          out[vo + e] = o;
        }
      }
      if (finalState) for (let i = 0; i < Dk * Dv; i++) finalState[s0 + i] = S[i];
    }
  }
}
