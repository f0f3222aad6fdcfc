/**
 * `seqlab showdown [--quick] [--out DIR] [--backend NAME]`: the main job. Prints progress and a
 * summary table; writes DIR/results.json and DIR/report.html (each written to a temporary file
 * and renamed, so an interrupted run leaves no partial output).
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { createBackend, setDefaultBackend } from "../../backend/registry.js";
import { recallPlansFor, runShowdown, SECTIONS, type RecallJobs, type Section } from "../../experiments/showdown.js";
import { runRecall } from "../../experiments/recall.js";
import { childRecallJobs, WORKER_LOG, WORKER_RESULT } from "../recall_jobs.js";
import { renderReport } from "../../report/html.js";
import type { ShowdownResults } from "../../experiments/results.js";
import { GpuOutOfMemoryError, SeqlabError } from "../../util/errors.js";
import { formatBytes, formatSeconds, table } from "../../util/format.js";
import { intFlag } from "../args.js";
import { assertWritableDir } from "../output_path.js";
import { availableMemoryBytes, parseByteSize } from "../../util/memory.js";
import { BACKEND_OPTIONS, cpuFlags, type Command, type Values } from "../command.js";

declare const SEQLAB_VERSION: string | undefined;

function writeAtomic(file: string, text: string): void {
  const tmp = `${file}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, text);
  fs.renameSync(tmp, file);
}

function summary(r: ShowdownResults): string {
  const lines: string[] = [];
  if (r.scaling.length) {
    lines.push(
      table(
        ["architecture", "params", "largest T", "time there", "peak memory", "time ~ T^k", "memory ~ T^k"],
        r.scaling.map((s) => {
          const last = s.points.at(-1);
          return [s.label, s.params.toLocaleString("en-US"), last?.T ?? "-", last ? formatSeconds(last.seconds) : "-", last ? formatBytes(last.peakBytes) : "-", s.timeSlope.toFixed(2), s.memorySlope.toFixed(2)];
        }),
      ),
    );
  }
  if (r.decode.length) {
    lines.push(
      "",
      table(
        ["architecture", "position", "ms/token", "KV cache", "state", "time ~ pos^k"],
        r.decode.map((d) => {
          const last = d.points.at(-1)!;
          return [d.label, last.position, last.msPerToken.toFixed(2), formatBytes(last.kvCacheBytes), formatBytes(last.recurrentBytes), d.timeSlope.toFixed(2)];
        }),
      ),
    );
  }
  if (r.recall.length) {
    lines.push(
      "",
      table(
        ["task", "model", "steps", "accuracy"],
        r.recall.map((x) => [x.task, `${x.label}${x.variant ? ` (${x.variant})` : ""}`, x.steps, Object.entries(x.accuracy).map(([k, v]) => `${k} ${(100 * v).toFixed(0)}%`).join(" ")]),
      ),
    );
  }
  lines.push("", table(["#", "claim", "verdict"], r.claims.map((c) => [c.id, c.title.length > 70 ? c.title.slice(0, 67) + "..." : c.title, c.verdict])));
  return lines.join("\n");
}

/** Out of GPU memory in the scaling section: say which flag bounds it. */
export async function withMemoryHint<T>(run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (e) {
    if (e instanceof GpuOutOfMemoryError) throw new GpuOutOfMemoryError(`${e.message}; a smaller --memory-budget keeps the scaling section within this GPU`);
    throw e;
  }
}

export const showdownCommand: Command = {
  name: "showdown",
  summary: "measure the Transformer vs Mamba vs RWKV vs hybrid trade-offs on this machine (tables, results.json, report.html)",
  usage: "[--quick] [--out DIR] [--backend NAME] [--only scaling,decode,recall] [--memory-budget SIZE] [--recall-jobs N]",
  options: {
    quick: { type: "boolean", help: "a 2-minute run at smaller sizes (recall numbers are a smoke test)" },
    out: { type: "string", default: "showdown-results", help: "directory for results.json and report.html" },
    only: { type: "string", help: `comma-separated sections to run (${SECTIONS.join(", ")})` },
    seed: { type: "string", default: "0", help: "seed for weights and data" },
    "memory-budget": { type: "string", help: "largest peak memory a forward of the scaling section may need, e.g. 8GiB (default: 1GiB on cpu, 8GiB on webgpu, lower on a smaller GPU; quick: 64MiB / 256MiB)" },
    "recall-jobs": { type: "string", help: "cpu: recall trainings at a time, each in its own process with one thread (default: one per core, 256 MiB of available memory each; 1: one at a time in this process, on --threads threads)" },
    "recall-worker": { type: "string", help: "internal: train recall plan N alone and print its result (what --recall-jobs runs)" },
    ...BACKEND_OPTIONS,
  },
  async run(v) {
    const c = "showdown";
    const sections = v.only === undefined ? SECTIONS : String(v.only).split(",").map((s) => s.trim());
    for (const s of sections) if (!SECTIONS.includes(s as Section)) throw new SeqlabError(`showdown: --only "${s}" is not a section (${SECTIONS.join(", ")})`);
    const seed = intFlag(c, "seed", v.seed, 0);
    const mode = v.quick ? "quick" : "default";
    if (v["recall-worker"] !== undefined) return recallWorker(v, mode, seed);
    const memoryBudgetBytes = v["memory-budget"] === undefined ? undefined : parseByteSize("showdown: --memory-budget", String(v["memory-budget"]));
    const out = path.resolve(v.out as string);
    assertWritableDir(`${c}: --out`, out);
    const be = await createBackend(v.backend as string, cpuFlags(c, v));
    setDefaultBackend(be);
    console.log(`seqlab showdown (${mode}) on backend ${be.describe()}`);
    const t0 = performance.now();
    const log = (l: string) => console.log(`[${formatSeconds((performance.now() - t0) / 1000).padStart(8)}] ${l}`);
    const jobs = recallJobsFlag(v, be.name, recallPlansFor(be, mode, seed).length);
    const recallJobs: RecallJobs | undefined = jobs > 1 ? childRecallJobs({ jobs, mode, seed, cpuIsa: v["cpu-isa"] as string | undefined, log }) : undefined;
    const results = await withMemoryHint(() =>
      runShowdown(be, {
        mode,
        seed,
        sections: sections as Section[],
        memoryBudgetBytes,
        versions: { seqlab: typeof SEQLAB_VERSION === "string" ? SEQLAB_VERSION : "dev", node: process.version },
        log,
        recallJobs,
      }),
    );
    // rendered before anything is written: a failure leaves no results.json without its report
    const report = renderReport(results);
    fs.mkdirSync(out, { recursive: true });
    writeAtomic(path.join(out, "results.json"), JSON.stringify(results, null, 1));
    writeAtomic(path.join(out, "report.html"), report);
    console.log("\n" + summary(results));
    console.log(`\nwrote ${path.join(out, "results.json")} and ${path.join(out, "report.html")} (${formatSeconds(results.elapsedSeconds)})`);
    return 0;
  },
};

/** Memory a recall job may take: a child peaked at 137 MiB (the default plan's hybrid on MQAR). */
const RECALL_JOB_BYTES = 256 * 2 ** 20;

/**
 * --recall-jobs: how many recall trainings run at once. Only the cpu backend runs them in child
 * processes (a GPU backend trains one model at a time in this process); the default is a job per
 * core, never more than there are trainings nor than the available memory holds.
 */
function recallJobsFlag(v: Values, backend: string, trainings: number): number {
  const cores = typeof os.availableParallelism === "function" ? os.availableParallelism() : os.cpus().length;
  const asked = intFlag("showdown", "recall-jobs", v["recall-jobs"], 0, 1, 256);
  if (backend !== "cpu") {
    if (asked > 1) throw new SeqlabError(`showdown: --recall-jobs runs trainings in cpu processes; with --backend ${backend} they run one at a time`);
    return 1;
  }
  const fit = Math.max(1, Math.floor(availableMemoryBytes() / RECALL_JOB_BYTES));
  return Math.min(asked || Math.min(cores, fit), trainings);
}

/** `--recall-worker I`: one recall training on this process's backend; its lines for childRecallJobs. */
async function recallWorker(v: Values, mode: "quick" | "default", seed: number): Promise<number> {
  const be = await createBackend(v.backend as string, cpuFlags("showdown", v));
  setDefaultBackend(be);
  const plans = recallPlansFor(be, mode, seed);
  const index = intFlag("showdown", "recall-worker", v["recall-worker"], 0, 0, plans.length - 1);
  const run = await runRecall(be, plans[index], seed, (l) => console.log(WORKER_LOG + l));
  console.log(WORKER_RESULT + JSON.stringify(run));
  return 0;
}
