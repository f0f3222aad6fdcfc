/**
 * The mixer families of the cpu backend's kernel table: state-space scans, RWKV, mixture of
 * experts, Gated DeltaNet and the optimizer kernels, each in its own file next to this one.
 */
import type { ScanKernels } from "../kernels_scan.js";
import type { TrainKernels } from "../kernels_train.js";
import type { RwkvKernels } from "../kernels_rwkv.js";
import type { MoeKernels } from "../kernels_moe.js";
import type { DeltaNetKernels } from "../kernels_deltanet.js";
import type { CoreKernels } from "../kernels.js";
import type { HostArray } from "../../tensor/dtype.js";
import type { CpuRuntime } from "./runtime.js";
import { cpuScanKernels } from "./mixers_scan.js";
import { cpuTrainKernels } from "./mixers_train.js";
import { cpuRwkvKernels } from "./mixers_rwkv.js";
import { cpuMoeKernels } from "./mixers_moe.js";
import { cpuDeltaNetKernels } from "./mixers_deltanet.js";

export type MixerKernels<S> = ScanKernels<S> & RwkvKernels<S> & MoeKernels<S> & DeltaNetKernels<S> & TrainKernels<S>;

/** `core` supplies the matmul the expert products run on. */
export function cpuMixerKernels(rt: CpuRuntime, core: CoreKernels<HostArray>): MixerKernels<HostArray> {
  const scan = cpuScanKernels(rt);
  return { ...scan, ...cpuRwkvKernels(rt), ...cpuMoeKernels(rt, core), ...cpuDeltaNetKernels(rt, scan), ...cpuTrainKernels(rt) };
}
