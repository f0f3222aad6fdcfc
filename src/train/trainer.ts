/**
 * The training loop: batches from a task, mean next-token cross-entropy on the task's target
 * positions, backward, gradient accumulation, global-norm clipping, AdamW on a warmup + cosine
 * schedule. Everything is seeded, so the same seed on one backend gives the same losses bit for
 * bit, and a run resumed from a checkpoint continues the same loss curve. A NaN or Inf stops the
 * run with the step and the first tensor that went bad.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { tidyAsync } from "../tensor/scope.js";
import { scalar } from "../backend/alloc.js";
import { backward } from "../autograd/tape.js";
import type { CausalLM } from "../models/causal_lm.js";
import type { Task } from "../tasks/task.js";
import { SeqlabError } from "../util/errors.js";
import { AdamW } from "./optimizer.js";
import { learningRate } from "./schedule.js";
import { loadCheckpoint, saveCheckpoint, type TrainerState } from "./checkpoint.js";
import { batchLoss } from "./batch_loss.js";

export { batchLoss };

export interface TrainOptions {
  steps: number;
  batch: number;
  lr: number;
  warmupSteps?: number;
  weightDecay?: number;
  clipNorm?: number;
  /** micro-batches per optimizer step */
  accumulation?: number;
  /** checkpoint directory and interval (steps); resume from it when it holds a checkpoint */
  checkpointDir?: string;
  checkpointEvery?: number;
  /** the model's config.json contents, stored in checkpoints */
  config?: Record<string, unknown>;
  /** stop after this step even if `steps` is larger (a deliberate interruption, for tests) */
  stopAfter?: number;
  onStep?: (r: StepInfo) => void;
}

export interface StepInfo {
  step: number;
  loss: number;
  lr: number;
  gradNorm: number;
  tokens: number;
  seconds: number;
}

export interface TrainResult {
  losses: number[];
  seconds: number;
  tokensPerSecond: number;
  resumedFrom: number;
}

export async function train(model: CausalLM, task: Task, o: TrainOptions): Promise<TrainResult> {
  if (task.vocabSize > model.config.V) {
    throw new SeqlabError(`task ${task.name} needs a vocabulary of ${task.vocabSize}, the model has ${model.config.V}`);
  }
  const params = model.namedParameters();
  const opt = new AdamW(model.backend, params, { lr: o.lr, weightDecay: o.weightDecay ?? 0.01, clipNorm: o.clipNorm ?? 1 });
  const acc = o.accumulation ?? 1;
  const schedule = { peakLr: o.lr, warmupSteps: o.warmupSteps ?? Math.ceil(o.steps / 10), totalSteps: o.steps };
  let state: TrainerState = { step: 0, losses: [], options: { steps: o.steps, batch: o.batch, lr: o.lr, task: task.name } };
  if (o.checkpointDir && hasCheckpoint(o.checkpointDir)) state = loadCheckpoint(o.checkpointDir, params, opt);
  const resumedFrom = state.step;
  const t0 = performance.now();
  let tokens = 0;
  try {
    while (state.step < o.steps && (o.stopAfter === undefined || state.step < o.stopAfter)) {
      const step = state.step;
      let lossSum = 0;
      for (let a = 0; a < acc; a++) {
        const batch = task.batch("train", step * acc + a, o.batch);
        lossSum += await tidyAsync(async () => {
          const loss = batchLoss(model, batch.ids, batch.targets, batch.B, batch.T);
          backward(loss);
          return scalar(loss);
        });
        tokens += batch.B * batch.T;
      }
      const loss = lossSum / acc;
      const { gradNorm, nonFinite } = await opt.inspect();
      if (!Number.isFinite(loss)) throw new SeqlabError(`step ${step + 1}: the loss is ${loss} (the logits went bad${nonFinite ? `; first bad gradient: ${nonFinite}` : ""})`);
      if (nonFinite) throw new SeqlabError(`step ${step + 1}: the gradient of ${nonFinite} is NaN or infinite`);
      const lr = learningRate(step, schedule);
      opt.update(lr, gradNorm, 1 / acc);
      opt.zeroGrad();
      state.losses.push(loss);
      state.step++;
      o.onStep?.({ step: state.step, loss, lr, gradNorm: gradNorm / acc, tokens, seconds: (performance.now() - t0) / 1000 });
      // every checkpointEvery steps, and at the end of the run (the trained model is what --out is for)
      if (o.checkpointDir && ((o.checkpointEvery && state.step % o.checkpointEvery === 0) || state.step === o.steps)) {
        await saveCheckpoint(o.checkpointDir, o.config ?? {}, params, opt, state);
      }
    }
  } finally {
    opt.zeroGrad();
    opt.dispose();
  }
  const seconds = (performance.now() - t0) / 1000;
  return { losses: state.losses, seconds, tokensPerSecond: tokens / seconds, resumedFrom };
}

function hasCheckpoint(dir: string): boolean {
  return fs.existsSync(path.join(dir, "trainer.json"));
}
