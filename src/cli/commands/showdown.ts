/**
 * `seqlab showdown [--quick] [--out DIR] [--backend NAME]`: the main job. Prints progress and a
 * summary table; writes DIR/results.json and DIR/report.html (each written to a temporary file
 * and renamed, so an interrupted run leaves no partial output).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { createBackend, setDefaultBackend } from "../../backend/registry.js";
import { runShowdown, SECTIONS, type Section } from "../../experiments/showdown.js";
import { renderReport } from "../../report/html.js";
import type { ShowdownResults } from "../../experiments/results.js";
import { GpuOutOfMemoryError, SeqlabError } from "../../util/errors.js";
import { formatBytes, formatSeconds, table } from "../../util/format.js";
import { intFlag } from "../args.js";
import { assertWritableDir } from "../output_path.js";
import { parseByteSize } from "../../util/memory.js";
import { BACKEND_OPTIONS, cpuFlags, type Command } from "../command.js";

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
  usage: "[--quick] [--out DIR] [--backend NAME] [--only scaling,decode,recall] [--memory-budget SIZE]",
  options: {
    quick: { type: "boolean", help: "a 2-minute run at smaller sizes (recall numbers are a smoke test)" },
    out: { type: "string", default: "showdown-results", help: "directory for results.json and report.html" },
    only: { type: "string", help: `comma-separated sections to run (${SECTIONS.join(", ")})` },
    seed: { type: "string", default: "0", help: "seed for weights and data" },
    "memory-budget": { type: "string", help: "largest peak memory a forward of the scaling section may need, e.g. 8GiB (default: 1GiB on cpu, 8GiB on webgpu, lower on a smaller GPU; quick: 64MiB / 256MiB)" },
    ...BACKEND_OPTIONS,
  },
  async run(v) {
    const c = "showdown";
    const sections = v.only === undefined ? SECTIONS : String(v.only).split(",").map((s) => s.trim());
    for (const s of sections) if (!SECTIONS.includes(s as Section)) throw new SeqlabError(`showdown: --only "${s}" is not a section (${SECTIONS.join(", ")})`);
    const seed = intFlag(c, "seed", v.seed, 0);
    const memoryBudgetBytes = v["memory-budget"] === undefined ? undefined : parseByteSize("showdown: --memory-budget", String(v["memory-budget"]));
    const out = path.resolve(v.out as string);
    assertWritableDir(`${c}: --out`, out);
    const be = await createBackend(v.backend as string, cpuFlags(c, v));
    setDefaultBackend(be);
    const mode = v.quick ? "quick" : "default";
    console.log(`seqlab showdown (${mode}) on backend ${be.describe()}`);
    const t0 = performance.now();
    const results = await withMemoryHint(() =>
      runShowdown(be, {
        mode,
        seed,
        sections: sections as Section[],
        memoryBudgetBytes,
        versions: { seqlab: typeof SEQLAB_VERSION === "string" ? SEQLAB_VERSION : "dev", node: process.version },
        log: (l) => console.log(`[${formatSeconds((performance.now() - t0) / 1000).padStart(8)}] ${l}`),
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
