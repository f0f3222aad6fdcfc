/**
 * Training checkpoints: a directory with the model as HF-style config.json + model.safetensors
 * (loadable by `seqlab verify`/`generate`), the AdamW moments in optimizer.safetensors, and
 * trainer.json (step, options, loss history, data position). Written into a temporary sibling
 * directory and renamed into place, so a kill mid-write leaves the previous checkpoint intact.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import type { Tensor } from "../tensor/tensor.js";
import { toArray, backendOf } from "../backend/alloc.js";
import { SafetensorsFile, writeSafetensors, type TensorToWrite } from "../io/safetensors.js";
import { SeqlabError } from "../util/errors.js";
import type { AdamW } from "./optimizer.js";

export interface TrainerState {
  /** optimizer steps completed */
  step: number;
  /** mean loss of each completed step */
  losses: number[];
  /** anything the trainer needs to continue identically (options, task, seeds) */
  options: Record<string, unknown>;
}

async function tensorsToWrite(named: [string, Tensor][]): Promise<TensorToWrite[]> {
  const out: TensorToWrite[] = [];
  for (const [name, t] of named) out.push({ name, dtype: "F32", shape: t.shape, data: Float32Array.from(await toArray(t)) });
  return out;
}

export async function saveCheckpoint(
  dir: string,
  config: Record<string, unknown>,
  params: [string, Tensor][],
  opt: AdamW,
  state: TrainerState,
): Promise<void> {
  const parent = path.dirname(path.resolve(dir));
  fs.mkdirSync(parent, { recursive: true });
  const tmp = fs.mkdtempSync(path.join(parent, `.${path.basename(dir)}.tmp-`));
  try {
    fs.writeFileSync(path.join(tmp, "config.json"), JSON.stringify(config, null, 2));
    writeSafetensors(path.join(tmp, "model.safetensors"), await tensorsToWrite(params), { format: "pt" });
    const moments: [string, Tensor][] = params.flatMap(([n], i) => [
      [`m.${n}`, opt.m[i]] as [string, Tensor],
      [`v.${n}`, opt.v[i]] as [string, Tensor],
    ]);
    writeSafetensors(path.join(tmp, "optimizer.safetensors"), await tensorsToWrite(moments));
    fs.writeFileSync(path.join(tmp, "trainer.json"), JSON.stringify({ ...state, optimizerStep: opt.step }, null, 2));
    const old = `${dir}.old-${process.pid}`;
    if (fs.existsSync(dir)) fs.renameSync(dir, old);
    fs.renameSync(tmp, dir);
    fs.rmSync(old, { recursive: true, force: true });
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
}

/** Restore parameters and optimizer moments in place; returns the trainer state. */
export function loadCheckpoint(dir: string, params: [string, Tensor][], opt: AdamW): TrainerState {
  const stateFile = path.join(dir, "trainer.json");
  if (!fs.existsSync(stateFile)) throw new SeqlabError(`${dir}: not a training checkpoint (no trainer.json)`);
  let state: TrainerState & { optimizerStep: number };
  try {
    state = JSON.parse(fs.readFileSync(stateFile, "utf8"));
  } catch {
    throw new SeqlabError(`${stateFile}: not valid JSON`);
  }
  const model = SafetensorsFile.open(path.join(dir, "model.safetensors"));
  const moments = SafetensorsFile.open(path.join(dir, "optimizer.safetensors"));
  try {
    params.forEach(([name, p], i) => {
      for (const [file, key, t] of [
        [model, name, p],
        [moments, `m.${name}`, opt.m[i]],
        [moments, `v.${name}`, opt.v[i]],
      ] as const) {
        const info = file.info(key);
        if (info.shape.join() !== t.shape.join()) throw new SeqlabError(`${file.path}: tensor "${key}" has shape [${info.shape}], the model needs [${t.shape}]`);
        backendOf(t).write(t.handle, "f32", file.readF32(key));
      }
    });
  } finally {
    model.close();
    moments.close();
  }
  opt.step = state.optimizerStep;
  return { step: state.step, losses: state.losses, options: state.options };
}
