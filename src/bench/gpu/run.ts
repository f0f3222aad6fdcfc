/**
 * The GPU benchmark (`seqlab bench gpu`, dist/bench-gpu.mjs): webgpu kernels and decoding on
 * this machine's GPU, joined with PyTorch's numbers from the same card
 * (scripts/bench_gpu_torch.py writes them) into one JSON with the ratios.
 *
 * Sections: copy (the bandwidth ceiling, measured first), scan, matvec, decode, train (the decode
 * models' training step: train.ts), profile (the decode models' prefill forward, per kernel:
 * profile.ts), matmul, attention. --check compares
 * every kernel timed against the CPU reference on random inputs first; --variants also times the
 * candidate tiles of variants.ts and the scan plans below.
 */
import { WebGpuBackend } from "../../backend/webgpu/index.js";
import { chooseMatmulPlan, tileBytes } from "../../backend/webgpu/matmul.js";
import { chooseSplits } from "../../backend/webgpu/matmul_splitk.js";
import { chooseBackwardTiles, chooseForwardTiles, chooseMmaTiles } from "../../backend/webgpu/attention.js";
import { mmaName, mmaTilesFor, type MmaTiles } from "../../backend/webgpu/attention_mma.js";
import { chooseMatmulMma, matmulMmaGeometry, matmulMmaName, type MatmulMmaTiles } from "../../backend/webgpu/matmul_mma.js";
import { forwardBytes, forwardName } from "../../backend/webgpu/attention_forward.js";
import { threadsOf } from "../../backend/webgpu/attention_tiles.js";
import { backwardBytes } from "../../backend/webgpu/attention_backward.js";
import { ScanCore, scanPlanName } from "../../backend/webgpu/scan_core.js";
import { scanForwardBytes } from "../../backend/webgpu/scan_forward.js";
import { scanBlockBytes, type ScanBlockPlan } from "../../backend/webgpu/scan_block.js";
import type { ScanChunksPlan } from "../../backend/webgpu/scan_chunks.js";
import type { ScanLookbackPlan } from "../../backend/webgpu/scan_lookback.js";
import { scanSpecializedSize, type ScanSpecializedPlan } from "../../backend/webgpu/scan_specialized.js";
import { VARIANTS } from "./variants.js";
import { fmt, warmUp, type Check, type Result } from "./timing.js";
import { ATTENTION_CHECKS, LINEAR_SHAPES, MATMUL_CHECKS, benchAttention, benchMatmul, checkAttention, checkMatmul, matmulShapeName, square, type AttentionVariant } from "./dense.js";
import { benchCopy, benchMatvec, benchScan, checkMatvec, checkScan, type ScanVariant } from "./scan.js";
import { benchDecode, DECODE_MODELS, QUICK_MODELS } from "./decode.js";
import { benchMatmulHalf, checkMatmulHalf } from "./half.js";
import { benchProfile } from "./profile.js";
import { benchTrain, lossAgreement, QUICK_TRAIN_SHAPE, TRAIN_SHAPE } from "./train.js";
import { buildModel } from "../../models/registry.js";
import { RawConfig } from "../../io/config.js";
import { ModuleContext } from "../../nn/module.js";

export const SECTIONS = ["copy", "scan", "matvec", "decode", "train", "profile", "matmul", "attention"] as const;
export type Section = (typeof SECTIONS)[number];

export interface GpuBenchOptions {
  quick: boolean;
  sections: Section[];
  check: boolean;
  variants: boolean;
  /** --variants NAME,...: only the scan plans and attention tiles whose name contains one of these (all when absent) */
  variantNames?: string[];
  /** PyTorch's JSON from the same card */
  torch: TorchFile | null;
  /** decode: load the models from DIR/NAME (scripts/bench_gpu_torch.py --decode-dir writes them) */
  modelDir?: string;
  log: (line: string) => void;
}

export interface TorchResult {
  section?: string;
  name: string;
  shape: string;
  ms?: number;
  rate?: number;
  unit?: string;
  error?: string;
  [k: string]: unknown;
}

export interface TorchFile {
  adapter: string;
  torch: string;
  results: TorchResult[];
}

/**
 * Scan forward plans timed with --variants: the one-subgroup-per-channel kernel's default (the
 * kernel before the block one), block tiles around the default, scan_chunks.ts's chunks,
 * scan_lookback.ts's and scan_specialized.ts's; `names` keeps those whose name contains one of them.
 */
function scanVariants(be: WebGpuBackend, names?: string[]): ScanVariant[] {
  const l = be.ctx.limits;
  const sg = be.ctx.acquired.subgroupMinSize;
  const L = sg >= 2 ? Math.min(32, sg) : 1;
  const lanes = [{ L, I: 8, DB: 4, NS: 16 }].filter((p) => p.L * p.DB <= l.maxComputeInvocationsPerWorkgroup && scanForwardBytes(p, 16) <= l.maxComputeWorkgroupStorageSize);
  const lb = (n: number) => (sg >= 2 ? Math.min(n, sg) : 1);
  const blocks: ScanBlockPlan[] = [
    { kind: "block" as const, L: lb(8), I: 2, DB: 4, W: 8, Q: 1 },
    { kind: "block" as const, L: lb(8), I: 2, DB: 4, W: 8, Q: 2 },
    { kind: "block" as const, L: lb(8), I: 2, DB: 4, W: 8, Q: 4 },
    { kind: "block" as const, L: lb(8), I: 1, DB: 4, W: 8, Q: 4 },
    { kind: "block" as const, L: lb(8), I: 4, DB: 4, W: 8, Q: 1 },
    { kind: "block" as const, L: lb(8), I: 4, DB: 4, W: 8, Q: 2 },
    { kind: "block" as const, L: lb(8), I: 2, DB: 4, W: 16, Q: 1 },
    { kind: "block" as const, L: lb(8), I: 2, DB: 4, W: 16, Q: 2 },
    { kind: "block" as const, L: lb(8), I: 1, DB: 4, W: 16, Q: 4 },
    { kind: "block" as const, L: lb(16), I: 2, DB: 2, W: 8, Q: 2 },
    { kind: "block" as const, L: lb(4), I: 4, DB: 8, W: 8, Q: 2 },
    // a subgroup a channel, one group along time (W 1), several channels sharing the staged B/C
    // rows: the shape of scripts/scan_peer.cu's fastest kernel below 64k steps ("staged C12 I8 G2")
    ...[1, 2, 4].map((Q) => ({ kind: "block" as const, L: lb(32), I: 8, DB: 12, W: 1, Q })),
    { kind: "block" as const, L: lb(32), I: 8, DB: 8, W: 1, Q: 2 },
    { kind: "block" as const, L: lb(32), I: 4, DB: 12, W: 1, Q: 2 },
    { kind: "block" as const, L: lb(32), I: 8, DB: 4, W: 1, Q: 2 },
  ].filter((p) => p.L * p.DB * p.W <= l.maxComputeInvocationsPerWorkgroup && scanBlockBytes(p, 16) <= l.maxComputeWorkgroupStorageSize);
  // scan_chunks.ts: the three-kernel form of scan_lookback.ts (the default from 2k steps before it)
  const chunks: ScanChunksPlan[] = [
    { kind: "chunks", CH: 64, WD: 64 },
    { kind: "chunks", CH: 128, WD: 64 },
    { kind: "chunks", CH: 256, WD: 128 },
  ];
  // scan_lookback.ts: chunk lengths, steps a loop iteration (U: the prefetch distance), walk 1's exp2 partly as a polynomial (PX)
  const lookback: ScanLookbackPlan[] = [
    // the defaults (ScanCore.planFor) and their neighbours
    ...[32, 64, 128].map((CH) => ({ kind: "lookback" as const, CH, WD: 64, U: 4 })),
    { kind: "lookback", CH: 64, WD: 32, U: 4 },
    { kind: "lookback", CH: 64, WD: 64, U: 1 },
    { kind: "lookback", CH: 128, WD: 128, U: 8 },
    ...[4, 8].map((U) => ({ kind: "lookback" as const, CH: 256, WD: 128, U })),
    { kind: "lookback", CH: 256, WD: 64, U: 8 },
    // walk 1's exp2 partly (one state quad in four) as a polynomial on the FMA pipes
    { kind: "lookback", CH: 128, WD: 64, U: 4, PX: 1 },
  ];
  // scan_specialized.ts: walkers and stagers; channels a workgroup, states a walker, steps a tile, stagers
  const ws = (CW: number, S: 1 | 2 | 4, TT: number, SW: number, PF = 0): ScanSpecializedPlan => ({ kind: "specialized", CW, S, TT, SW, PF });
  const specialized = [
    ws(8, 4, 32, 128, 1), ws(8, 4, 32, 128, 2), ws(8, 4, 32, 128, 3), ws(8, 4, 32, 64, 2), ws(4, 2, 32, 128, 2), ws(8, 2, 32, 128, 2),
    // fewer states a walker: more walker warps at B = 1 (one exp2 unit a quadrant, see gpu-tuning.md)
    ws(8, 2, 32, 128, 1), ws(4, 2, 32, 128, 1), ws(8, 1, 32, 128, 1), ws(4, 1, 32, 128, 1), ws(16, 1, 16, 128, 1), ws(8, 1, 16, 128, 1),
    { ...ws(8, 4, 32, 128, 2), X: "walk" as const }, { ...ws(8, 4, 32, 128, 2), X: "stage" as const },
  ].filter((p) => {
    const z = scanSpecializedSize(p, 16);
    return z.threads <= l.maxComputeInvocationsPerWorkgroup && z.bytes <= l.maxComputeWorkgroupStorageSize;
  });
  const all = [...lanes, ...blocks, ...chunks, ...lookback, ...specialized].map((plan) => ({ name: scanPlanName(plan), plan }));
  return names ? all.filter((v) => names.some((n) => v.name.includes(n))) : all;
}

export async function runGpuBench(o: GpuBenchOptions): Promise<Record<string, unknown>> {
  const { quick, log } = o;
  const has = (s: Section) => o.sections.includes(s);
  const be = await WebGpuBackend.create({ timestamps: true });
  try {
    const ctx = be.ctx;
    const limits = { bytes: ctx.limits.maxComputeWorkgroupStorageSize, invocations: ctx.limits.maxComputeInvocationsPerWorkgroup };
    const matmulMma4096 = chooseMatmulMma(ctx.acquired.tensorCores, { ...square(4096), accumulate: false }, limits.bytes);
    const chosen = {
      matmul: matmulMma4096 ? matmulMmaName(matmulMma4096) : chooseMatmulPlan(4096, 4096, 4096, 1, limits).tile,
      forward: Object.fromEntries(
        [1024, 4096, 16384, 65536].map((T) => {
          const mma = chooseMmaTiles(64, ctx.acquired.tensorCores, T, limits.bytes);
          return [T, mma ? mmaName(mma) : forwardName(chooseForwardTiles(64, limits, ctx.acquired.subgroupMinSize, T))];
        }),
      ),
      backward: Object.fromEntries(
        [1024, 4096, 16384, 65536].map((T) => [T, { dkv: chooseBackwardTiles("dkv", 64, limits, ctx.acquired.subgroupMinSize, T), dq: chooseBackwardTiles("dq", 64, limits, ctx.acquired.subgroupMinSize, T) }]),
      ),
      scanForward: new ScanCore(ctx).forwardPlan(16),
      scanBlock: new ScanCore(ctx).blockPlan(16),
    };
    log(`# ${be.describe()}; subgroups >= ${ctx.acquired.subgroupMinSize}; tiles ${JSON.stringify(chosen)}`);
    const fits = (bytes: number, threads: number) => bytes <= limits.bytes && threads <= limits.invocations;
    const matmulVariants = Object.entries(VARIANTS.matmul).filter(([, t]) => fits(tileBytes(t), (t.BM / t.TM) * (t.BN / t.TN)));
    // the tensor-core matmul (checked wherever the adapter has tensor cores, timed with --variants)
    const matmulMmaVariants: MatmulMmaTiles[] = ctx.acquired.tensorCores
      ? (
          [
            { RG: 4, CG: 2, SI: 2, SJ: 4, fold: 16, CS: 16 },
            { RG: 4, CG: 2, SI: 2, SJ: 4, fold: 32, CS: 16 },
            { RG: 2, CG: 4, SI: 4, SJ: 2, fold: 16, CS: 16 },
            { RG: 4, CG: 2, SI: 2, SJ: 2, fold: 16 },
          ] as MatmulMmaTiles[]
        ).filter((c) => matmulMmaGeometry(c).bytes <= limits.bytes && (!o.variantNames || o.variantNames.some((n) => matmulMmaName(c).includes(n))))
      : [];
    // the tensor-core forward's tiles, and the same with other fold intervals and query chunks
    const mmaDefault = ctx.acquired.tensorCores ? mmaTilesFor(64, limits.bytes, 16384) : null;
    const mmaVariants: MmaTiles[] = mmaDefault ? [...[8, 16, 32].map((fold) => ({ ...mmaDefault, fold })), ...[0, 32, 128].map((QC) => ({ ...mmaDefault, QC }))] : [];
    const attnVariants: AttentionVariant[] = o.variants
      ? [
          ...Object.entries(VARIANTS.forward)
            .filter(([, c]) => fits(forwardBytes(c, 64), threadsOf(c)) && (!c.shuffle || c.TX <= ctx.acquired.subgroupMinSize))
            .map(([name, forward]) => ({ name, forward })),
          ...mmaVariants.map((mma) => ({ name: mmaName(mma), mma })),
          ...Object.entries(VARIANTS.backward)
            .filter(([, t]) => (["dq", "dkv"] as const).every((k) => fits(backwardBytes(k, t[k], 64), threadsOf(t[k]))))
            .map(([name, backward]) => ({ name, backward })),
        ].filter((v) => !o.variantNames || o.variantNames.some((n) => v.name.includes(n)))
      : [];
    const scanVars = o.variants ? scanVariants(be, o.variantNames) : [];

    const checks: Check[] = [];
    if (o.check) {
      const t0 = performance.now();
      // (ablations that skip part of the work are timed, not checked)
      if (has("scan")) checks.push(...(await checkScan(be, scanVars.filter((v) => !("X" in v.plan && v.plan.X)))));
      if (has("matvec") || has("decode")) checks.push(...(await checkMatvec(be)));
      if (has("matmul")) {
        for (const d of MATMUL_CHECKS) checks.push(await checkMatmul(be, "default", null, d));
        if (o.variants) for (const [name, tile] of matmulVariants) for (const d of [MATMUL_CHECKS[0], MATMUL_CHECKS[1]]) checks.push(await checkMatmul(be, name, tile, d));
        for (const mma of matmulMmaVariants) for (const d of MATMUL_CHECKS) checks.push(await checkMatmul(be, matmulMmaName(mma), null, d, mma));
        // half-precision weights on the default path: the tensor cores' tile (if any) and the half-weight kernel
        for (const dtype of ["f16", "bf16"] as const) {
          for (const d of [MATMUL_CHECKS[1], { M: 2048, N: 1024, K: 200, transA: false, transB: true, accumulate: false }]) checks.push(await checkMatmulHalf(be, d, dtype));
        }
      }
      if (has("attention") || has("decode")) {
        for (const d of ATTENTION_CHECKS) checks.push(...(await checkAttention(be, { name: "default" }, d)));
        // the default routes only long sequences to tensor cores: check them on every shape, and
        // with one query block a chunk (several chunks a batch row even on the small shapes)
        if (mmaDefault && !o.variants) {
          for (const mma of [mmaDefault, { ...mmaDefault, QC: 1 }]) for (const d of ATTENTION_CHECKS) checks.push(...(await checkAttention(be, { name: mmaName(mma), mma }, d)));
        }
        for (const v of attnVariants) for (const d of ATTENTION_CHECKS) checks.push(...(await checkAttention(be, v, d)));
      }
      for (const c of checks) if (!c.ok) log(`CHECK FAILED ${c.kernel} ${c.variant} ${c.shape}: rel err ${c.relErr.map((e) => e.toExponential(2)).join(" ")}`);
      const kernels = [...new Set(checks.map((c) => c.kernel))];
      const worst = kernels.map((k) => `${k} ${Math.max(...checks.filter((c) => c.kernel === k).flatMap((c) => c.relErr)).toExponential(2)}`);
      log(`# checks: ${checks.filter((c) => c.ok).length}/${checks.length} pass (${((performance.now() - t0) / 1000).toFixed(1)} s); worst rel err: ${worst.join(", ")}`);
    }

    const results: Result[] = [];
    const variantResults: Result[] = [];
    const failures: string[] = [];
    const report = (r: Result, into = results) => {
      into.push(r);
      log(fmt(r));
    };
    // a variant that fails (a pipeline the driver rejects, say) is reported and skipped
    const attempt = async (what: string, f: () => Promise<Result>) => {
      try {
        report(await f(), variantResults);
      } catch (e) {
        failures.push(`${what}: ${(e as Error).message.split("\n")[0]}`);
        log(`VARIANT FAILED ${failures[failures.length - 1]}`);
      }
    };
    await warmUp(be, quick ? 256 : 4096);

    let copyGBs: number | undefined;
    if (has("copy") || has("scan") || has("matvec")) {
      for (const r of await benchCopy(be, quick ? 2 ** 20 : 2 ** 28)) report(r);
      copyGBs = Math.max(...results.filter((r) => r.section === "copy" && r.variant?.startsWith("wgsl")).map((r) => r.rate));
      log(`# copy bandwidth (best WGSL copy): ${copyGBs.toFixed(0)} GB/s`);
    }
    const scanTs = quick ? [256, 1024] : [1024, 4096, 16384, 65536];
    if (has("scan")) {
      if (o.variants) for (const T of quick ? [1024] : [1024, 4096, 16384, 65536]) for (const v of scanVars) await attempt(`scan ${T} ${v.name}`, () => benchScan(be, T, false, v, copyGBs));
      // a training batch (B = 8, T = 4096): B x D x N chains, where one walk per state has the parallelism B = 1 lacks
      if (o.variants && !quick) for (const v of [undefined, ...scanVars]) await attempt(`scan B8 ${v?.name ?? "default"}`, () => benchScan(be, 4096, false, v, copyGBs, 8));
      for (const T of scanTs) {
        report(await benchScan(be, T, false, undefined, copyGBs));
        report(await benchScan(be, T, true, undefined, copyGBs));
      }
    }
    if (has("matvec")) {
      const shapes = quick ? [[1000, 64]] : [[50280, 768], [3072, 768], [768, 1536], [2048, 768], [768, 2048]];
      for (const [N, K] of shapes) report(await benchMatvec(be, N, K, copyGBs));
    }
    if (has("decode")) {
      const decode = await benchDecode(be, {
        contexts: quick ? [16, 100] : [16, 2048, 16384],
        newTokens: quick ? 4 : 64,
        piece: quick ? 64 : 2048,
        models: quick ? QUICK_MODELS : DECODE_MODELS,
        modelDir: o.modelDir,
        copyGBs,
        log,
      });
      for (const r of decode) report(r);
    }
    if (has("train")) {
      const train = await benchTrain(be, { shape: quick ? QUICK_TRAIN_SHAPE : TRAIN_SHAPE, models: quick ? QUICK_MODELS : DECODE_MODELS, modelDir: o.modelDir, log });
      for (const r of train) report(r);
    }
    if (has("profile")) {
      const configs = quick ? QUICK_MODELS : DECODE_MODELS;
      for (const [name, cfg] of Object.entries(configs)) {
        const model = buildModel(new RawConfig(`bench ${name}`, cfg), ModuleContext.seeded(be, 0));
        for (const r of await benchProfile(be, name, model, quick ? [64] : [2048, 16384], log)) report(r);
        for (const t of model.parameters()) t.dispose();
        be.releaseCached();
      }
    }
    if (has("matmul")) {
      const shapes = quick ? [square(256), square(512), { ...square(512), transB: true }, { ...square(512), transA: true }] : [square(4096), square(8192), ...LINEAR_SHAPES];
      if (o.variants) {
        for (const s of quick ? shapes.slice(1) : shapes) {
          for (const e of matmulVariants.filter(([name]) => !o.variantNames || o.variantNames.some((n) => name.includes(n)))) {
            await attempt(`matmul ${matmulShapeName(s)} ${e[0]}`, () => benchMatmul(be, s, e));
            // and in K slices where split-K would take some
            if (chooseSplits(e[1], s.M, s.N, s.K, 1) > 1) await attempt(`matmul ${matmulShapeName(s)} ${e[0]} split`, () => benchMatmul(be, s, e, "auto"));
          }
          for (const mma of matmulMmaVariants) await attempt(`matmul ${matmulShapeName(s)} ${matmulMmaName(mma)}`, () => benchMatmul(be, s, undefined, 1, mma));
        }
      }
      for (const s of shapes) report(await benchMatmul(be, s));
      // a Linear layer's forward with half-precision weights: the default path against the half-weight tiles
      if (!quick) {
        for (const dtype of ["f16", "bf16"] as const) {
          for (const path of ["default", "half"] as const) report(await benchMatmulHalf(be, LINEAR_SHAPES[2], dtype, path));
        }
      }
    }
    if (has("attention")) {
      if (o.variants) {
        // (8k: where the default moves to tensor cores)
        for (const T of quick ? [256] : [1024, 4096, 8192, 16384, 65536]) {
          for (const v of attnVariants) {
            if (v.backward && (T === 1024 || T === 65536)) continue;
            await attempt(`attention ${T} ${v.name}`, () => benchAttention(be, T, !!v.backward, v));
          }
        }
      }
      for (const T of quick ? [128, 256] : [1024, 4096, 16384, 65536]) {
        report(await benchAttention(be, T, false));
        report(await benchAttention(be, T, true));
      }
    }

    const torch = o.torch;
    const ratios = results.map((r) => {
      const t = torch?.results.find((x) => x.name === r.name && x.shape === r.shape && typeof x.rate === "number");
      return { name: r.name, shape: r.shape, variant: r.variant, unit: r.unit, webgpu: r.rate, torch: t?.rate ?? null, ratio: t?.rate ? r.rate / t.rate : null };
    });
    log(`# webgpu${torch ? ` vs torch ${torch.torch} on ${torch.adapter}` : ""}`);
    for (const x of ratios) {
      log(`${x.name.padEnd(18)} ${x.shape.padEnd(26)} webgpu ${x.webgpu.toPrecision(4).padStart(8)}  torch ${x.torch === null ? "    -   " : x.torch.toPrecision(4).padStart(8)} ${x.unit.padEnd(8)} ratio ${x.ratio === null ? "-" : x.ratio.toFixed(2)}${x.variant ? `  (${x.variant})` : ""}`);
    }
    if (torch) {
      const torchCopy = torch.results.find((x) => x.section === "copy" && typeof x.rate === "number");
      if (torchCopy && copyGBs) log(`# copy bandwidth: webgpu ${copyGBs.toFixed(0)} GB/s, torch ${(torchCopy.rate as number).toFixed(0)} GB/s`);
    }
    const greedy = greedyAgreement(results, torch);
    for (const g of greedy) log(`# greedy tokens ${g.name} ${g.shape}: ${g.same} of ${g.compared} the same as torch's`);
    const losses = lossAgreement(results, torch);
    for (const l of losses) {
      log(`# ${l.name} ${l.shape}: losses of ${l.steps} steps against torch's: first step ${l.first.toExponential(1)} relative difference, largest ${l.worst.toExponential(1)}`);
      if (l.floorSteps) log(`#   noise floor: over the first ${l.floorSteps} steps, webgpu's losses with each batch in halves differ from its own by up to ${l.floor.toExponential(1)} (from torch's: ${l.worstWithinFloor.toExponential(1)})`);
      log(`#   first step's gradient norms of ${l.params} parameters: largest relative difference ${l.worstParamDiff.toExponential(1)} (${l.worstParam ?? "-"})${l.unmatched.length ? `; named on one side only: ${l.unmatched.join(", ")}` : ""}`);
      if (l.fp64) {
        const e = (x: number) => x.toExponential(1);
        const g = l.fp64.grads;
        log(`#   against float64: first loss webgpu ${e(l.fp64.loss.ours)}, torch ${e(l.fp64.loss.torch)}; gradient norms median / largest webgpu ${e(g.ours.median)} / ${e(g.ours.worst)} (${g.ours.worstParam}), torch ${e(g.torch.median)} / ${e(g.torch.worst)} (${g.torch.worstParam})`);
      }
    }
    for (const line of scanPeerLines(results, torch, copyGBs)) log(line);
    return {
      backend: "webgpu",
      adapter: be.describe(),
      card: torch?.adapter ?? null,
      timestamps: ctx.acquired.timestamps,
      subgroupMinSize: ctx.acquired.subgroupMinSize,
      copyGBs: copyGBs ?? null,
      tiles: chosen,
      results,
      torch,
      ratios,
      greedy,
      losses,
      variants: variantResults,
      failures,
      checks,
    };
  } finally {
    be.destroy();
  }
}

/** Parses a comma-separated --only list (all sections when absent). */
export function parseSections(only: string | undefined): Section[] | string {
  if (!only) return [...SECTIONS];
  const names = only.split(",").map((s) => s.trim());
  const bad = names.find((n) => !(SECTIONS as readonly string[]).includes(n));
  return bad !== undefined ? bad : (names as Section[]);
}

/**
 * One line per scan forward row: its GB/s, its share of the copy bandwidth and its ratio to the
 * scan's peers in scripts/bench_gpu_torch.py's file. "scan fwd" there is the fastest fused CUDA
 * kernel of scripts/scan_peer.cu (where nvcc built it), "scan fwd (HF loop)" transformers'
 * recurrent loop.
 */
export function scanPeerLines(results: Result[], torch: TorchFile | null, copyGBs: number | null | undefined): string[] {
  return results
    .filter((r) => r.section === "scan" && r.name === "scan fwd")
    .map((r) => {
      const peer = (name: string) => torch?.results.find((x) => x.name === name && x.shape === r.shape && typeof x.rate === "number");
      const cuda = peer("scan fwd");
      const loop = peer("scan fwd (HF loop)");
      const vs = [
        cuda ? `${(r.rate / (cuda.rate as number)).toFixed(2)}x the CUDA peer (${String(cuda.plan ?? "?")}: ${(cuda.rate as number).toFixed(0)} GB/s)` : null,
        loop ? `${(r.rate / (loop.rate as number)).toFixed(0)}x the HF loop` : null,
      ].filter((x) => x !== null);
      const share = copyGBs ? `${((100 * r.rate) / copyGBs).toFixed(0)}% of copy` : "no copy measured";
      return `# ${r.name} ${r.shape}: ${r.rate.toFixed(0)} GB/s, ${share}${vs.length ? `; ${vs.join(", ")}` : ""}`;
    });
}

/**
 * Greedy tokens of each decode result against torch's for the same model and context: both
 * decode the same prompt with the same weights, so a difference is a numerical one (random
 * weights leave near-ties in the logits) or a bug.
 */
function greedyAgreement(results: Result[], torch: TorchFile | null): { name: string; shape: string; same: number; compared: number }[] {
  if (!torch) return [];
  const out = [];
  for (const r of results.filter((r) => r.section === "decode")) {
    const t = torch.results.find((x) => x.name === r.name && x.shape === r.shape && Array.isArray(x.greedy));
    const mine = String(r.extra?.greedy ?? "").split(" ").filter(Boolean).map(Number);
    if (!t || !mine.length) continue;
    const theirs = t.greedy as number[];
    const compared = Math.min(mine.length, theirs.length);
    let same = 0;
    while (same < compared && mine[same] === theirs[same]) same++;
    out.push({ name: r.name, shape: r.shape, same, compared });
  }
  return out;
}
