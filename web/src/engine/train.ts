/**
 * Training in the tab: the trainer's step (train/trainer.ts: mean next-token cross-entropy on
 * the task's targets, global-norm clipping, AdamW on warmup + cosine) without its checkpoint
 * files, one step at a time so the page can draw the loss and stop the run between steps.
 */
import type { CausalLM } from "../../../src/models/causal_lm.js";
import type { Task } from "../../../src/tasks/task.js";
import { tidyAsync } from "../../../src/tensor/scope.js";
import { scalar } from "../../../src/backend/alloc.js";
import { backward } from "../../../src/autograd/tape.js";
import { AdamW } from "../../../src/train/optimizer.js";
import { learningRate } from "../../../src/train/schedule.js";
import { batchLoss } from "../../../src/train/batch_loss.js";
import { SeqlabError } from "../../../src/util/errors.js";
import type { StepEvent, TrainResult } from "../protocol.js";

export interface TrainOptions {
  steps: number;
  batch: number;
  lr: number;
}

export function checkTrainOptions(o: TrainOptions): void {
  if (!(Number.isInteger(o.steps) && o.steps >= 1 && o.steps <= 100000)) throw new SeqlabError(`steps must be an integer in [1, 100000], got ${o.steps}`);
  if (!(Number.isInteger(o.batch) && o.batch >= 1 && o.batch <= 1024)) throw new SeqlabError(`batch must be an integer in [1, 1024], got ${o.batch}`);
  if (!(o.lr > 0 && o.lr < 1)) throw new SeqlabError(`learning rate must be in (0, 1), got ${o.lr}`);
}

export async function trainSteps(
  model: CausalLM,
  task: Task,
  o: TrainOptions,
  run: string,
  emit: (e: StepEvent) => void,
  pause: () => Promise<boolean>,
): Promise<TrainResult> {
  checkTrainOptions(o);
  if (task.vocabSize > model.config.V) {
    throw new SeqlabError(`task ${task.name} needs a vocabulary of ${task.vocabSize}, the model has ${model.config.V}`);
  }
  const opt = new AdamW(model.backend, model.namedParameters(), { lr: o.lr, weightDecay: 0.01, clipNorm: 1 });
  const schedule = { peakLr: o.lr, warmupSteps: Math.ceil(o.steps / 10), totalSteps: o.steps };
  const losses: number[] = [];
  const t0 = performance.now();
  let tokens = 0;
  let stopped = false;
  try {
    for (let step = 0; step < o.steps; step++) {
      const b = task.batch("train", step, o.batch);
      const loss = await tidyAsync(async () => {
        const l = batchLoss(model, b.ids, b.targets, b.B, b.T); // (1)
        backward(l);
        return scalar(l);
      });
      const { gradNorm, nonFinite } = await opt.inspect();
      if (!Number.isFinite(loss)) throw new SeqlabError(`step ${step + 1}: the loss is ${loss}`);
      if (nonFinite) throw new SeqlabError(`step ${step + 1}: the gradient of ${nonFinite} is NaN or infinite`);
      const lr = learningRate(step, schedule);
      opt.update(lr, gradNorm);
      opt.zeroGrad();
      tokens += b.B * b.T;
      losses.push(loss);
      emit({ type: "step", run, step: step + 1, loss, lr, seconds: (performance.now() - t0) / 1000 });
      if (await pause()) {
        stopped = true;
        break;
      }
    }
  } finally {
    opt.zeroGrad();
    opt.dispose();
  }
  const seconds = (performance.now() - t0) / 1000;
  return { losses, seconds, tokensPerSecond: tokens / seconds, stopped };
}
