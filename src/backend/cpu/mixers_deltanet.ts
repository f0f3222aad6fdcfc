/**
 * The Gated DeltaNet family of the cpu backend (DeltaNetKernels, see kernels_deltanet.ts): the
 * delta rule per (sequence, head) (assembly/deltanet.ts), the l2 norm, and the causal conv,
 * which is the Mamba conv without bias (assembly/conv.ts).
 */
import type { DeltaNetKernels, DeltaNetDims } from "../kernels_deltanet.js";
import type { HostArray } from "../../tensor/dtype.js";
import type { CpuRuntime } from "./runtime.js";
import type { ScanKernels } from "../kernels_scan.js";
import { MIXER_GRAIN } from "./mixers_common.js";
import { convBackward } from "./mixers_scan.js";

export function cpuDeltaNetKernels(rt: CpuRuntime, scan: ScanKernels<HostArray>): DeltaNetKernels<HostArray> {
  const p = (h: HostArray | null, what: string) => rt.ptr(h, what);
  const dims = (d: DeltaNetDims) => [d.B, d.T, d.H, d.G, d.Dk, d.Dv, d.scale, d.chunk];

  return {
    l2normForward(out, rnorm, x, rows, C, eps) {
      if (rows <= 0) return;
      rt.call("l2normForward", Math.min(rt.threadsFor(rows * C, MIXER_GRAIN.memory), rows), p(out, "out"), p(rnorm, "rnorm"), p(x, "x"), rows, C, eps);
    },

    l2normBackward(dx, dy, x, rnorm, rows, C) {
      if (rows <= 0) return;
      rt.call("l2normBackward", Math.min(rt.threadsFor(2 * rows * C, MIXER_GRAIN.memory), rows), p(dx, "dx"), p(dy, "dy"), p(x, "x"), p(rnorm, "rnorm"), rows, C);
    },

    deltanetConvForward(out, windowOut, x, w, windowIn, d) {
      scan.conv1dForward(out, windowOut, x, w, null, windowIn, d);
    },

    deltanetConvBackward(dx, dw, dy, x, w, windowIn, d) {
      convBackward(rt, dx, dw, null, null, dy, x, w, windowIn, d.B, d.T, d.D, d.W, true);
    },

    deltanetForward(out, finalState, chunkStates, q, k, v, g, beta, initialState, d) {
      if (d.B * d.H <= 0) return;
      const [scratch, stride] = rt.scratch(rt.exports.deltanetForwardScratchFloats(d.Dk, d.Dv) * 4);
      const nth = Math.min(rt.threadsFor(4 * d.B * d.T * d.H * d.Dk * d.Dv, MIXER_GRAIN.exp), d.B * d.H);
      rt.call(
        "deltanetForward", nth, p(out, "out"), p(finalState, "finalState"), p(chunkStates, "chunkStates"), p(q, "q"), p(k, "k"), p(v, "v"), p(g, "g"),
        p(beta, "beta"), p(initialState, "initialState"), ...dims(d), scratch, stride,
      );
    },

    deltanetBackward(dq, dk, dv, dg, dbeta, dout, q, k, v, g, beta, chunkStates, d) {
      if (d.B * d.G <= 0) return;
      const [scratch, stride] = rt.scratch(rt.exports.deltanetBackwardScratchFloats(d.Dk, d.Dv, d.chunk) * 4);
      const nth = Math.min(rt.threadsFor(12 * d.B * d.T * d.H * d.Dk * d.Dv, MIXER_GRAIN.exp), d.B * d.G);
      rt.call(
        "deltanetBackward", nth, p(dq, "dq"), p(dk, "dk"), p(dv, "dv"), p(dg, "dg"), p(dbeta, "dbeta"), p(dout, "dout"), p(q, "q"), p(k, "k"), p(v, "v"),
        p(g, "g"), p(beta, "beta"), p(chunkStates, "chunkStates"), ...dims(d), scratch, stride,
      );
    },

    deltanetStep(out, state, q, k, v, g, beta, d) {
      if (d.B * d.H <= 0) return;
      const nth = Math.min(rt.threadsFor(4 * d.B * d.H * d.Dk * d.Dv, MIXER_GRAIN.exp), d.B * d.H);
      rt.call("deltanetStep", nth, p(out, "out"), p(state, "state"), p(q, "q"), p(k, "k"), p(v, "v"), p(g, "g"), p(beta, "beta"), d.B, d.H, d.G, d.Dk, d.Dv, d.scale);
    },
  };
}
