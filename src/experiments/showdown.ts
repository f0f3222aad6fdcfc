/**
 * `seqlab showdown`: every trade-off of DESIGN.md's claims measured on this machine, in one run.
 * (a) forward time and peak memory against T; (b) decode cost and state bytes against position;
 * (c) recall: selective copying with and without selection, passkey by length x depth, MQAR by
 * state size. Results go to results.json and a self-contained report.html.
 */
import * as os from "node:os";
import type { Backend } from "../backend/backend.js";
import type { TaskSpec } from "../tasks/registry.js";
import { runScaling } from "./scaling.js";
import { runDecode } from "./decode.js";
import { runRecall, type RecallPlan } from "./recall.js";
import { judgeClaims } from "./claims.js";
import { PLANS, type ShowdownPlan } from "./plan.js";
import { archConfig, buildArch, matchedArchs, type Arch } from "./zoo.js";
import { UNITS, type RecallRun, type ShowdownResults } from "./results.js";
import type { ScalingSeries } from "./scaling.js";
import type { DecodeSeries } from "./decode.js";

export type Section = "scaling" | "decode" | "recall";
export const SECTIONS: Section[] = ["scaling", "decode", "recall"];

export interface ShowdownOptions {
  mode: "quick" | "default";
  seed: number;
  sections: Section[];
  /** the scaling section's memory budget (default: the plan's, for host or GPU memory by backend) */
  memoryBudgetBytes?: number;
  versions: Record<string, string>;
  log: (line: string) => void;
  /**
   * Runs the recall section's trainings elsewhere, `jobs` at a time (the cli's child processes,
   * each a one-thread cpu backend): plan `index` of recallPlansFor(mode, seed). Absent, they run
   * here one after another on `be`.
   */
  recallJobs?: RecallJobs;
}

/** Where recall trainings run when not in this process: see ShowdownOptions.recallJobs. */
export interface RecallJobs {
  jobs: number;
  /** what the log says about where the trainings run */
  describe: string;
  run(index: number): Promise<RecallRun>;
  /** stops whatever still runs (after a failure) */
  dispose(): void;
}

/** The recall section's trainings, in the order they run and report. */
export function recallPlansFor(be: Backend, mode: ShowdownOptions["mode"], seed: number): RecallPlan[] {
  const p = PLANS[mode];
  return recallPlans(p, seed, matchedArchs(be, p.model));
}

function recallPlans(p: ShowdownPlan, seed: number, ARCHS: Record<string, Arch>): RecallPlan[] {
  const plans: RecallPlan[] = [];
  const sc = p.selectiveCopy;
  const copy = (length: number): TaskSpec => ({ name: "selective-copy", length, count: sc.count, seed });
  for (const id of ["mamba", "mamba-lti"]) {
    plans.push({ arch: ARCHS[id], model: p.model, train: [copy(sc.length)], steps: sc.steps, batch: sc.batch, lr: sc.lr, evals: { [`L${sc.length}`]: copy(sc.length) }, evalExamples: p.evalExamples });
  }
  const pk = p.passkey;
  const passkeyEvals: Record<string, TaskSpec> = {};
  for (const L of pk.evalLengths) for (const d of pk.depths) passkeyEvals[`L${L}_d${d}`] = { name: "passkey", length: L, depth: d, seed };
  const pkTrain = pk.trainLengths.map((length): TaskSpec => ({ name: "passkey", length, seed }));
  const passkeyRun = (id: string, state?: number): RecallPlan => ({
    arch: ARCHS[id],
    variant: state ? `state ${state}` : undefined,
    model: { ...p.model, state: state ?? p.model.state },
    train: pkTrain,
    steps: pk.steps,
    batch: pk.batch,
    lr: pk.lr,
    evals: passkeyEvals,
    evalExamples: p.evalExamples,
  });
  plans.push(passkeyRun("transformer"), passkeyRun("mamba"), passkeyRun("mamba", pk.smallState), passkeyRun("mamba2"), passkeyRun("rwkv"), passkeyRun("hybrid"));
  const mq = p.mqar;
  const mqar: TaskSpec = { name: "mqar", length: mq.length, pairs: mq.pairs, alphabet: mq.alphabet, seed };
  for (const state of mq.states) {
    plans.push({ arch: ARCHS.mamba, variant: `state ${state}`, model: { ...p.model, state }, train: [mqar], steps: mq.steps, batch: mq.batch, lr: mq.lr, evals: { [`L${mq.length}`]: mqar }, evalExamples: p.evalExamples });
  }
  plans.push({ arch: ARCHS.transformer, model: p.model, train: [mqar], steps: mq.steps, batch: mq.batch, lr: mq.lr, evals: { [`L${mq.length}`]: mqar }, evalExamples: p.evalExamples });
  // the hybrid's Mamba layers get the smallest state: its attention layer is what must recover
  const small = Math.min(...mq.states);
  plans.push({ arch: ARCHS.hybrid, variant: `state ${small}`, model: { ...p.model, state: small }, train: [mqar], steps: mq.steps, batch: mq.batch, lr: mq.lr, evals: { [`L${mq.length}`]: mqar }, evalExamples: p.evalExamples });
  return plans;
}

/**
 * Every recall training, in plan order. With recallJobs they run `jobs` at a time elsewhere, on one
 * thread each: the same models, data and steps, and the cpu kernels give the same bits on any
 * number of threads, so the same results, only sooner on a machine with cores to spare, since
 * these small models gain little from a second thread each.
 */
async function runRecallSection(be: Backend, plans: RecallPlan[], o: ShowdownOptions): Promise<RecallRun[]> {
  const jobs = o.recallJobs;
  o.log(`(c) recall: selective copying, passkey, MQAR; ${recallWhere(be, o)}`);
  const done = (run: RecallRun) => {
    o.log(`recall ${run.task} ${run.arch}${run.variant ? ` (${run.variant})` : ""}: ${Object.entries(run.accuracy).map(([k, v]) => `${k} ${(100 * v).toFixed(0)}%`).join(" ")}`);
    return run;
  };
  if (!jobs) {
    const runs: RecallRun[] = [];
    for (const plan of plans) runs.push(done(await runRecall(be, plan, o.seed, o.log)));
    return runs;
  }
  const runs: RecallRun[] = new Array(plans.length);
  let next = 0;
  const lane = async () => {
    while (next < plans.length) {
      const i = next++;
      runs[i] = done(await jobs.run(i));
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.min(jobs.jobs, plans.length) }, lane));
  } finally {
    jobs.dispose();
  }
  return runs;
}

/** Where the recall trainings run, as the log and results.json say it. */
function recallWhere(be: Backend, o: ShowdownOptions): string {
  return o.recallJobs?.describe ?? `one training at a time on ${be.describe()}`;
}

export async function runShowdown(be: Backend, o: ShowdownOptions): Promise<ShowdownResults> {
  const t0 = performance.now();
  const p = PLANS[o.mode];
  const log = o.log;
  const ARCHS = matchedArchs(be, p.model);
  const memoryBudget = o.memoryBudgetBytes ?? (be.name === "webgpu" ? p.scaling.gpuMemoryBudgetBytes : p.scaling.memoryBudgetBytes);
  let scaling: ScalingSeries[] = [];
  let decode: DecodeSeries[] = [];
  const recall: RecallRun[] = [];
  if (o.sections.includes("scaling")) {
    log(`(a) forward time and peak memory against T, backend ${be.describe()}`);
    const archs = ["attention-naive", "attention-tiled", "mamba", "mamba2", "rwkv", "hybrid"].map((id) => ARCHS[id]);
    scaling = await runScaling(be, archs, { ...p.scaling, memoryBudgetBytes: memoryBudget, model: p.model, seed: o.seed, log });
  }
  if (o.sections.includes("decode")) {
    be.releaseCached?.();
    log(`(b) per-token decode cost and state bytes against position`);
    const archs = ["transformer", "mamba", "mamba2", "rwkv", "hybrid"].map((id) => ARCHS[id]);
    decode = await runDecode(be, archs, { ...p.decode, model: p.model, seed: o.seed, log });
  }
  if (o.sections.includes("recall")) {
    be.releaseCached?.();
    recall.push(...(await runRecallSection(be, recallPlans(p, o.seed, ARCHS), o)));
  }
  const ids = [...new Set(["attention-naive", "attention-tiled", "transformer", "mamba", "mamba-lti", "mamba2", "rwkv", "hybrid"])];
  const architectures = ids.map((id) => {
    const model = buildArch(be, ARCHS[id], p.model, o.seed);
    const params = model.parameterCount();
    for (const t of model.parameters()) t.dispose();
    return { id, label: ARCHS[id].label, params, config: archConfig(ARCHS[id], p.model) };
  });
  const cpus = os.cpus();
  return {
    schema: "seqlab-showdown/1",
    createdAt: new Date().toISOString(),
    mode: o.mode,
    machine: { cpu: cpus[0]?.model ?? "unknown", cores: cpus.length, memoryBytes: os.totalmem(), platform: `${os.platform()} ${os.arch()}`, node: process.version },
    backend: be.describe(),
    seed: o.seed,
    versions: o.versions,
    settings: { plan: p, sections: o.sections, memoryBudgetBytes: memoryBudget, recall: recallWhere(be, o) },
    units: UNITS,
    architectures,
    scaling,
    decode,
    recall,
    claims: judgeClaims({ scaling, decode, recall }),
    elapsedSeconds: (performance.now() - t0) / 1000,
  };
}
