/**
 * The passkey experiment in the tab: for each chosen architecture, a fresh model on the
 * passkey vocabulary is trained on the synthetic task (tasks/passkey.ts) at a training length,
 * then asked for keys hidden at a chosen depth in contexts of a chosen length (held-out
 * examples, teacher-forced argmax as the showdown scores it: an example is right when all
 * five digits are). A loaded checkpoint can join without training.
 */
import type { Backend } from "../../../src/backend/backend.js";
import type { CausalLM } from "../../../src/models/causal_lm.js";
import { PasskeyTask, PASSKEY_VOCAB } from "../../../src/tasks/passkey.js";
import { predict } from "../../../src/train/evaluate.js";
import { score } from "../../../src/tasks/task.js";
import { SeqlabError } from "../../../src/util/errors.js";
import type { PasskeyRequest, PasskeyRow, PasskeyRowEvent, StepEvent } from "../protocol.js";
import { ARCHS, disposeModel, freshModel } from "./models.js";
import { checkTrainOptions, trainSteps } from "./train.js";

/** Examples per forward pass when scoring (keeps long contexts within memory). */
const EVAL_BATCH = 4;

export function checkPasskeyRequest(r: PasskeyRequest): void {
  checkTrainOptions({ steps: r.steps, batch: r.batch, lr: r.lr });
  for (const [what, v] of [
    ["train length", r.trainLength],
    ["context length", r.length],
  ] as const) {
    if (!(Number.isInteger(v) && v >= 24 && v <= 65536)) throw new SeqlabError(`passkey: ${what} must be an integer in [24, 65536], got ${v}`);
  }
  if (!(r.depth >= 0 && r.depth <= 1)) throw new SeqlabError(`passkey: needle depth must be in [0, 1], got ${r.depth}`);
  if (!(Number.isInteger(r.trials) && r.trials >= 1 && r.trials <= 1000)) throw new SeqlabError(`passkey: trials must be an integer in [1, 1000], got ${r.trials}`);
  if (r.archs.length === 0 && !r.includeCurrent) throw new SeqlabError("passkey: choose at least one architecture");
}

/** Score `model` on `trials` held-out examples at (length, depth); the first example's answer is shown. */
export async function scorePasskey(model: CausalLM, run: string, length: number, depth: number, trials: number, seed: number): Promise<PasskeyRow> {
  if (model.config.V < PASSKEY_VOCAB) throw new SeqlabError(`passkey needs a vocabulary of at least ${PASSKEY_VOCAB}, the model has ${model.config.V}`);
  const task = new PasskeyTask(length, seed, depth);
  let correct = 0;
  let answer: number[] = [];
  let key: number[] = [];
  for (let done = 0, i = 0; done < trials; i++) {
    const b = task.batch("heldout", i, Math.min(EVAL_BATCH, trials - done));
    const { predictions } = await predict(model, b);
    if (done === 0) {
      answer = b.answers[0].map((p) => predictions[p]);
      key = b.answers[0].map((p) => b.targets[p]);
    }
    correct += score(task, b, predictions).correct;
    done += b.B;
  }
  return { run, answer, key, correct, trials, accuracy: correct / trials };
}

export async function passkeyExperiment(
  be: Backend,
  current: { model: CausalLM; label: string } | null,
  r: PasskeyRequest,
  emit: (e: StepEvent | PasskeyRowEvent | { type: "status"; text: string }) => void,
  pause: () => Promise<boolean>,
): Promise<{ rows: PasskeyRow[]; stopped: boolean }> {
  checkPasskeyRequest(r);
  const rows: PasskeyRow[] = [];
  const report = (row: PasskeyRow) => {
    rows.push(row);
    emit({ type: "row", ...row });
  };
  if (r.includeCurrent && current) {
    emit({ type: "status", text: `scoring ${current.label}` });
    report(await rowOrError(current.label, () => scorePasskey(current.model, current.label, r.length, r.depth, r.trials, r.seed)));
  }
  for (const arch of r.archs) {
    const label = ARCHS.find((a) => a.name === arch)?.label ?? arch;
    let model: CausalLM | null = null;
    let stopped = false;
    const row = await rowOrError(label, async () => {
      model = freshModel(be, arch, r.size, PASSKEY_VOCAB, r.seed);
      emit({ type: "status", text: `training ${label}: ${r.steps} steps of passkey at length ${r.trainLength}` });
      const task = new PasskeyTask(r.trainLength, r.seed, null);
      const t = await trainSteps(model, task, { steps: r.steps, batch: r.batch, lr: r.lr }, label, emit, pause);
      stopped = t.stopped;
      emit({ type: "status", text: `scoring ${label} at length ${r.length}, depth ${r.depth}` });
      return scorePasskey(model, label, r.length, r.depth, r.trials, r.seed);
    });
    if (model) disposeModel(model);
    report(row);
    if (stopped) return { rows, stopped: true };
  }
  return { rows, stopped: false };
}

/** A row for one architecture; a refusal (a kernel this backend lacks, a bad size) becomes its error. */
async function rowOrError(run: string, fn: () => Promise<PasskeyRow>): Promise<PasskeyRow> {
  try {
    return await fn();
  } catch (e) {
    if (!(e instanceof SeqlabError)) throw e;
    return { run, answer: [], key: [], correct: 0, trials: 0, accuracy: 0, error: e.message };
  }
}
