/**
 * `seqlab train`: train a preset or a config on a task, with a progress bar (step, loss,
 * tokens/s, ETA), checkpoints that resume, and a final held-out evaluation.
 * `seqlab eval`: evaluate a checkpoint on a task's held-out split.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import cliProgress from "cli-progress";
import { RawConfig } from "../../io/config.js";
import { readConfigFile } from "../../io/config_file.js";
import { createBackend } from "../../backend/registry.js";
import { setDefaultBackend } from "../../backend/registry.js";
import { buildModel } from "../../models/registry.js";
import { preset, PRESET_NAMES } from "../../models/presets.js";
import { checkConfigBudget, loadModel } from "../../models/load.js";
import { ModuleContext } from "../../nn/module.js";
import { train } from "../../train/trainer.js";
import { evaluate } from "../../train/evaluate.js";
import { makeTask, TASK_NAMES, type TaskSpec } from "../../tasks/registry.js";
import { SeqlabError } from "../../util/errors.js";
import { formatSeconds } from "../../util/format.js";
import { intFlag, numFlag } from "../args.js";
import { assertWritableDir } from "../output_path.js";
import { BACKEND_OPTIONS, cpuFlags, type Command, type Values } from "../command.js";

const TASK_OPTIONS = {
  task: { type: "string" as const, default: "passkey", help: `task (${TASK_NAMES.join(", ")})` },
  length: { type: "string" as const, default: "64", help: "sequence length" },
  depth: { type: "string" as const, help: "passkey: needle depth in [0, 1] (default: random)" },
  pairs: { type: "string" as const, help: "mqar: key-value pairs (default 8)" },
  alphabet: { type: "string" as const, help: "mqar: distinct keys and values to draw from (default 32)" },
  count: { type: "string" as const, help: "selective-copy: tokens to copy (default 16)" },
  data: { type: "string" as const, help: "text: the text file to model" },
  seed: { type: "string" as const, default: "0", help: "seed for data and initialisation" },
};

function taskSpec(cmd: string, v: Values): TaskSpec {
  return {
    name: v.task as string,
    length: intFlag(cmd, "length", v.length, 64, 2, 1 << 20),
    seed: intFlag(cmd, "seed", v.seed, 0),
    depth: v.depth === undefined ? undefined : numFlag(cmd, "depth", v.depth, 0, 0, 1),
    pairs: v.pairs === undefined ? undefined : intFlag(cmd, "pairs", v.pairs, 8, 1, 1024),
    alphabet: v.alphabet === undefined ? undefined : intFlag(cmd, "alphabet", v.alphabet, 32, 1, 1 << 15),
    count: v.count === undefined ? undefined : intFlag(cmd, "count", v.count, 16, 1, 1 << 16),
    data: v.data as string | undefined,
  };
}

/** A preset name, or a config.json file. */
function modelConfig(cmd: string, v: Values, vocab: number): Record<string, unknown> {
  const m = (v.model as string | undefined) ?? "transformer";
  if (m.endsWith(".json")) {
    const raw = readConfigFile(m);
    return raw.json;
  }
  if (!PRESET_NAMES.includes(m as never)) {
    throw new SeqlabError(`${cmd}: --model "${m}" is neither a preset (${PRESET_NAMES.join(", ")}) nor a .json config`);
  }
  return preset(m, {
    vocab,
    width: intFlag(cmd, "width", v.width, 64, 8, 8192),
    layers: v.layers === undefined ? undefined : intFlag(cmd, "layers", v.layers, 2, 1, 256),
    state: intFlag(cmd, "state", v.state, 16, 1, 1024),
  });
}

export const trainCommand: Command = {
  name: "train",
  summary: "train a preset or config.json on a task (passkey, mqar, selective-copy, induction, text)",
  usage: "[--model PRESET|config.json] [--task NAME] [--steps N] [--batch B] [--lr LR] [--length T] [--out DIR]",
  options: {
    model: { type: "string", default: "transformer", help: `preset (${PRESET_NAMES.join(", ")}) or a config.json` },
    width: { type: "string", help: "preset width (default 64)" },
    layers: { type: "string", help: "preset layers (default 2 for transformer and rwkv, 4 for the others)" },
    state: { type: "string", help: "preset SSM state size (default 16)" },
    steps: { type: "string", default: "500", help: "optimizer steps" },
    batch: { type: "string", default: "16", help: "sequences per micro-batch" },
    accumulation: { type: "string", default: "1", help: "micro-batches per step" },
    lr: { type: "string", default: "0.003", help: "peak learning rate" },
    warmup: { type: "string", help: "warmup steps (default 10% of steps)" },
    "weight-decay": { type: "string", default: "0.01", help: "AdamW weight decay" },
    clip: { type: "string", default: "1", help: "gradient norm clipping (0: off)" },
    out: { type: "string", help: "checkpoint directory (resumes if it holds a checkpoint)" },
    "checkpoint-every": { type: "string", default: "100", help: "steps between checkpoints" },
    ...TASK_OPTIONS,
    ...BACKEND_OPTIONS,
  },
  async run(v) {
    const c = "train";
    const spec = taskSpec(c, v);
    const task = makeTask(spec);
    const steps = intFlag(c, "steps", v.steps, 500, 1, 1e9);
    const batch = intFlag(c, "batch", v.batch, 16, 1, 1 << 16);
    const out = v.out as string | undefined;
    if (out !== undefined) assertWritableDir(`${c}: --out`, out);
    const opts = {
      steps,
      batch,
      lr: numFlag(c, "lr", v.lr, 3e-3, 0, 10),
      warmupSteps: v.warmup === undefined ? undefined : intFlag(c, "warmup", v.warmup, 0, 0, 1e9),
      weightDecay: numFlag(c, "weight-decay", v["weight-decay"], 0.01, 0, 10),
      clipNorm: numFlag(c, "clip", v.clip, 1, 0, 1e9),
      accumulation: intFlag(c, "accumulation", v.accumulation, 1, 1, 1 << 16),
      checkpointDir: out,
      checkpointEvery: intFlag(c, "checkpoint-every", v["checkpoint-every"], 100, 1, 1e9),
    };
    const config = new RawConfig(String(v.model), modelConfig(c, v, task.vocabSize));
    checkConfigBudget(config, { copies: 4 });
    const be = await createBackend(v.backend as string, cpuFlags(c, v));
    setDefaultBackend(be);
    const model = buildModel(config, ModuleContext.seeded(be, spec.seed));
    console.error(`train: ${v.model} (${model.parameterCount().toLocaleString("en-US")} parameters) on ${task.name} T=${task.length}, backend ${be.describe()}`);
    const bar = new cliProgress.SingleBar(
      { format: "{bar} {value}/{total} | loss {loss} | {tps} tok/s | ETA {eta_formatted}", hideCursor: true, stream: process.stderr },
      cliProgress.Presets.shades_classic,
    );
    bar.start(steps, 0, { loss: "-", tps: "-" });
    const result = await train(model, task, {
      ...opts,
      config: { ...config.json, seqlab_task: spec },
      onStep: (s) => bar.update(s.step, { loss: s.loss.toFixed(4), tps: Math.round(s.tokens / s.seconds) }),
    });
    bar.stop();
    const ev = await evaluate(model, task, { batches: 4, batch });
    console.log(
      `train: ${result.losses.length} steps in ${formatSeconds(result.seconds)}, final loss ${result.losses.at(-1)?.toFixed(4)}, ` +
        `${Math.round(result.tokensPerSecond)} tok/s; held-out loss ${ev.loss.toFixed(4)}, accuracy ${(100 * ev.accuracy).toFixed(1)}%` +
        (out ? `; checkpoint in ${out}` : ""),
    );
    return 0;
  },
};

export const evalCommand: Command = {
  name: "eval",
  summary: "evaluate a checkpoint (or model dir) on a task's held-out split",
  usage: "<checkpoint-dir> [--task NAME] [--length T] [--batches N]",
  options: {
    batches: { type: "string", default: "8", help: "held-out batches" },
    batch: { type: "string", default: "16", help: "sequences per batch" },
    // no defaults: what is not given comes from the checkpoint's task
    ...Object.fromEntries(Object.entries(TASK_OPTIONS).map(([k, o]) => [k, { type: o.type, help: o.help }])),
    ...BACKEND_OPTIONS,
  },
  async run(v, pos) {
    const c = "eval";
    if (pos.length !== 1) throw new SeqlabError("eval: give exactly one checkpoint or model directory");
    const dir = pos[0];
    const be = await createBackend(v.backend as string, cpuFlags(c, v));
    const model = loadModel(dir, be);
    const stored = readStoredTask(dir);
    const given = Object.fromEntries(Object.entries(v).filter(([k, x]) => x !== undefined && k in TASK_OPTIONS));
    const task = makeTask(taskSpec(c, { task: "passkey", ...stored, ...given } as Values));
    const ev = await evaluate(model, task, { batches: intFlag(c, "batches", v.batches, 8, 1, 1e6), batch: intFlag(c, "batch", v.batch, 16, 1, 1 << 16) });
    console.log(`eval: ${task.name} T=${task.length}: loss ${ev.loss.toFixed(4)}, accuracy ${(100 * ev.accuracy).toFixed(2)}% (${ev.correct}/${ev.total})`);
    return 0;
  },
};

/** The task a seqlab checkpoint was trained on, as flag values. */
function readStoredTask(dir: string): Values {
  const f = path.join(dir, "config.json");
  let spec: Partial<TaskSpec> = {};
  try {
    spec = JSON.parse(fs.readFileSync(f, "utf8")).seqlab_task ?? {};
  } catch {
    return {};
  }
  const { name, ...rest } = spec;
  return Object.fromEntries(
    Object.entries({ task: name, ...rest }).filter(([, x]) => x !== undefined).map(([k, x]) => [k, String(x)]),
  );
}
