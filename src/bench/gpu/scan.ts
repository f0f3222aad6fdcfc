/**
 * The memory-bound kernels of the GPU benchmark, measured in bytes moved against the card's
 * copy bandwidth from the same run:
 *   - copy: a WGSL kernel copying a 1 GiB buffer (bytes read + bytes written), and WebGPU's
 *     copyBufferToBuffer for comparison;
 *   - the Mamba selective scan D=1536 N=16 B=1 (Dskip, z gate, dt bias, softplus: the model's
 *     call), forward with the checkpoints training saves and forward+backward. Bytes counted
 *     are the minimum: every input read once, every output (and checkpoint) written once;
 *   - the M = 1 matrix-vector product of decoding (weights read once).
 */
import type { WebGpuBackend } from "../../backend/webgpu/index.js";
import type { GpuTensorBuffer } from "../../backend/webgpu/pool.js";
import type { SelectiveScanDims } from "../../backend/kernels_scan.js";
import { refKernels } from "../../backend/ref/index.js";
import { grid1d } from "../../backend/webgpu/context.js";
import { ScanCore, scanPlanName, type ScanPlan, type ScanShape } from "../../backend/webgpu/scan_core.js";
import { compare, filled, patterned, randn, timeIt, uniform, type Check, type Result } from "./timing.js";
import { profileDispatches, slowest } from "./profile.js";

const GB = 1e9;

/** Bytes read + written per second by a vec4 copy kernel of `vecsPerThread` vec4s a thread, and by copyBufferToBuffer. */
export async function benchCopy(be: WebGpuBackend, floats: number): Promise<Result[]> {
  const src = patterned(be, floats, 1);
  const dst = filled(be, floats, 0);
  const n4 = floats / 4;
  const bytes = 2 * floats * 4;
  const out: Result[] = [];
  for (const per of [1, 4]) {
    const WG = 256;
    const p = be.ctx.pipeline(`bench:copy:${per}`, () => ({
      label: "bench:copy",
      uniforms: [["n4", "u32"]],
      bindings: [["dst", "write", "array<vec4<f32>>"], ["src", "read", "array<vec4<f32>>"]],
      body: `
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  // each workgroup copies ${per} consecutive blocks of ${WG} vec4s (coalesced)
  let base = (wid.y * nwg.x + wid.x) * ${WG * per}u + lid;
  ${[...Array(per).keys()].map((i) => `let v${i} = select(vec4<f32>(0.0), src[base + ${i * WG}u], base + ${i * WG}u < u.n4);`).join("\n  ")}
  ${[...Array(per).keys()].map((i) => `if (base + ${i * WG}u < u.n4) { dst[base + ${i * WG}u] = v${i}; }`).join("\n  ")}
}`,
    }));
    const grid = grid1d(Math.ceil(n4 / per), WG);
    const { seconds, timing } = await timeIt(be, () => be.ctx.dispatch(p, [dst, src], [n4], grid), 20);
    out.push({ section: "copy", name: "copy", shape: `${(floats * 4) / 2 ** 30} GiB`, variant: `wgsl vec4 x${per}`, ms: seconds * 1e3, rate: bytes / seconds / GB, unit: "GB/s", iterations: 20, timing });
  }
  const { seconds, timing } = await timeIt(be, () => be.ctx.copy(src.buffer, 0, dst.buffer, 0, floats * 4), 20);
  out.push({ section: "copy", name: "copy", shape: `${(floats * 4) / 2 ** 30} GiB`, variant: "copyBufferToBuffer", ms: seconds * 1e3, rate: bytes / seconds / GB, unit: "GB/s", iterations: 20, timing });
  be.release(src);
  be.release(dst);
  return out;
}

/** Minimum bytes of the selective scan forward (with checkpoints) and backward, Dskip, z and dt bias present. */
export function scanBytes(d: SelectiveScanDims): { forward: number; backward: number } {
  const { B, T, D, N } = d;
  const K = Math.ceil(T / d.chunk);
  const BTD = B * T * D;
  const BTN = B * T * N;
  const ckpt = B * K * D * N;
  // reads u dt z B C A Dskip dtBias; writes out, checkpoints
  const forward = 4 * (3 * BTD + 2 * BTN + D * N + 2 * D + BTD + ckpt);
  // reads dout u dt z B C A Dskip dtBias checkpoints; writes du ddt dz dB dC dA dDskip ddtBias
  const backward = 4 * (4 * BTD + 2 * BTN + D * N + 2 * D + ckpt + 3 * BTD + 2 * BTN + D * N + 2 * D);
  return { forward, backward };
}

interface ScanBuffers {
  ins: GpuTensorBuffer[];
  outs: GpuTensorBuffer[];
  grads: GpuTensorBuffer[];
}

function scanShape(d: SelectiveScanDims): ScanShape {
  return { B: d.B, T: d.T, Dc: d.D, N: d.N, chunk: d.chunk, R: 1, G: 1, aPerState: true, softplus: d.deltaSoftplus, clamp: false, dtMin: 0, dtMax: 0 };
}

export type ScanVariant = { name: string; plan: ScanPlan };

/**
 * The forward (training: checkpoints written) and, with `backward`, the backward after it.
 * `variant` picks another forward (a tile plan, or the earlier three-pass kernel); `batch` rows
 * (1 by default, the issue's shape; more for a training batch).
 */
export async function benchScan(be: WebGpuBackend, T: number, backward: boolean, variant?: ScanVariant, copyGBs?: number, batch = 1): Promise<Result> {
  const d: SelectiveScanDims = { B: batch, T, D: 1536, N: 16, chunk: 64, deltaSoftplus: true };
  const { B, D, N } = d;
  const K = Math.ceil(T / d.chunk);
  const A = be.upload("f32", Float32Array.from({ length: D * N }, (_, i) => -((i % N) + 1) * (0.5 + ((i * 0.618) % 1))));
  const b: ScanBuffers = {
    // u, dt (before softplus: about -4.6 +- 1.7, steps of 0.001 to 0.05), B, C, Dskip, z, dtBias
    ins: [patterned(be, B * T * D, 1), patterned(be, B * T * D, 1, -4), A, patterned(be, B * T * N, 1), patterned(be, B * T * N, 0.7), patterned(be, D, 1), patterned(be, B * T * D, 1), patterned(be, D, 0.3, -0.5)],
    outs: [filled(be, B * T * D, 0), filled(be, B * K * D * N, 0)],
    grads: backward ? [patterned(be, B * T * D, 1), ...[B * T * D, B * T * D, D * N, B * T * N, B * T * N, D, B * T * D, D].map((n) => filled(be, n, 0))] : [],
  };
  const [u, dt, , Bm, Cm, Dskip, z, dtBias] = b.ins;
  const [out, ckpt] = b.outs;
  const core = new ScanCore(be.ctx);
  const inputs = { u, dt, A, Bmat: Bm, Cmat: Cm, Dskip, z, dtBias };
  const record = () => {
    if (variant) core.forward(out, null, ckpt, inputs, null, scanShape(d), "sscan", variant.plan);
    else be.kernels.selectiveScanForward(out, null, ckpt, u, dt, A, Bm, Cm, Dskip, z, dtBias, null, d);
    if (backward) {
      const [dout, du, ddt, dA, dB, dC, dD, dz, dbias] = b.grads;
      be.kernels.selectiveScanBackward(du, ddt, dA, dB, dC, dD, dz, dbias, null, dout, u, dt, A, Bm, Cm, Dskip, z, dtBias, ckpt, d);
    }
  };
  const iterations = batch * T <= 4096 ? 20 : batch * T <= 16384 ? 5 : 2;
  const { seconds, timing } = await timeIt(be, record, iterations);
  // where a forward+backward's time goes, kernel by kernel (one more run, a timestamp a dispatch)
  const kernels = backward && be.ctx.acquired.timestamps ? slowest(await profileDispatches(be, record), 6) : null;
  for (const h of [...b.ins, ...b.outs, ...b.grads]) be.release(h);
  const bytes = scanBytes(d);
  const moved = bytes.forward + (backward ? bytes.backward : 0);
  const rate = moved / seconds / GB;
  const extra: Record<string, number | string> = { "min MB": moved / 1e6 };
  if (copyGBs) extra["of copy"] = rate / copyGBs;
  if (kernels) extra.kernels = kernels;
  return {
    section: "scan",
    name: backward ? "scan fwd+bwd" : "scan fwd",
    shape: `B${B} D${D} N${N} T${T}`,
    // without a variant: the plan the backend chose for this shape (ScanCore.planFor)
    variant: variant?.name ?? `default: ${scanPlanName(core.planFor(scanShape(d)))}`,
    ms: seconds * 1e3,
    rate,
    unit: "GB/s",
    iterations,
    timing,
    extra,
  };
}

/** out (N) = b (N, K) a (K): a decoding matvec, bytes = the weights and the vectors. */
export async function benchMatvec(be: WebGpuBackend, N: number, K: number, copyGBs?: number): Promise<Result> {
  const a = patterned(be, K, 1);
  const w = patterned(be, N * K, 0.05);
  const out = filled(be, N, 0);
  const d = { M: 1, N, K, transA: false, transB: true, accumulate: false };
  const { seconds, timing } = await timeIt(be, () => be.kernels.matmul(out, a, w, d), 50);
  for (const h of [a, w, out]) be.release(h);
  const rate = (4 * (N * K + N + K)) / seconds / GB;
  return { section: "matvec", name: "matvec", shape: `N${N} K${K}`, ms: seconds * 1e3, rate, unit: "GB/s", iterations: 50, timing, extra: copyGBs ? { "of copy": rate / copyGBs } : undefined };
}

/** The scan forward (each variant) and backward against the CPU reference, every option on. */
export async function checkScan(be: WebGpuBackend, variants: ScanVariant[]): Promise<Check[]> {
  const checks: Check[] = [];
  for (const [T, D, N, chunk] of [[700, 64, 16, 64], [333, 40, 16, 64], [130, 24, 7, 9]]) {
    const d: SelectiveScanDims = { B: 2, T, D, N, chunk, deltaSoftplus: true };
    const { B } = d;
    const K = Math.ceil(T / chunk);
    const ins = [randn(B * T * D), randn(B * T * D, 0.7), uniform(D * N, -2, -0.1), randn(B * T * N), randn(B * T * N), randn(D), randn(B * T * D), uniform(D, 0.5, 1.5), randn(B * D * N)];
    const shape = JSON.stringify(d);
    for (const v of [undefined, ...variants]) {
      const errs = await compare(
        be,
        ins,
        [B * T * D, B * D * N, B * K * D * N],
        ([o, s, c], x) => refKernels.selectiveScanForward(o, s, c, x[0], x[1], x[2], x[3], x[4], x[5], x[6], x[7], x[8], d),
        ([o, s, c], x) => {
          const inputs = { u: x[0], dt: x[1], A: x[2], Bmat: x[3], Cmat: x[4], Dskip: x[5], z: x[6], dtBias: x[7] };
          if (v) new ScanCore(be.ctx).forward(o, s, c, inputs, x[8], scanShape(d), "sscan", v.plan);
          else be.kernels.selectiveScanForward(o, s, c, x[0], x[1], x[2], x[3], x[4], x[5], x[6], x[7], x[8], d);
        },
      );
      checks.push({ kernel: "selectiveScanForward", variant: v?.name ?? "default", shape, relErr: errs, ok: errs.every((e) => e < 2e-5) });
    }
    const out = new Float32Array(B * T * D);
    const ckpt = new Float32Array(B * K * D * N);
    refKernels.selectiveScanForward(out, null, ckpt, ins[0], ins[1], ins[2], ins[3], ins[4], ins[5], ins[6], ins[7], ins[8], d);
    const bwd = await compare(
      be,
      [randn(B * T * D), ...ins, ckpt],
      [B * T * D, B * T * D, D * N, B * T * N, B * T * N, D, B * T * D, D, B * D * N],
      (g, x) => refKernels.selectiveScanBackward(g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7], g[8], x[0], x[1], x[2], x[3], x[4], x[5], x[6], x[7], x[8], x[10], d),
      (g, x) => be.kernels.selectiveScanBackward(g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7], g[8], x[0], x[1], x[2], x[3], x[4], x[5], x[6], x[7], x[8], x[10], d),
    );
    checks.push({ kernel: "selectiveScanBackward", variant: "default", shape, relErr: bwd, ok: bwd.every((e) => e < 1e-4) });
  }
  return checks;
}

/** Decoding's matvec against the reference (the vec4 rows kernel and the others). */
export async function checkMatvec(be: WebGpuBackend): Promise<Check[]> {
  const checks: Check[] = [];
  for (const [N, K, transB] of [[50280, 768, true], [1000, 772, true], [300, 129, true], [257, 96, false]] as [number, number, boolean][]) {
    const d = { M: 1, N, K, transA: false, transB, accumulate: false };
    const errs = await compare(
      be,
      [randn(K), randn(N * K)],
      [N],
      ([o], [a, w]) => refKernels.matmul(o, a, w, d),
      ([o], [a, w]) => be.kernels.matmul(o, a, w, d),
    );
    checks.push({ kernel: "matvec", variant: "default", shape: JSON.stringify(d), relErr: errs, ok: errs.every((e) => e < 1e-5) });
  }
  return checks;
}
