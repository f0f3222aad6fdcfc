/**
 * The showdown's recall trainings as child processes, several at a time. Each child is this same
 * command line (`seqlab showdown --recall-worker I`) on a one-thread cpu backend: it trains plan I
 * of experiments/showdown.ts's recallPlansFor and prints its progress lines and then its result
 * as JSON on stdout. Child processes rather than worker threads because a child starts from the
 * same entry script whether seqlab runs from its bundle or from source.
 *
 * Why: the recall models are tiny (about 100k parameters, batches of 32 x 64 tokens), so a second
 * thread per training buys little (a Mamba MQAR step: 56 ms on one thread, 42 ms on two, on a
 * 2-core machine), while two trainings side by side each keep a core busy.
 */
import { spawn, type ChildProcess } from "node:child_process";
import type { RecallJobs } from "../experiments/showdown.js";
import type { RecallRun } from "../experiments/results.js";
import { SeqlabError } from "../util/errors.js";

/** The child's protocol: lines starting with these; anything else on stdout is ignored. */
export const WORKER_LOG = "recall-worker log ";
export const WORKER_RESULT = "recall-worker result ";

export interface RecallJobOptions {
  jobs: number;
  mode: "quick" | "default";
  seed: number;
  /** the parent's instruction set, so children compute the same bits */
  cpuIsa?: string;
  log: (line: string) => void;
}

export function childRecallJobs(o: RecallJobOptions): RecallJobs {
  const live = new Set<ChildProcess>();
  const script = process.argv[1];
  const args = (index: number) => [
    ...process.execArgv,
    script,
    "showdown",
    "--recall-worker",
    String(index),
    "--seed",
    String(o.seed),
    "--backend",
    "cpu",
    "--threads",
    "1",
    ...(o.mode === "quick" ? ["--quick"] : []),
    ...(o.cpuIsa ? ["--cpu-isa", o.cpuIsa] : []),
  ];
  const run = (index: number) =>
    new Promise<RecallRun>((resolve, reject) => {
      const child = spawn(process.execPath, args(index), { stdio: ["ignore", "pipe", "pipe"] });
      live.add(child);
      let result: RecallRun | undefined;
      let pending = "";
      let stderr = "";
      child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
        pending += chunk;
        const lines = pending.split("\n");
        pending = lines.pop()!;
        for (const line of lines) {
          if (line.startsWith(WORKER_LOG)) o.log(line.slice(WORKER_LOG.length));
          else if (line.startsWith(WORKER_RESULT)) result = JSON.parse(line.slice(WORKER_RESULT.length)) as RecallRun;
        }
      });
      child.stderr!.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
      child.on("error", (e) => reject(new SeqlabError(`showdown: cannot start a recall training (${e.message})`)));
      child.on("close", (code, signal) => {
        live.delete(child);
        if (code === 0 && result) return resolve(result);
        const why = stderr.trim().split("\n").at(-1)?.replace(/^seqlab: /, "") || (signal ? `stopped by ${signal}` : `exit status ${code}`);
        reject(new SeqlabError(`showdown: recall training ${index + 1} failed: ${why}`));
      });
    });
  return {
    jobs: o.jobs,
    describe: `${o.jobs} trainings at a time, each in its own process on the cpu backend with 1 thread`,
    run,
    dispose: () => {
      for (const c of live) c.kill();
    },
  };
}
