/**
 * The mixture-of-experts family of the cpu backend (MoeKernels, see kernels_moe.ts). The expert
 * matmuls run each expert's contiguous group of rows through the core matmul (the packed gemm
 * engine of assembly/matmul.ts) on views of the grouped buffers; routing, grouping, gather,
 * combine and the balancing loss are assembly/moe.ts.
 */
import type { MoeKernels } from "../kernels_moe.js";
import type { CoreKernels } from "../kernels.js";
import type { HostArray } from "../../tensor/dtype.js";
import type { CpuRuntime } from "./runtime.js";
import { MIXER_GRAIN } from "./mixers_common.js";

export function cpuMoeKernels(rt: CpuRuntime, core: CoreKernels<HostArray>): MoeKernels<HostArray> {
  const p = (h: HostArray | null, what: string) => rt.ptr(h, what);
  const rows = (n: number, C: number) => Math.min(rt.threadsFor(n * C, MIXER_GRAIN.memory), Math.max(n, 1));
  const routerScratch = (E: number) => rt.scratch(rt.exports.moeRouterScratchFloats(E) * 4);

  return {
    moeRouterForward(weights, indices, probs, logits, N, E, k, normalize) {
      if (N <= 0) return;
      const [scratch, stride] = routerScratch(E);
      rt.call("moeRouterForward", rows(N, 16 * E), p(weights, "weights"), p(indices, "indices"), p(probs, "probs"), p(logits, "logits"), N, E, k, normalize ? 1 : 0, scratch, stride);
    },

    moeRouterBackward(dlogits, dweights, dprobs, probs, indices, N, E, k, normalize) {
      if (N <= 0) return;
      const [scratch, stride] = routerScratch(E);
      rt.call(
        "moeRouterBackward", rows(N, 4 * E), p(dlogits, "dlogits"), p(dweights, "dweights"), p(dprobs, "dprobs"), p(probs, "probs"), p(indices, "indices"),
        N, E, k, normalize ? 1 : 0, scratch, stride,
      );
    },

    moeGroup(pos, offsets, indices, N, E, k) {
      rt.withTemp(Math.max(E, 1) * 4, (cursor) => rt.call("moeGroup", 1, p(pos, "pos"), p(offsets, "offsets"), p(indices, "indices"), N, E, k, cursor));
    },

    moeGatherForward(xs, x, pos, N, k, C) {
      if (N * k <= 0 || C <= 0) return;
      rt.call("moeGatherForward", rows(N * k, C), p(xs, "xs"), p(x, "x"), p(pos, "pos"), N, k, C);
    },

    moeGatherBackward(dx, dxs, pos, N, k, C) {
      if (N <= 0 || C <= 0) return;
      rt.call("moeGatherBackward", rows(N, k * C), p(dx, "dx"), p(dxs, "dxs"), p(pos, "pos"), N, k, C);
    },

    moeGroupedMatmulForward(out, x, w, offsets, d) {
      const { E, N, K } = d;
      for (let e = 0; e < E; e++) {
        const [r0, r1] = [offsets[e], offsets[e + 1]];
        if (r1 <= r0 || N <= 0) continue;
        core.matmul(out.subarray(r0 * N, r1 * N), x.subarray(r0 * K, r1 * K), w.subarray(e * N * K, (e + 1) * N * K), {
          M: r1 - r0, N, K, transA: false, transB: true, accumulate: false,
        });
      }
    },

    moeGroupedMatmulBackward(dx, dw, dy, x, w, offsets, d) {
      const { E, N, K } = d;
      for (let e = 0; e < E; e++) {
        const [r0, r1] = [offsets[e], offsets[e + 1]];
        const we = w.subarray(e * N * K, (e + 1) * N * K);
        if (dx && r1 > r0 && K > 0) {
          // dx (M_e, K) = dy (M_e, N) @ w[e] (N, K)
          core.matmul(dx.subarray(r0 * K, r1 * K), dy.subarray(r0 * N, r1 * N), we, { M: r1 - r0, N: K, K: N, transA: false, transB: false, accumulate: false });
        }
        if (dw && N * K > 0) {
          const dwe = dw.subarray(e * N * K, (e + 1) * N * K);
          // dw[e] (N, K) = dy^T (N, M_e) @ x (M_e, K); an expert with no rows gets zeros
          if (r1 > r0) core.matmul(dwe, dy.subarray(r0 * N, r1 * N), x.subarray(r0 * K, r1 * K), { M: N, N: K, K: r1 - r0, transA: true, transB: false, accumulate: false });
          else core.fill(dwe, 0, N * K);
        }
      }
    },

    moeCombineForward(out, ys, weights, pos, N, k, C) {
      if (N <= 0 || C <= 0) return;
      rt.call("moeCombineForward", rows(N, k * C), p(out, "out"), p(ys, "ys"), p(weights, "weights"), p(pos, "pos"), N, k, C);
    },

    moeCombineBackward(dys, dweights, dout, ys, weights, pos, N, k, C) {
      if (N * k <= 0) return;
      rt.call("moeCombineBackward", rows(N * k, 2 * C), p(dys, "dys"), p(dweights, "dweights"), p(dout, "dout"), p(ys, "ys"), p(weights, "weights"), p(pos, "pos"), N, k, C);
    },

    rowScaleForward(out, x, s, n, C) {
      if (n <= 0 || C <= 0) return;
      rt.call("rowScaleForward", rows(n, C), p(out, "out"), p(x, "x"), p(s, "s"), n, C);
    },

    rowScaleBackward(dx, ds, dy, x, s, n, C) {
      if (n <= 0) return;
      rt.call("rowScaleBackward", rows(n, 2 * C), p(dx, "dx"), p(ds, "ds"), p(dy, "dy"), p(x, "x"), p(s, "s"), n, C);
    },

    moeLoadBalancingForward(loss, probs, indices, R, E, k) {
      rt.withTemp(Math.max(E, 1) * 8, (counts) => rt.call("moeLoadBalancingForward", 1, p(loss, "loss"), p(probs, "probs"), p(indices, "indices"), R, E, k, counts));
    },

    moeLoadBalancingBackward(dprobs, dloss, indices, R, E, k) {
      if (R <= 0) return;
      const [scratch, stride] = rt.scratch(Math.max(E, 1) * 8);
      rt.call("moeLoadBalancingBackward", rows(R, E), p(dprobs, "dprobs"), p(dloss, "dloss"), p(indices, "indices"), R, E, k, scratch, stride);
    },
  };
}
