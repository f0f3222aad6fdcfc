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
 *   source .device/prologue.sh && python scripts/bench_gpu_torch.py --out torch.json &&
 *     node dist/bench-gpu.mjs --torch torch.json --out bench-gpu.json
 * Flags: --out FILE (JSON: both sides and their ratios when --torch is given), --torch FILE
 * (PyTorch's results from the same card), --quick (small shapes, for a smoke run),
 * --only matmul|attention, --check (compare every kernel timed against the CPU reference on
 * smaller random inputs first), --variants (also time other tile shapes; see VARIANTS).
 */
import * as fs from "node:fs";
import { WebGpuBackend } from "../src/backend/webgpu/index.js";
import type { GpuTensorBuffer } from "../src/backend/webgpu/pool.js";
import { BufferUsage } from "../src/backend/webgpu/device.js";
import type { AttentionDims, MatmulDims } from "../src/backend/kernels.js";
import { refKernels } from "../src/backend/ref/index.js";
import { Rng } from "../src/util/rng.js";
import { chooseMatmulTile, dispatchMatmul, tileBytes, type MatmulTile } from "../src/backend/webgpu/matmul.js";
import { chooseBackwardTiles, chooseForwardTiles, dispatchAttentionBackward, dispatchAttentionForward } from "../src/backend/webgpu/attention.js";
import { forwardBytes, type ForwardTiles } from "../src/backend/webgpu/attention_forward.js";
import { threadsOf } from "../src/backend/webgpu/attention_tiles.js";
import { backwardBytes } from "../src/backend/webgpu/attention_backward.js";
import { VARIANTS, type BackwardTiles } from "./bench-gpu-variants.js";

interface Result {
  name: string;
  shape: string;
  variant?: string;
  ms: number;
  tflops: number;
  iterations: number;
  timing: "timestamp" | "wallclock";
}

interface Check {
  kernel: string;
  variant: string;
  shape: string;
  relErr: number[];
  ok: boolean;
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
  // warm-up: pipelines compiled, buffers touched, and the clocks up from idle (which takes a
  // fraction of a second of load: shorter warm-ups measured the first of a series slow)
  const t0 = performance.now();
  do {
    record();
    await be.sync();
  } while (performance.now() - t0 < 300);
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
  const t1 = performance.now();
  for (let i = 0; i < iterations; i++) record();
  await be.sync();
  return { seconds: (performance.now() - t1) / 1000 / iterations, timing: "wallclock" };
}

/**
 * Load the GPU for a while before the first timing: after the (CPU-bound) checks its clocks
 * have dropped to idle, and a 300 ms warm-up still measured the first kernel of a run 15% slow.
 */
async function warmUp(be: WebGpuBackend, n: number, seconds = 2): Promise<void> {
  const [a, b, out] = [filled(be, n * n, 1), filled(be, n * n, 1), filled(be, n * n, 0)];
  const t0 = performance.now();
  while (performance.now() - t0 < seconds * 1000) {
    be.kernels.matmul(out, a, b, { M: n, N: n, K: n, transA: false, transB: false, accumulate: false });
    await be.sync();
  }
  for (const h of [a, b, out]) be.release(h);
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

// ---------------------------------------------------------------- timing

async function benchMatmul(be: WebGpuBackend, n: number, tile?: [string, MatmulTile]): Promise<Result> {
  const a = patterned(be, n * n, 1);
  const b = patterned(be, n * n, 1);
  const out = filled(be, n * n, 0);
  const d: MatmulDims = { M: n, N: n, K: n, transA: false, transB: false, accumulate: false };
  const iterations = n <= 4096 ? 10 : 3;
  const record = tile ? () => dispatchMatmul(be.ctx, tile[1], out, a, b, d) : () => be.kernels.matmul(out, a, b, d);
  const { seconds, timing } = await timeIt(be, record, iterations);
  for (const h of [a, b, out]) be.release(h);
  return { name: "matmul", shape: `${n}x${n}x${n}`, variant: tile?.[0], ms: seconds * 1e3, tflops: (2 * n ** 3) / seconds / 1e12, iterations, timing };
}

interface AttentionVariant {
  name: string;
  forward?: ForwardTiles;
  backward?: BackwardTiles;
}

async function benchAttention(be: WebGpuBackend, T: number, backward: boolean, variant?: AttentionVariant): Promise<Result> {
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
    if (variant?.forward) dispatchAttentionForward(be.ctx, variant.forward, out, lse, q, k, v, d);
    else be.kernels.attentionForward(out, lse, q, k, v, d);
    if (backward) {
      const [dout, dq, dk, dv] = grads;
      if (variant?.backward) dispatchAttentionBackward(be.ctx, variant.backward, [dq, dk, dv], dout, q, k, v, out, lse, d);
      else be.kernels.attentionBackward(dq, dk, dv, dout, q, k, v, out, lse, d);
    }
  };
  const iterations = T <= 4096 ? 10 : T <= 16384 ? 3 : 1;
  const { seconds, timing } = await timeIt(be, record, iterations);
  for (const h of [q, k, v, out, lse, ...grads]) be.release(h);
  const pairs = (T * (T + 1)) / 2; // visible (query, key) pairs under the causal mask
  const forwardFlops = 4 * pairs * K * H * B;
  const flops = backward ? 3.5 * forwardFlops : forwardFlops;
  const name = backward ? "attention fwd+bwd" : "attention fwd";
  return { name, shape: `B${B} H${H} K${K} T${T} causal`, variant: variant?.name, ms: seconds * 1e3, tflops: flops / seconds / 1e12, iterations, timing };
}

// ---------------------------------------------------------------- correctness

const rng = new Rng(7);

function randn(n: number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = rng.normal();
  return a;
}

function relErr(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < want.length; i++) {
    const e = got[i] - want[i];
    num += e * e;
    den += want[i] * want[i];
  }
  return Number.isFinite(num) ? Math.sqrt(num / Math.max(den, 1e-30)) : Infinity;
}

/** Runs `gpu` on uploaded copies of the inputs (outputs poisoned first) and compares with `ref` on the host. */
async function compare(be: WebGpuBackend, inputs: Float32Array[], outputs: number[], ref: (outs: Float32Array[], ins: Float32Array[]) => void, gpu: (outs: GpuTensorBuffer[], ins: GpuTensorBuffer[]) => void): Promise<number[]> {
  const want = outputs.map((n) => new Float32Array(n));
  ref(want, inputs);
  const ins = inputs.map((a) => be.upload("f32", a));
  const outs = outputs.map((n) => be.upload("f32", new Float32Array(n).fill(Number.NaN)));
  gpu(outs, ins);
  const errs: number[] = [];
  for (let i = 0; i < outs.length; i++) errs.push(relErr((await be.read(outs[i], "f32", outputs[i])) as Float32Array, want[i]));
  for (const h of [...ins, ...outs]) be.release(h);
  return errs;
}

async function checkMatmul(be: WebGpuBackend, name: string, tile: MatmulTile | null, d: MatmulDims): Promise<Check> {
  const { M, N, K } = d;
  const errs = await compare(
    be,
    [randn(M * K), randn(K * N)],
    [M * N],
    ([out], [a, b]) => refKernels.matmul(out, a, b, d),
    ([out], [a, b]) => (tile ? dispatchMatmul(be.ctx, tile, out, a, b, d) : be.kernels.matmul(out, a, b, d)),
  );
  return { kernel: "matmul", variant: name, shape: JSON.stringify(d), relErr: errs, ok: errs.every((e) => e < 1e-5) };
}

async function checkAttention(be: WebGpuBackend, v: AttentionVariant, d: AttentionDims): Promise<Check[]> {
  const nq = d.B * d.T * d.H * d.K;
  const nkv = d.B * d.kvRows * d.G * d.K;
  const nl = d.B * d.H * d.T;
  const q = randn(nq);
  const k = randn(nkv);
  const vv = randn(nkv);
  const dout = randn(nq);
  const checks: Check[] = [];
  const shape = JSON.stringify(d);
  const fwd = await compare(
    be,
    [q, k, vv],
    [nq, nl],
    ([out, lse], [q_, k_, v_]) => refKernels.attentionForward(out, lse, q_, k_, v_, d),
    ([out, lse], [q_, k_, v_]) => (v.forward ? dispatchAttentionForward(be.ctx, v.forward, out, lse, q_, k_, v_, d) : be.kernels.attentionForward(out, lse, q_, k_, v_, d)),
  );
  checks.push({ kernel: "attentionForward", variant: v.name, shape, relErr: fwd, ok: fwd.every((e) => e < 1e-5) });
  const out = new Float32Array(nq);
  const lse = new Float32Array(nl);
  refKernels.attentionForward(out, lse, q, k, vv, d);
  const bwd = await compare(
    be,
    [dout, q, k, vv, out, lse],
    [nq, nkv, nkv],
    ([dq, dk, dv], ins) => refKernels.attentionBackward(dq, dk, dv, ins[0], ins[1], ins[2], ins[3], ins[4], ins[5], d),
    ([dq, dk, dv], ins) =>
      v.backward
        ? dispatchAttentionBackward(be.ctx, v.backward, [dq, dk, dv], ins[0], ins[1], ins[2], ins[3], ins[4], ins[5], d)
        : be.kernels.attentionBackward(dq, dk, dv, ins[0], ins[1], ins[2], ins[3], ins[4], ins[5], d),
  );
  checks.push({ kernel: "attentionBackward", variant: v.name, shape, relErr: bwd, ok: bwd.every((e) => e < 1e-4) });
  return checks;
}

/** Shapes for the checks: ragged, causal with a KV cache, grouped heads, and a full one. */
const MATMUL_CHECKS: MatmulDims[] = [
  { M: 512, N: 512, K: 256, transA: false, transB: false, accumulate: false },
  { M: 300, N: 260, K: 200, transA: false, transB: true, accumulate: false },
  // large enough for the 128-wide tiles: aligned, and ragged with a transposed operand
  { M: 2048, N: 2048, K: 64, transA: false, transB: false, accumulate: false },
  { M: 1100, N: 2000, K: 36, transA: true, transB: false, accumulate: false },
];
const ATTENTION_CHECKS: AttentionDims[] = [
  { B: 1, T: 300, S: 300, H: 2, G: 1, K: 64, scale: 0.125, causal: true, qOffset: 0, kvRows: 300 },
  { B: 2, T: 70, S: 107, H: 4, G: 2, K: 64, scale: 0.125, causal: true, qOffset: 37, kvRows: 110 },
  { B: 1, T: 129, S: 129, H: 2, G: 2, K: 64, scale: 0.125, causal: false, qOffset: 0, kvRows: 129 },
];

// ---------------------------------------------------------------- report

interface TorchResult {
  name: string;
  shape: string;
  ms?: number;
  tflops?: number;
  error?: string;
}

function fmt(r: Result): string {
  return `${r.name.padEnd(18)} ${r.shape.padEnd(24)} ${(r.variant ?? "").padEnd(24)} ${r.ms.toFixed(3).padStart(10)} ms ${r.tflops.toPrecision(3).padStart(7)} TFLOP/s`;
}

async function main(): Promise<void> {
  const quick = flag("quick") !== undefined;
  const only = flag("only");
  const be = await WebGpuBackend.create({ timestamps: true });
  const ctx = be.ctx;
  const limits = { bytes: ctx.limits.maxComputeWorkgroupStorageSize, invocations: ctx.limits.maxComputeInvocationsPerWorkgroup };
  const chosen = {
    matmul: chooseMatmulTile(4096, 4096, 1, limits),
    forward: chooseForwardTiles(64, limits, ctx.acquired.subgroupMinSize),
    backward: { dkv: chooseBackwardTiles("dkv", 64, limits), dq: chooseBackwardTiles("dq", 64, limits) },
  };
  console.log(`# ${be.describe()}; subgroups >= ${ctx.acquired.subgroupMinSize}; tiles ${JSON.stringify(chosen)}`);
  const variants = flag("variants") !== undefined;
  // variants this device can run (all of them on an H100; few on SwiftShader)
  const fits = (bytes: number, threads: number) => bytes <= limits.bytes && threads <= limits.invocations;
  const matmulVariants = Object.entries(VARIANTS.matmul).filter(([, t]) => fits(tileBytes(t), (t.BM / t.TM) * (t.BN / t.TN)));
  const attnVariants: AttentionVariant[] = variants
    ? [
        ...Object.entries(VARIANTS.forward)
          .filter(([, c]) => fits(forwardBytes(c, 64), threadsOf(c)) && (!c.shuffle || c.TX <= ctx.acquired.subgroupMinSize))
          .map(([name, forward]) => ({ name, forward })),
        ...Object.entries(VARIANTS.backward)
          .filter(([, t]) => (["dq", "dkv"] as const).every((k) => fits(backwardBytes(k, t[k], 64), threadsOf(t[k]))))
          .map(([name, backward]) => ({ name, backward })),
      ]
    : [];

  const checks: Check[] = [];
  if (flag("check") !== undefined) {
    const t0 = performance.now();
    if (only !== "attention") {
      for (const d of MATMUL_CHECKS) checks.push(await checkMatmul(be, "default", null, d));
      if (variants) {
        for (const [name, tile] of matmulVariants) {
          try {
            checks.push(await checkMatmul(be, name, tile, MATMUL_CHECKS[0]));
          } catch (e) {
            checks.push({ kernel: "matmul", variant: name, shape: JSON.stringify(MATMUL_CHECKS[0]), relErr: [Infinity], ok: false });
            console.log(`CHECK ERROR ${name}: ${(e as Error).message.split("\n")[0]}`);
          }
        }
      }
    }
    if (only !== "matmul") {
      for (const d of ATTENTION_CHECKS) checks.push(...(await checkAttention(be, { name: "default" }, d)));
      for (const v of attnVariants) {
        for (const d of ATTENTION_CHECKS) {
          try {
            checks.push(...(await checkAttention(be, v, d)));
          } catch (e) {
            checks.push({ kernel: "attention", variant: v.name, shape: JSON.stringify(d), relErr: [Infinity], ok: false });
            console.log(`CHECK ERROR ${v.name}: ${(e as Error).message.split("\n")[0]}`);
          }
        }
      }
    }
    for (const c of checks) if (!c.ok) console.log(`CHECK FAILED ${c.kernel} ${c.variant} ${c.shape}: rel err ${c.relErr.map((e) => e.toExponential(2)).join(" ")}`);
    const worst = (kernel: string) => Math.max(...checks.filter((c) => c.kernel === kernel).flatMap((c) => c.relErr));
    console.log(`# checks: ${checks.filter((c) => c.ok).length}/${checks.length} pass (${((performance.now() - t0) / 1000).toFixed(1)} s); worst rel err matmul ${worst("matmul").toExponential(2)} forward ${worst("attentionForward").toExponential(2)} backward ${worst("attentionBackward").toExponential(2)}`);
  }

  const results: Result[] = [];
  const variantResults: Result[] = [];
  const failures: string[] = [];
  // a variant that fails (a pipeline the driver rejects, say) is reported and skipped
  const attempt = async (what: string, f: () => Promise<Result>) => {
    try {
      const r = await f();
      variantResults.push(r);
      console.log(fmt(r));
    } catch (e) {
      failures.push(`${what}: ${(e as Error).message.split("\n")[0]}`);
      console.log(`VARIANT FAILED ${failures[failures.length - 1]}`);
    }
  };
  await warmUp(be, quick ? 256 : 4096);
  if (variants) {
    console.log("# variants");
    if (only !== "attention") for (const n of quick ? [512] : [4096, 8192]) for (const e of matmulVariants) await attempt(`matmul ${n} ${e[0]}`, () => benchMatmul(be, n, e));
    if (only !== "matmul") {
      for (const T of quick ? [256] : [4096, 16384]) {
        for (const v of attnVariants) await attempt(`attention ${T} ${v.name}`, () => benchAttention(be, T, !!v.backward, v.backward ? { ...v, forward: chosen.forward } : v));
      }
    }
  }

  console.log("# default tiles");
  const report = (r: Result) => {
    results.push(r);
    console.log(fmt(r));
  };
  if (only !== "attention") for (const n of quick ? [256, 512] : [4096, 8192]) report(await benchMatmul(be, n));
  if (only !== "matmul") {
    for (const T of quick ? [128, 256] : [1024, 4096, 16384, 65536]) {
      report(await benchAttention(be, T, false));
      report(await benchAttention(be, T, true));
    }
  }

  const torchFile = flag("torch");
  const torch = torchFile && torchFile !== "true" ? (JSON.parse(fs.readFileSync(torchFile, "utf8")) as { adapter: string; torch: string; results: TorchResult[] }) : null;
  const ratios = results.map((r) => {
    const t = torch?.results.find((x) => x.name === r.name && x.shape === r.shape && x.tflops !== undefined);
    return { name: r.name, shape: r.shape, webgpu: r.tflops, torch: t?.tflops ?? null, ratio: t?.tflops ? r.tflops / t.tflops : null };
  });
  console.log(`# webgpu${torch ? ` vs torch ${torch.torch} on ${torch.adapter}` : ""} (TFLOP/s)`);
  for (const x of ratios) {
    console.log(`${x.name.padEnd(18)} ${x.shape.padEnd(24)} webgpu ${x.webgpu.toFixed(2).padStart(6)}  torch ${x.torch === null ? "   -  " : x.torch.toFixed(2).padStart(6)}  ratio ${x.ratio === null ? "-" : x.ratio.toFixed(2)}`);
  }
  const out = flag("out");
  if (out && out !== "true") {
    const json = { backend: "webgpu", adapter: be.describe(), card: torch?.adapter ?? null, timestamps: ctx.acquired.timestamps, subgroupMinSize: ctx.acquired.subgroupMinSize, tiles: chosen, results, torch, ratios, variants: variantResults, failures, checks };
    fs.writeFileSync(out, JSON.stringify(json, null, 2) + "\n");
    console.log(`# wrote ${out}`);
  }
  be.destroy();
  if (checks.some((c) => !c.ok)) process.exitCode = 1;
}

main().catch((e) => {
  console.error(`bench-gpu: ${(e as Error).message.split("\n")[0]}`);
  process.exitCode = 1;
});
