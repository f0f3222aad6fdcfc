/**
 * GPU benchmark of the webgpu backend's two heavy kernels, for comparison with PyTorch on the
 * same card (scripts/bench_gpu_torch.py runs the same shapes):
 *   matmul 4096^3 and 8192^3 (fp32), and causal attention B=1 H=16 K=64 at T = 1k, 4k, 16k, 64k,
 *   forward and forward+backward.
 * Times come from GPU timestamp queries when the adapter has them, else from the wall clock
 * around queue.onSubmittedWorkDone(). FLOPs: matmul 2MNK; attention forward 4 K H per visible
 * (query, key) pair, backward 2.5x the forward (FlashAttention-2's count).
 *
 * Built into dist/bench-gpu.mjs (npm run build); on a GPU machine:
 *   source .device/prologue.sh && node dist/bench-gpu.mjs --out bench-gpu.json
 * Flags: --out FILE (JSON), --quick (small shapes, for a smoke run), --only matmul|attention
 */
import * as fs from "node:fs";
import { WebGpuBackend } from "../src/backend/webgpu/index.js";
import type { GpuTensorBuffer } from "../src/backend/webgpu/pool.js";
import { BufferUsage } from "../src/backend/webgpu/device.js";
import type { AttentionDims } from "../src/backend/kernels.js";

interface Result {
  name: string;
  shape: string;
  ms: number;
  tflops: number;
  iterations: number;
  timing: "timestamp" | "wallclock";
}

function flag(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return undefined;
  const v = process.argv[i + 1];
  return v && !v.startsWith("--") ? v : "true";
}

/** Seconds per iteration of `record` (which enqueues one iteration), after warm-up. */
async function timeIt(be: WebGpuBackend, record: () => void, iterations: number): Promise<{ seconds: number; timing: Result["timing"] }> {
  const ctx = be.ctx;
  record(); // warm-up: pipelines compiled, buffers touched
  await be.sync();
  if (ctx.acquired.timestamps) {
    const querySet = ctx.device.createQuerySet({ type: "timestamp", count: 2 });
    const resolved = ctx.device.createBuffer({ size: 16, usage: BufferUsage.QUERY_RESOLVE | BufferUsage.COPY_SRC });
    ctx.timestamp(querySet, 0);
    for (let i = 0; i < iterations; i++) record();
    ctx.timestamp(querySet, 1);
    ctx.resolveTimestamps(querySet, 2, resolved);
    const ticks = new BigUint64Array(await ctx.read(resolved, 16));
    querySet.destroy();
    resolved.destroy();
    return { seconds: Number(ticks[1] - ticks[0]) / 1e9 / iterations, timing: "timestamp" };
  }
  const t0 = performance.now();
  for (let i = 0; i < iterations; i++) record();
  await be.sync();
  return { seconds: (performance.now() - t0) / 1000 / iterations, timing: "wallclock" };
}

function filled(be: WebGpuBackend, n: number, value: number): GpuTensorBuffer {
  const h = be.allocate("f32", n);
  be.kernels.fill(h, value, n);
  return h;
}

/** Random-ish data without a host array of the full size: a pattern, scaled. */
function patterned(be: WebGpuBackend, n: number, scale: number): GpuTensorBuffer {
  const period = 4099; // prime, so rows do not repeat in step with powers of two
  const pattern = Float32Array.from({ length: period }, (_, i) => scale * Math.sin(i * 12.9898) * 1.7);
  const small = be.upload("f32", pattern);
  const h = be.allocate("f32", n);
  for (let o = 0; o < n; o += period) be.kernels.copy2d(h, small, 1, Math.min(period, n - o), 0, o, 0, 0, false);
  be.release(small);
  return h;
}

async function benchMatmul(be: WebGpuBackend, n: number): Promise<Result> {
  const a = patterned(be, n * n, 1);
  const b = patterned(be, n * n, 1);
  const out = filled(be, n * n, 0);
  const iterations = n <= 4096 ? 10 : 3;
  const { seconds, timing } = await timeIt(be, () => be.kernels.matmul(out, a, b, { M: n, N: n, K: n, transA: false, transB: false, accumulate: false }), iterations);
  for (const h of [a, b, out]) be.release(h);
  return { name: "matmul", shape: `${n}x${n}x${n}`, ms: seconds * 1e3, tflops: (2 * n ** 3) / seconds / 1e12, iterations, timing };
}

async function benchAttention(be: WebGpuBackend, T: number, backward: boolean): Promise<Result> {
  const B = 1;
  const H = 16;
  const K = 64;
  const d: AttentionDims = { B, T, S: T, H, G: H, K, scale: 1 / Math.sqrt(K), causal: true, qOffset: 0, kvRows: T };
  const n = B * T * H * K;
  const q = patterned(be, n, 1);
  const k = patterned(be, n, 1);
  const v = patterned(be, n, 1);
  const out = filled(be, n, 0);
  const lse = filled(be, B * H * T, 0);
  const grads = backward ? [patterned(be, n, 1), filled(be, n, 0), filled(be, n, 0), filled(be, n, 0)] : [];
  const record = () => {
    be.kernels.attentionForward(out, lse, q, k, v, d);
    if (backward) {
      const [dout, dq, dk, dv] = grads;
      be.kernels.attentionBackward(dq, dk, dv, dout, q, k, v, out, lse, d);
    }
  };
  const iterations = T <= 4096 ? 10 : T <= 16384 ? 3 : 1;
  const { seconds, timing } = await timeIt(be, record, iterations);
  for (const h of [q, k, v, out, lse, ...grads]) be.release(h);
  const pairs = (T * (T + 1)) / 2; // visible (query, key) pairs under the causal mask
  const forwardFlops = 4 * pairs * K * H * B;
  const flops = backward ? 3.5 * forwardFlops : forwardFlops;
  return { name: backward ? "attention fwd+bwd" : "attention fwd", shape: `B${B} H${H} K${K} T${T} causal`, ms: seconds * 1e3, tflops: flops / seconds / 1e12, iterations, timing };
}

async function main(): Promise<void> {
  const quick = flag("quick") !== undefined;
  const only = flag("only");
  const be = await WebGpuBackend.create({ timestamps: true });
  console.log(`# ${be.describe()}`);
  const results: Result[] = [];
  const report = (r: Result) => {
    results.push(r);
    console.log(`${r.name.padEnd(18)} ${r.shape.padEnd(24)} ${r.ms.toFixed(3).padStart(10)} ms ${r.tflops.toPrecision(3).padStart(7)} TFLOP/s  (${r.timing}, ${r.iterations} it)`);
  };
  if (only !== "attention") for (const n of quick ? [256, 512] : [4096, 8192]) report(await benchMatmul(be, n));
  if (only !== "matmul") {
    for (const T of quick ? [128, 256] : [1024, 4096, 16384, 65536]) {
      report(await benchAttention(be, T, false));
      report(await benchAttention(be, T, true));
    }
  }
  const out = flag("out");
  if (out && out !== "true") {
    fs.writeFileSync(out, JSON.stringify({ backend: "webgpu", adapter: be.describe(), timestamps: be.ctx.acquired.timestamps, results }, null, 2) + "\n");
    console.log(`# wrote ${out}`);
  }
  be.destroy();
}

main().catch((e) => {
  console.error(`bench-gpu: ${(e as Error).message.split("\n")[0]}`);
  process.exitCode = 1;
});
