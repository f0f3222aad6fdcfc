/**
 * Training throughput on the webgpu backend: the decode section's ~130M Mamba and Llama-style
 * models, one batch of B x T tokens a step (the trainer's step: mean next-token cross-entropy,
 * backward, global-norm clipping, AdamW), against PyTorch training the very same weights on the
 * same batch with the same optimizer (scripts/bench_gpu_torch.py's train section).
 *
 * Both sides start from the same weights, so their losses must agree: the first step's loss to
 * rounding, the later ones as closely as two fp32 implementations of the same updates can. The
 * report prints the largest relative difference of the losses and of the first step's gradient
 * norms per parameter, and a noise floor to read them by: this side's own steps again with each
 * batch in two halves (the same updates, rounded differently). A step is timed on the wall clock, from
 * recording the forward to the optimizer's update recorded (its two host reads, the loss and the
 * gradient norms, included, as the trainer has them); the median of the timed steps is reported,
 * with the GPU time of one more step's forward + backward from a timestamp before every dispatch
 * and its slowest kernels, to say where a step's time goes.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import type { WebGpuBackend } from "../../backend/webgpu/index.js";
import type { CausalLM } from "../../models/causal_lm.js";
import { buildModel } from "../../models/registry.js";
import { loadModel } from "../../models/load.js";
import { RawConfig } from "../../io/config.js";
import { ModuleContext } from "../../nn/module.js";
import { backward } from "../../autograd/tape.js";
import { tidyAsync } from "../../tensor/scope.js";
import { scalar } from "../../backend/alloc.js";
import { AdamW } from "../../train/optimizer.js";
import { batchLoss } from "../../train/batch_loss.js";
import type { Tensor } from "../../tensor/tensor.js";
import { promptTokens } from "./decode.js";
import { profileDispatches, slowest } from "./profile.js";
import type { Result } from "./timing.js";
import { median } from "../../util/stats.js";

/** Batch, length, timed steps and the optimizer's settings; the PyTorch side uses the same (its TRAIN_* constants). */
export interface TrainShape {
  batch: number;
  T: number;
  /** timed steps, after one untimed step (pipelines compiled, buffers pooled) */
  steps: number;
  lr: number;
  weightDecay: number;
  clipNorm: number;
}

export const TRAIN_SHAPE: TrainShape = { batch: 4, T: 1024, steps: 5, lr: 1e-3, weightDecay: 0.01, clipNorm: 1 };
export const QUICK_TRAIN_SHAPE: TrainShape = { ...TRAIN_SHAPE, batch: 2, T: 64, steps: 2 };

/**
 * The batch both sides train on: row b is promptTokens' sequence from b T, its targets the same
 * sequence one token on (a formula, so that Python needs no port of an RNG).
 */
export function trainBatch(B: number, T: number, V: number): { ids: Int32Array; targets: Int32Array } {
  const s = promptTokens(B * T + 1, V);
  return { ids: Int32Array.from(s.slice(0, B * T)), targets: Int32Array.from(s.slice(1, B * T + 1)) };
}

export interface TrainBenchOptions {
  shape: TrainShape;
  models: Record<string, Record<string, unknown>>;
  /** load DIR/NAME (config.json + model.safetensors, written by the PyTorch side) instead of seeded weights */
  modelDir?: string;
  log?: (line: string) => void;
}

/**
 * One optimizer step as the trainer takes it, the batch in `parts` micro-batches of B / parts rows
 * whose gradients add up (the trainer's accumulation: the same step up to rounding); `wrap` sees
 * the forward and backward being recorded (the profile's hook).
 */
export async function trainStep(model: CausalLM, opt: AdamW, s: TrainShape, batch: { ids: Int32Array; targets: Int32Array }, wrap?: (record: () => void) => Promise<void>, parts = 1) {
  const rows = s.batch / parts;
  let loss = 0;
  for (let a = 0; a < parts; a++) {
    const [lo, hi] = [a * rows * s.T, (a + 1) * rows * s.T];
    loss += await tidyAsync(async () => {
      let l: Tensor | null = null;
      const record = () => {
        l = batchLoss(model, batch.ids.subarray(lo, hi), batch.targets.subarray(lo, hi), rows, s.T); // (1)
        backward(l);
      };
      if (wrap) await wrap(record);
      else record();
      return scalar(l!);
    });
  }
  loss /= parts;
  const { gradNorm, nonFinite, norms } = await opt.inspect();
  if (nonFinite || !Number.isFinite(loss)) throw new Error(`train bench: step went bad (loss ${loss}, first bad gradient ${nonFinite})`);
  opt.update(s.lr, gradNorm, 1 / parts);
  opt.zeroGrad();
  return { loss, gradNorm: gradNorm / parts, norms };
}

/** Steps of the noise-floor trajectory (the batch in two halves). */
const FLOOR_STEPS = 3;

export async function benchTrain(be: WebGpuBackend, o: TrainBenchOptions): Promise<Result[]> {
  const s = o.shape;
  const results: Result[] = [];
  for (const [name, cfg] of Object.entries(o.models)) {
    const dir = o.modelDir ? path.join(o.modelDir, name) : null;
    if (dir && !fs.existsSync(path.join(dir, "model.safetensors"))) throw new Error(`${dir}: no model.safetensors (write it with scripts/bench_gpu_torch.py --decode-dir)`);
    const load = () => (dir ? loadModel(dir, be) : buildModel(new RawConfig(`bench ${name}`, cfg), ModuleContext.seeded(be, 0)));
    const model = load();
    const params = model.parameterCount();
    const batch = trainBatch(s.batch, s.T, model.config.V);
    const losses: number[] = [];
    const norms: number[] = [];
    const stepMs: number[] = [];
    let paramNorms: Record<string, number> = {};
    let gpuMs = 0;
    let top = "";
    await training(be, model, s, async (opt) => {
      const take = (r: { loss: number; gradNorm: number }) => {
        losses.push(r.loss);
        norms.push(r.gradNorm);
      };
      const first = await trainStep(model, opt, s, batch);
      take(first);
      paramNorms = Object.fromEntries(opt.params.map(([n], i) => [n, first.norms[i]]));
      for (let i = 0; i < s.steps; i++) {
        const t0 = performance.now();
        take(await trainStep(model, opt, s, batch));
        stepMs.push(performance.now() - t0);
      }
      // one more step, its forward and backward profiled (then updated as the others, so that both sides take the same steps)
      take(
        await trainStep(model, opt, s, batch, async (record) => {
          const p = await profileDispatches(be, record);
          gpuMs = p.gpuMs;
          top = slowest(p, 6);
        }),
      );
    });
    // the noise floor of comparing trajectories: the same steps from the same weights, each batch
    // in two halves, so that only rounding differs (a model whose gradients are mostly rounding
    // noise, or an optimizer that amplifies it, parts quickly from itself as from PyTorch)
    const halves: number[] = [];
    if (s.batch % 2 === 0) {
      const again = load();
      await training(be, again, s, async (opt) => {
        for (let i = 0; i < Math.min(FLOOR_STEPS, s.steps + 2); i++) halves.push((await trainStep(again, opt, s, batch, undefined, 2)).loss);
      });
    }
    const medianMs = median(stepMs);
    const tokens = s.batch * s.T;
    o.log?.(`# train ${name} B${s.batch} T${s.T}: median step ${medianMs.toFixed(1)} ms; one step's forward+backward ${gpuMs.toFixed(1)} ms of GPU time: ${top}`);
    results.push({
      section: "train",
      name: `train ${name}`,
      shape: `B${s.batch} T${s.T}`,
      ms: medianMs,
      rate: (1e3 * tokens) / medianMs,
      unit: "tok/s",
      iterations: s.steps,
      timing: "wallclock",
      extra: {
        params,
        "fwd+bwd gpu ms": gpuMs,
        top,
        losses: losses.map((l) => l.toPrecision(7)).join(" "),
        "grad norms": norms.map((g) => g.toPrecision(5)).join(" "),
        "losses, batch in halves": halves.map((l) => l.toPrecision(7)).join(" "),
      },
      detail: { "first step's gradient norms": paramNorms },
    });
  }
  return results;
}

/** Runs `steps` with an optimizer for `model`, then frees both. */
async function training(be: WebGpuBackend, model: CausalLM, s: TrainShape, steps: (opt: AdamW) => Promise<void>): Promise<void> {
  const opt = new AdamW(be, model.namedParameters(), { lr: s.lr, weightDecay: s.weightDecay, clipNorm: s.clipNorm });
  try {
    await steps(opt);
  } finally {
    opt.dispose();
    for (const p of model.parameters()) p.dispose();
    be.ctx.trim();
  }
}

export interface LossAgreement {
  name: string;
  shape: string;
  steps: number;
  /** relative difference of the first step's loss, and the largest over the steps */
  first: number;
  worst: number;
  /** the first step's gradient norms: parameters both sides name, and the one that differs most (relative) */
  params: number;
  worstParam: string | null;
  worstParamDiff: number;
  /** parameters only one side has */
  unmatched: string[];
  /**
   * The noise floor: over the first `floorSteps` steps, the largest relative difference between
   * this side's losses and its own with each batch in halves, beside the largest against PyTorch's
   */
  floorSteps: number;
  floor: number;
  worstWithinFloor: number;
  /** where PyTorch also took the first step in float64: each fp32 side's relative error against it */
  fp64?: { loss: { ours: number; torch: number }; grads: { ours: ErrorSpread; torch: ErrorSpread } };
}

/** Relative errors of the first step's gradient norms over the parameters: median, largest and its parameter. */
export interface ErrorSpread {
  median: number;
  worst: number;
  worstParam: string;
}

type TorchRow = { name: string; shape: string; losses?: unknown; "param grad norms"?: unknown; "loss fp64"?: unknown; "param grad norms fp64"?: unknown };

function spread(got: Record<string, number>, want: Record<string, number>): ErrorSpread {
  const errs = Object.keys(want)
    .filter((p) => p in got)
    .map((p) => ({ p, e: Math.abs(got[p] - want[p]) / Math.max(Math.abs(want[p]), 1e-30) }))
    .sort((a, b) => a.e - b.e);
  if (!errs.length) return { median: NaN, worst: NaN, worstParam: "-" };
  return { median: errs[errs.length >> 1].e, worst: errs[errs.length - 1].e, worstParam: errs[errs.length - 1].p };
}

/** Per trained model: how this side's losses, and the first step's gradient norms per parameter, differ from PyTorch's. */
export function lossAgreement(results: Result[], torch: { results: TorchRow[] } | null): LossAgreement[] {
  const out: LossAgreement[] = [];
  const rel = (a: number, b: number) => Math.abs(a - b) / Math.max(Math.abs(b), 1e-12);
  for (const r of results.filter((x) => x.section === "train")) {
    const t = torch?.results.find((x) => x.name === r.name && x.shape === r.shape);
    const theirs = Array.isArray(t?.losses) ? (t.losses as number[]) : null;
    if (!t || !theirs) continue;
    const ours = String(r.extra?.losses ?? "").split(" ").map(Number);
    const n = Math.min(ours.length, theirs.length);
    const a: LossAgreement = {
      name: r.name, shape: r.shape, steps: n, first: n ? rel(ours[0], theirs[0]) : NaN,
      worst: Math.max(...Array.from({ length: n }, (_, i) => rel(ours[i], theirs[i]))), params: 0, worstParam: null, worstParamDiff: 0, unmatched: [],
      floorSteps: 0, floor: NaN, worstWithinFloor: NaN,
    };
    const halves = String(r.extra?.["losses, batch in halves"] ?? "").split(" ").filter(Boolean).map(Number);
    a.floorSteps = Math.min(halves.length, n);
    if (a.floorSteps) {
      const upTo = (f: (i: number) => number) => Math.max(...Array.from({ length: a.floorSteps }, (_, i) => f(i)));
      a.floor = upTo((i) => rel(halves[i], ours[i]));
      a.worstWithinFloor = upTo((i) => rel(ours[i], theirs[i]));
    }
    const mine = (r.detail?.["first step's gradient norms"] ?? {}) as Record<string, number>;
    const other = (t["param grad norms"] ?? {}) as Record<string, number>;
    for (const [p, g] of Object.entries(mine)) {
      if (!(p in other)) {
        a.unmatched.push(p);
        continue;
      }
      a.params++;
      const d = rel(g, other[p]);
      if (a.worstParam === null || d > a.worstParamDiff) [a.worstParam, a.worstParamDiff] = [p, d];
    }
    for (const p of Object.keys(other)) if (!(p in mine)) a.unmatched.push(p);
    const loss64 = t["loss fp64"];
    const norms64 = t["param grad norms fp64"] as Record<string, number> | undefined;
    if (typeof loss64 === "number" && norms64 && n) {
      a.fp64 = { loss: { ours: rel(ours[0], loss64), torch: rel(theirs[0], loss64) }, grads: { ours: spread(mine, norms64), torch: spread(other, norms64) } };
    }
    out.push(a);
  }
  return out;
}
