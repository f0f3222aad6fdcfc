/**
 * The state-space family of the cpu backend (ScanKernels, see kernels_scan.ts): the causal
 * conv1d (assembly/conv.ts), Mamba's selective scan (assembly/scan.ts) and Mamba-2's SSD
 * (assembly/ssd.ts). Each entry checks handles, sizes workspace, picks threads from the work,
 * and runs the fixed-order reductions that make gradients independent of the thread count.
 */
import type { ScanKernels, SsdDims } from "../kernels_scan.js";
import type { HostArray } from "../../tensor/dtype.js";
import type { CpuRuntime } from "./runtime.js";
import { MIXER_GRAIN, reduceRows } from "./mixers_common.js";
import { GRAIN, UNARY_CODE } from "./kernels.js";

/** Sequences x slabs of the scan backward: enough work items for a few threads when B is small, from the dims alone. */
const SCAN_MIN_ITEMS = 16;

export function cpuScanKernels(rt: CpuRuntime): ScanKernels<HostArray> {
  const p = (h: HostArray | null, what: string) => rt.ptr(h, what);
  const convScratch = (D: number, W: number) => rt.scratch(rt.exports.convScratchFloats(D, W) * 4);

  return {
    conv1dForward(out, stateOut, x, weight, bias, stateIn, d) {
      const { B, T, D, W } = d;
      if (B <= 0 || D <= 0) return;
      if (T > 0) {
        const [scratch, stride] = convScratch(D, W);
        const nth = Math.min(rt.threadsFor(B * T * D * W, MIXER_GRAIN.memory), B * T);
        rt.call("conv1dForward", nth, p(out, "out"), p(x, "x"), p(weight, "weight"), p(bias, "bias"), p(stateIn, "stateIn"), B, T, D, W, scratch, stride);
      }
      if (stateOut && W > 1) {
        rt.call("conv1dWindow", Math.min(rt.threadsFor(B * (W - 1) * D, MIXER_GRAIN.memory), B), p(stateOut, "stateOut"), p(x, "x"), p(stateIn, "stateIn"), B, T, D, W);
      }
    },

    conv1dBackward(dx, dweight, dbias, dstateIn, dout, x, weight, stateIn, d) {
      convBackward(rt, dx, dweight, dbias, dstateIn, dout, x, weight, stateIn, d.B, d.T, d.D, d.W, false);
    },

    conv1dStep(out, state, x, weight, bias, d) {
      const { B, D, W } = d;
      if (B <= 0 || D <= 0) return;
      const nth = Math.min(rt.threadsFor(B * D * W, MIXER_GRAIN.memory), B * Math.ceil(D / 4));
      rt.call("conv1dStep", nth, p(out, "out"), p(state, "state"), p(x, "x"), p(weight, "weight"), p(bias, "bias"), B, D, W);
      // the activation as a second pass over (B, D): a kernel call costs no dispatch here
      if (d.act) rt.call("unaryForward", rt.threadsFor(B * D, GRAIN.math), UNARY_CODE[d.act], p(out, "out"), p(out, "out"), B * D);
    },

    selectiveScanForward(out, stateOut, checkpoints, u, dt, A, Bmat, Cmat, Dskip, z, dtBias, stateIn, d) {
      const { B, T, D, N, chunk } = d;
      if (B <= 0 || D <= 0) return;
      const [scratch, stride] = rt.scratch(rt.exports.scanForwardScratchFloats(N, T) * 4);
      const nth = Math.min(rt.threadsFor(B * T * D * N, MIXER_GRAIN.exp), B * Math.ceil(D / 4));
      rt.call(
        "selectiveScanForward", nth, p(out, "out"), p(stateOut, "stateOut"), p(checkpoints, "checkpoints"), p(u, "u"), p(dt, "dt"), p(A, "A"),
        p(Bmat, "Bmat"), p(Cmat, "Cmat"), p(Dskip, "Dskip"), p(z, "z"), p(dtBias, "dtBias"), p(stateIn, "stateIn"),
        B, T, D, N, chunk, d.deltaSoftplus ? 1 : 0, scratch, stride,
      );
    },

    selectiveScanBackward(du, ddt, dA, dB, dC, dDskip, dz, ddtBias, dstateIn, dout, u, dt, A, Bmat, Cmat, Dskip, z, dtBias, checkpoints, d) {
      const { B, T, D, N, chunk } = d;
      if (B <= 0 || D <= 0) return;
      const groups = Math.ceil(D / 4);
      const slabs = Math.max(1, Math.min(groups, Math.ceil(SCAN_MIN_ITEMS / B)));
      const rowFloats = B * T * N;
      const partWidth = D * N + 2 * D;
      const [scratch, stride] = rt.scratch(rt.exports.scanBackwardScratchFloats(N, chunk) * 4);
      const nth = Math.min(rt.threadsFor(3 * B * T * D * N, MIXER_GRAIN.exp), B * slabs);
      rt.withTemp(B * partWidth * 4, (partials) => {
        rt.withTemp(Math.max(1, (slabs - 1) * 2 * rowFloats) * 4, (slabTemp) => {
          rt.call(
            "selectiveScanBackward", nth, p(du, "du"), p(ddt, "ddt"), p(dB, "dB"), p(dC, "dC"), p(dz, "dz"), p(dstateIn, "dstateIn"), partials,
            p(dout, "dout"), p(u, "u"), p(dt, "dt"), p(A, "A"), p(Bmat, "Bmat"), p(Cmat, "Cmat"), p(Dskip, "Dskip"), p(z, "z"), p(dtBias, "dtBias"),
            p(checkpoints, "checkpoints"), B, T, D, N, chunk, d.deltaSoftplus ? 1 : 0, slabs, slabTemp, scratch, stride, rt.pool.counter,
          );
          if (slabs > 1) {
            reduceRows(rt, p(dB, "dB"), slabTemp, slabs - 1, rowFloats, 2 * rowFloats, 0, true);
            reduceRows(rt, p(dC, "dC"), slabTemp, slabs - 1, rowFloats, 2 * rowFloats, rowFloats, true);
          }
        });
        reduceRows(rt, p(dA, "dA"), partials, B, D * N, partWidth, 0, false);
        if (dDskip) reduceRows(rt, p(dDskip, "dDskip"), partials, B, D, partWidth, D * N, false);
        if (ddtBias) reduceRows(rt, p(ddtBias, "ddtBias"), partials, B, D, partWidth, D * N + D, false);
      });
    },

    selectiveScanStep(out, state, u, dt, A, Bmat, Cmat, Dskip, z, dtBias, d) {
      const { B, D, N } = d;
      if (B <= 0 || D <= 0) return;
      const nth = Math.min(rt.threadsFor(B * D * N, MIXER_GRAIN.exp), B * Math.ceil(D / 4));
      rt.call(
        "selectiveScanStep", nth, p(out, "out"), p(state, "state"), p(u, "u"), p(dt, "dt"), p(A, "A"), p(Bmat, "Bmat"), p(Cmat, "Cmat"),
        p(Dskip, "Dskip"), p(z, "z"), p(dtBias, "dtBias"), B, D, N, d.deltaSoftplus ? 1 : 0,
      );
    },

    ssdForward(y, stateOut, checkpoints, x, dt, A, Bmat, Cmat, Dskip, dtBias, stateIn, d) {
      const { B, T, H, P, N } = d;
      if (B * H <= 0) return;
      const [scratch, stride] = rt.scratch(rt.exports.ssdForwardScratchFloats(P, N) * 4);
      const nth = Math.min(rt.threadsFor(B * T * H * P * N, MIXER_GRAIN.exp), B * H);
      rt.call(
        "ssdForward", nth, p(y, "y"), p(stateOut, "stateOut"), p(checkpoints, "checkpoints"), p(x, "x"), p(dt, "dt"), p(A, "A"), p(Bmat, "Bmat"),
        p(Cmat, "Cmat"), p(Dskip, "Dskip"), p(dtBias, "dtBias"), p(stateIn, "stateIn"), ...ssdDimArgs(d), scratch, stride,
      );
    },

    ssdBackward(dx, ddt, dA, dB, dC, dDskip, ddtBias, dstateIn, dy, x, dt, A, Bmat, Cmat, Dskip, dtBias, checkpoints, d) {
      const { B, T, H, P, N, G } = d;
      if (B * H <= 0) return;
      const [scratch, stride] = rt.scratch(rt.exports.ssdBackwardScratchFloats(P, N, d.chunk) * 4);
      const nth = Math.min(rt.threadsFor(4 * B * T * H * P * N, MIXER_GRAIN.exp), B * H);
      const shared = G !== H; // heads of a group add their dB, dC rows afterwards
      const rows = B * T * H * N;
      rt.withTemp(B * H * 3 * 4, (partials) => {
        rt.withTemp(shared ? 2 * rows * 4 : 64, (headRows) => {
          rt.call(
            "ssdBackward", nth, p(dx, "dx"), p(ddt, "ddt"), shared ? headRows : p(dB, "dB"), shared ? headRows + rows * 4 : p(dC, "dC"),
            p(dstateIn, "dstateIn"), partials, p(dy, "dy"), p(x, "x"), p(dt, "dt"), p(A, "A"), p(Bmat, "Bmat"), p(Cmat, "Cmat"), p(Dskip, "Dskip"),
            p(dtBias, "dtBias"), p(checkpoints, "checkpoints"), ...ssdDimArgs(d), scratch, stride,
          );
          if (shared) {
            const t = Math.min(rt.threadsFor(rows, MIXER_GRAIN.memory), B * T * G);
            rt.call("ssdReduceHeads", t, p(dB, "dB"), headRows, B * T, H, G, N);
            rt.call("ssdReduceHeads", t, p(dC, "dC"), headRows + rows * 4, B * T, H, G, N);
          }
        });
        reduceRows(rt, p(dA, "dA"), partials, B, H, 3 * H, 0, false);
        if (dDskip) reduceRows(rt, p(dDskip, "dDskip"), partials, B, H, 3 * H, H, false);
        if (ddtBias) reduceRows(rt, p(ddtBias, "ddtBias"), partials, B, H, 3 * H, 2 * H, false);
      });
    },

    ssdStep(y, state, x, dt, A, Bmat, Cmat, Dskip, dtBias, d) {
      const { B, H, P, N, G } = d;
      if (B * H <= 0) return;
      const nth = Math.min(rt.threadsFor(B * H * P * N, MIXER_GRAIN.memory / 4), B * H);
      rt.call(
        "ssdStep", nth, p(y, "y"), p(state, "state"), p(x, "x"), p(dt, "dt"), p(A, "A"), p(Bmat, "Bmat"), p(Cmat, "Cmat"), p(Dskip, "Dskip"),
        p(dtBias, "dtBias"), B, H, P, N, G, d.dtSoftplus ? 1 : 0, d.dtMin, d.dtMax,
      );
    },
  };
}

function ssdDimArgs(d: SsdDims): number[] {
  return [d.B, d.T, d.H, d.P, d.N, d.G, d.chunk, d.dtSoftplus ? 1 : 0, d.dtMin, d.dtMax];
}

/** The conv backward shared with Gated DeltaNet's conv (which accumulates dw and has no bias or window gradient). */
export function convBackward(
  rt: CpuRuntime, dx: HostArray, dweight: HostArray, dbias: HostArray | null, dstateIn: HostArray | null, dout: HostArray, x: HostArray,
  weight: HostArray, stateIn: HostArray | null, B: number, T: number, D: number, W: number, accumulate: boolean,
): void {
  const p = (h: HostArray | null, what: string) => rt.ptr(h, what);
  if (D <= 0) return;
  if (B <= 0 || T <= 0) {
    // nothing flows back: the gradients are zero (dw keeps its value when accumulating)
    if (!accumulate) dweight.fill(0, 0, D * W);
    dbias?.fill(0, 0, D);
    dstateIn?.fill(0, 0, Math.max(0, B) * (W - 1) * D);
    return;
  }
  const [scratch, stride] = rt.scratch(rt.exports.convScratchFloats(D, W) * 4);
  const nth = Math.min(rt.threadsFor(2 * B * T * D * W, MIXER_GRAIN.memory), Math.ceil(D / 4));
  rt.call(
    "conv1dBackward", nth, p(dx, "dx"), p(dweight, "dweight"), p(dbias, "dbias"), p(dstateIn, "dstateIn"), p(dout, "dout"), p(x, "x"),
    p(weight, "weight"), p(stateIn, "stateIn"), B, T, D, W, accumulate ? 1 : 0, scratch, stride,
  );
}
