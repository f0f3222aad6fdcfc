/**
 * The RWKV family of the cpu backend (RwkvKernels, see kernels_rwkv.ts): WKV-4 vectorised over
 * channels (assembly/rwkv4.ts) and RWKV-7's delta rule per (sequence, head) (assembly/rwkv7.ts).
 * Work items have disjoint outputs, so results do not depend on the thread count.
 */
import type { RwkvKernels } from "../kernels_rwkv.js";
import type { HostArray } from "../../tensor/dtype.js";
import type { CpuRuntime } from "./runtime.js";
import { MIXER_GRAIN } from "./mixers_common.js";

export function cpuRwkvKernels(rt: CpuRuntime): RwkvKernels<HostArray> {
  const p = (h: HostArray | null, what: string) => rt.ptr(h, what);
  /** threads for a kernel of `work` units over `items` independent work items */
  const threads = (work: number, items: number) => Math.min(rt.threadsFor(work, MIXER_GRAIN.exp), items);

  return {
    wkv4Forward(y, stateOut, saved, w, u, k, v, state0, d) {
      const { B, T, D } = d;
      if (B * D <= 0) return;
      rt.call("wkv4Forward", threads(4 * B * T * D, B * Math.ceil(D / 4)), p(y, "y"), p(stateOut, "stateOut"), p(saved, "saved"), p(w, "w"), p(u, "u"), p(k, "k"), p(v, "v"), p(state0, "state0"), B, T, D);
    },

    wkv4Backward(dw, du, dk, dv, dstate0, dy, dstateT, w, u, k, v, y, saved, d) {
      const { B, T, D } = d;
      if (B * D <= 0 || T <= 0) return;
      rt.call(
        "wkv4Backward", threads(6 * B * T * D, B * Math.ceil(D / 4)), p(dw, "dw"), p(du, "du"), p(dk, "dk"), p(dv, "dv"), p(dstate0, "dstate0"), p(dy, "dy"),
        p(dstateT, "dstateT"), p(w, "w"), p(u, "u"), p(k, "k"), p(v, "v"), p(y, "y"), p(saved, "saved"), B, T, D,
      );
    },

    wkv4Step(y, state, w, u, k, v, d) {
      const { B, D } = d;
      if (B * D <= 0) return;
      rt.call("wkv4Step", threads(4 * B * D, B * Math.ceil(D / 4)), p(y, "y"), p(state, "state"), p(w, "w"), p(u, "u"), p(k, "k"), p(v, "v"), B, D);
    },

    wkv7Forward(y, stateOut, checkpoints, r, w, k, v, a, b, state0, d) {
      const { B, T, H, N, chunk } = d;
      if (B * H <= 0) return;
      const [scratch, stride] = rt.scratch(rt.exports.wkv7ForwardScratchFloats(N) * 4);
      rt.call(
        "wkv7Forward", threads(B * T * H * N * N, B * H), p(y, "y"), p(stateOut, "stateOut"), p(checkpoints, "checkpoints"), p(r, "r"), p(w, "w"),
        p(k, "k"), p(v, "v"), p(a, "a"), p(b, "b"), p(state0, "state0"), B, T, H, N, chunk, scratch, stride,
      );
    },

    wkv7Backward(dr, dw, dk, dv, da, db, dstate0, dy, dstateT, r, w, k, v, a, b, checkpoints, d) {
      const { B, T, H, N, chunk } = d;
      if (B * H <= 0) return;
      const [scratch, stride] = rt.scratch(rt.exports.wkv7BackwardScratchFloats(N, chunk) * 4);
      rt.call(
        "wkv7Backward", threads(4 * B * T * H * N * N, B * H), p(dr, "dr"), p(dw, "dw"), p(dk, "dk"), p(dv, "dv"), p(da, "da"), p(db, "db"),
        p(dstate0, "dstate0"), p(dy, "dy"), p(dstateT, "dstateT"), p(r, "r"), p(w, "w"), p(k, "k"), p(v, "v"), p(a, "a"), p(b, "b"),
        p(checkpoints, "checkpoints"), B, T, H, N, chunk, scratch, stride,
      );
    },

    wkv7Step(y, state, r, w, k, v, a, b, d) {
      const { B, H, N } = d;
      if (B * H <= 0) return;
      rt.call("wkv7Step", threads(B * H * N * N, B * H), p(y, "y"), p(state, "state"), p(r, "r"), p(w, "w"), p(k, "k"), p(v, "v"), p(a, "a"), p(b, "b"), B, H, N);
    },
  };
}
