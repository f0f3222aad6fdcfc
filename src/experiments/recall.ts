/**
 * Claims 4-6: what each architecture learns and recalls. A model is trained on a task (over one
 * or several lengths) with the same optimizer budget as the others, then evaluated on held-out
 * examples: passkey by length x needle depth, MQAR by length, selective copying.
 */
import type { Backend } from "../backend/backend.js";
import type { PresetOptions } from "../models/presets.js";
import { train } from "../train/trainer.js";
import { evaluate } from "../train/evaluate.js";
import { makeTask, type TaskSpec } from "../tasks/registry.js";
import { MixedLengthTask } from "../tasks/mixed.js";
import { MqarTask } from "../tasks/mqar.js";
import type { RecallRun } from "./results.js";
import { buildArch, type Arch } from "./zoo.js";

export interface RecallPlan {
  arch: Arch;
  variant?: string;
  model: PresetOptions;
  /** the task at each trained length (seed etc. in the spec) */
  train: TaskSpec[];
  steps: number;
  batch: number;
  lr: number;
  /** held-out evaluations: key -> task spec (e.g. "L128_d0.5" -> passkey at 128, depth 0.5) */
  evals: Record<string, TaskSpec>;
  evalExamples: number;
}

export async function runRecall(be: Backend, plan: RecallPlan, seed: number, log?: (l: string) => void): Promise<RecallRun> {
  const task = new MixedLengthTask(plan.train.map(makeTask));
  const model = buildArch(be, plan.arch, { ...plan.model, vocab: task.vocabSize }, seed); // each task sizes its vocabulary
  let lastLog = 0;
  const result = await train(model, task, {
    steps: plan.steps,
    batch: plan.batch,
    lr: plan.lr,
    onStep: (s) => {
      if (log && (s.step === plan.steps || performance.now() - lastLog > 10_000)) {
        lastLog = performance.now();
        log(`  ${plan.arch.id}${plan.variant ? ` (${plan.variant})` : ""} ${task.name}: step ${s.step}/${plan.steps}, loss ${s.loss.toFixed(3)}, ${s.seconds.toFixed(0)} s`);
      }
    },
  });
  const accuracy: Record<string, number> = {};
  const guess: Record<string, number> = {};
  for (const [key, spec] of Object.entries(plan.evals)) {
    const evalTask = makeTask(spec);
    const batch = Math.min(plan.evalExamples, 16);
    const batches = Math.ceil(plan.evalExamples / batch);
    const r = await evaluate(model, evalTask, { batches, batch });
    accuracy[key] = r.accuracy;
    if (evalTask instanceof MqarTask) guess[key] = evalTask.guessAccuracy(batches, batch);
  }
  const run: RecallRun = {
    arch: plan.arch.id,
    label: plan.arch.label,
    params: model.parameterCount(),
    task: task.name,
    variant: plan.variant,
    ...(plan.variant && plan.model.state !== undefined ? { stateSize: plan.model.state } : {}),
    trainLengths: plan.train.map((t) => t.length),
    steps: plan.steps,
    trainSeconds: result.seconds,
    finalLoss: result.losses.at(-1) ?? NaN,
    accuracy,
    ...(Object.keys(guess).length > 0 ? { guessAccuracy: guess } : {}),
  };
  for (const t of model.parameters()) t.dispose();
  return run;
}
