/**
 * How the showdown's MQAR task was sized: trains the showdown's architectures on MQAR over a list
 * of settings, each run in its own single-threaded process (cpu backend), many at once, and
 * appends one JSON line per run (the settings, parameters, held-out accuracy, final loss, seconds).
 * bench/results/mqar-sweep-2026-11-27.jsonl is one such sweep (33 runs, 16 processes, on the GPU
 * machine's CPU cores); src/experiments/plan.ts says what it found.
 *
 * Usage: npx tsx scripts/mqar-sweep.ts SETTINGS.json OUT.jsonl [PROCESSES]
 * SETTINGS.json: [{ "arch": "transformer" | "mamba" | "hybrid" | ..., "lr": 0.003, "steps": 2000,
 *   "pairs": 4, "length": 32, and optionally "alphabet", "batch", "seed", "state", "heads", "init", "wd",
 *   "warmup", "layers", "width", "evals": [lengths], "tag" }, ...]
 */
import { spawn } from "node:child_process";
import { appendFileSync, readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { matchedArchs, archConfig } from "../src/experiments/zoo.js";
import { PLANS } from "../src/experiments/plan.js";
import { createBackend } from "../src/backend/registry.js";
import { RawConfig } from "../src/io/config.js";
import { buildModel } from "../src/models/registry.js";
import { ModuleContext } from "../src/nn/module.js";
import { train } from "../src/train/trainer.js";
import { evaluate } from "../src/train/evaluate.js";
import { makeTask } from "../src/tasks/registry.js";

interface Setting {
  arch: string;
  lr: number;
  steps: number;
  pairs: number;
  length: number;
  alphabet?: number;
  batch?: number;
  seed?: number;
  state?: number;
  heads?: number;
  init?: number;
  wd?: number;
  warmup?: number;
  layers?: number;
  width?: number;
  evals?: number[];
  tag?: string;
}

/** One training run, in this process; prints its result line. */
async function runOne(c: Setting): Promise<void> {
  const be = await createBackend("cpu", { threads: 1 });
  const width = c.width ?? PLANS.default.model.width;
  const options = { ...PLANS.default.model, width };
  const seed = c.seed ?? 0;
  const spec = { name: "mqar", length: c.length, pairs: c.pairs, alphabet: c.alphabet, seed };
  const task = makeTask(spec);
  const arch = { ...matchedArchs(be, options)[c.arch] };
  if (c.layers) arch.layers = c.layers;
  const config = archConfig(arch, { ...options, vocab: task.vocabSize, state: c.state });
  const attention = config.attention as Record<string, unknown> | undefined;
  if (c.heads && attention) config.attention = { ...attention, num_heads: c.heads, num_kv_heads: c.heads };
  if (c.init) config.initializer_range = c.init;
  const model = buildModel(new RawConfig(`mqar-sweep ${c.arch}`, config), ModuleContext.seeded(be, seed));
  const t0 = performance.now();
  const r = await train(model, task, { steps: c.steps, batch: c.batch ?? 32, lr: c.lr, weightDecay: c.wd, warmupSteps: c.warmup });
  const acc: Record<string, number> = {};
  for (const L of c.evals ?? [c.length]) {
    acc[`L${L}`] = (await evaluate(model, makeTask({ ...spec, length: L, seed: seed + 1000 }), { batches: 16, batch: 16 })).accuracy;
  }
  console.log("RESULT " + JSON.stringify({ ...c, params: model.parameterCount(), acc, loss: r.losses.at(-1), s: (performance.now() - t0) / 1000 }));
}

/** Every setting in a child process, `processes` at a time; result lines appended to `out`. */
async function sweep(settings: Setting[], out: string, processes: number): Promise<void> {
  writeFileSync(out, "");
  const self = fileURLToPath(import.meta.url);
  let next = 0;
  const lane = async () => {
    while (next < settings.length) {
      const c = settings[next++];
      const text = await new Promise<string>((done) => {
        const child = spawn(process.execPath, [...process.execArgv, self, "--one", JSON.stringify(c)], { stdio: ["ignore", "pipe", "pipe"] });
        let log = "";
        child.stdout.on("data", (d) => (log += d));
        child.stderr.on("data", (d) => (log += d));
        child.on("close", () => done(log));
      });
      const line = text.split("\n").find((l) => l.startsWith("RESULT "))?.slice(7) ?? JSON.stringify({ ...c, error: text.trim().split("\n").at(-1) });
      appendFileSync(out, line + "\n");
      console.log(line);
    }
  };
  await Promise.all(Array.from({ length: processes }, lane));
}

const args = process.argv.slice(2);
if (args[0] === "--one") {
  await runOne(JSON.parse(args[1]) as Setting);
  process.exit(0);
} else {
  if (args.length < 2) {
    console.error("usage: npx tsx scripts/mqar-sweep.ts SETTINGS.json OUT.jsonl [PROCESSES]");
    process.exit(2);
  }
  await sweep(JSON.parse(readFileSync(args[0], "utf8")) as Setting[], args[1], Number(args[2] ?? 2));
}
