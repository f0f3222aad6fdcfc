/**
 * The optimizer kernels of the cpu backend (TrainKernels, see kernels_train.ts; assembly/optim.ts).
 * Bias corrections are computed once per call in f64, as the reference does.
 */
import type { TrainKernels } from "../kernels_train.js";
import type { HostArray } from "../../tensor/dtype.js";
import type { CpuRuntime } from "./runtime.js";
import { MIXER_GRAIN } from "./mixers_common.js";

export function cpuTrainKernels(rt: CpuRuntime): TrainKernels<HostArray> {
  const p = (h: HostArray | null, what: string) => rt.ptr(h, what);
  const block = rt.exports.squaresBlock();
  return {
    adamwStep(param, m, v, grad, n, h) {
      if (n <= 0) return;
      const stepSize = h.lr / (1 - h.beta1 ** h.step);
      const invSqrtBc2 = 1 / Math.sqrt(1 - h.beta2 ** h.step);
      rt.call(
        "adamwStep", rt.threadsFor(n, MIXER_GRAIN.memory / 4), p(param, "param"), p(m, "m"), p(v, "v"), p(grad, "grad"), n,
        1 - h.lr * h.weightDecay, h.beta1, h.beta2, h.eps, stepSize, invSqrtBc2, h.gradScale,
      );
    },

    sumSquares(out, x, n, slot) {
      const blocks = Math.ceil(n / block);
      if (blocks === 0) {
        out[slot] = 0;
        return;
      }
      rt.withTemp(blocks * 8, (partials) => {
        rt.call("sumSquaresBlocks", Math.min(rt.threadsFor(n, MIXER_GRAIN.memory), blocks), partials, p(x, "x"), n);
        const parts = new Float64Array(rt.heap.memory.buffer, partials, blocks);
        let s = 0;
        for (let k = 0; k < blocks; k++) s += parts[k];
        out[slot] = s;
      });
    },
  };
}
