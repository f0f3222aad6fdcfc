/**
 * `seqlab showdown --quick` end to end, as CI runs it: every section measured, every claim judged
 * from numbers that are present and consistent with each other, results.json and a self-contained
 * report.html written (and nothing else), and bad flags answered with one line.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { ROOT } from "./helpers.js";
import type { ShowdownResults } from "../src/experiments/results.js";
import { PLANS } from "../src/experiments/plan.js";

const BIN = path.join(ROOT, "bin/seqlab.mjs");
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "seqlab-showdown-"));

function seqlab(...args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: "utf8", cwd: tmp });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

test("showdown --quick measures every section and judges every claim from its numbers", () => {
  const out = path.join(tmp, "quick");
  const r = seqlab("showdown", "--quick", "--out", out);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /on backend cpu \(wasm simd128/, "the backend in use is printed");
  assert.deepEqual(fs.readdirSync(out).sort(), ["report.html", "results.json"]);
  const res = JSON.parse(fs.readFileSync(path.join(out, "results.json"), "utf8")) as ShowdownResults;
  assert.equal(res.mode, "quick");
  assert.match(res.backend, /^cpu/);

  // (a) every architecture timed at several lengths; naive attention stops at the memory budget
  const plan = PLANS.quick;
  const ids = res.scaling.map((s) => s.arch);
  for (const id of ["attention-naive", "attention-tiled", "mamba", "mamba2", "rwkv", "hybrid"]) assert.ok(ids.includes(id), id);
  for (const s of res.scaling) {
    assert.ok(s.points.length >= 3, `${s.arch}: ${s.points.length} lengths`);
    for (const p of s.points) assert.ok(p.seconds > 0 && p.peakBytes > 0, `${s.arch} at ${p.T}`);
    assert.ok(Number.isFinite(s.timeSlope) && Number.isFinite(s.memorySlope), s.arch);
    assert.ok(s.fixedCostShare > 0 && s.fixedCostShare <= 1, `${s.arch}: fixed cost share ${s.fixedCostShare}`);
    assert.ok(s.points.at(-1)!.T <= Math.max(plan.scaling.maxLength, plan.scaling.lengths.at(-1)!), s.arch);
  }
  assert.equal(res.settings.memoryBudgetBytes, plan.scaling.memoryBudgetBytes, "the cpu budget");
  const naive = res.scaling.find((s) => s.arch === "attention-naive")!;
  const tiled = res.scaling.find((s) => s.arch === "attention-tiled")!;
  for (const p of naive.points) assert.ok(p.peakBytes <= plan.scaling.memoryBudgetBytes);
  // materialised probabilities are B*H*T^2 floats: the naive peak must at least hold them
  const last = naive.points.at(-1)!;
  assert.ok(last.peakBytes >= last.T * last.T * 4, `naive peak ${last.peakBytes} at T ${last.T}`);
  assert.ok(tiled.points.at(-1)!.T >= last.T);

  // (b) KV cache grows with position; recurrent state does not
  const tf = res.decode.find((d) => d.arch === "transformer")!;
  assert.ok(tf.points.at(-1)!.kvCacheBytes > tf.points[0].kvCacheBytes);
  for (const d of res.decode.filter((x) => ["mamba", "mamba2", "rwkv"].includes(x.arch))) {
    assert.equal(d.points[0].kvCacheBytes, 0, d.arch);
    assert.equal(d.points.at(-1)!.recurrentBytes, d.points[0].recurrentBytes, d.arch);
  }
  assert.deepEqual(tf.points.map((p) => p.position), plan.decode.positions);

  // (c) every recall run evaluated on held-out examples
  const tasks = new Set(res.recall.map((x) => x.task));
  for (const t of ["selective-copy", "passkey", "mqar"]) assert.ok(tasks.has(t), t);
  for (const x of res.recall) {
    assert.ok(Number.isFinite(x.finalLoss), `${x.arch} ${x.task}`);
    for (const [k, v] of Object.entries(x.accuracy)) assert.ok(v >= 0 && v <= 1, `${x.arch} ${k} ${v}`);
  }

  // every claim has a verdict that rests on stated numbers
  assert.deepEqual(res.claims.map((c) => c.id), [1, 2, 3, 4, 5, 6]);
  for (const c of res.claims) {
    assert.notEqual(c.verdict, "not measured", `claim ${c.id}`);
    assert.ok(c.evidence.length > 0 && c.evidence.every((e) => /\d/.test(e)), `claim ${c.id} evidence`);
  }
  // decoding's claim follows from the numbers checked above
  const html = fs.readFileSync(path.join(out, "report.html"), "utf8");
  for (const c of res.claims) assert.ok(html.includes(c.title.replace(/&/g, "&amp;").slice(0, 40)), `report heading for claim ${c.id}`);
  assert.ok(!/<script[^>]+src=/.test(html) && !/<link[^>]+href="http/.test(html), "the report loads nothing from the network");
  assert.match(html, /new Chart\(|Chart\(/);
  // MQAR against Mamba's state size: one Mamba run per planned state, charted
  const states = res.recall.filter((x) => x.task === "mqar" && x.arch === "mamba").map((x) => x.stateSize);
  assert.deepEqual(states, plan.mqar.states);
  assert.match(html, /<canvas id="mqar-state"/);

  // the recall trainings ran as parallel one-thread jobs where there are cores for them; in this
  // process, one after another on two threads, they learn the same bits
  assert.match(String(res.settings.recall), os.cpus().length > 1 ? /^\d+ trainings at a time, each in its own process/ : /^one training at a time/);
  const seq = seqlab("showdown", "--quick", "--only", "recall", "--recall-jobs", "1", "--out", path.join(tmp, "sequential"));
  assert.equal(seq.code, 0, seq.stderr);
  const one = JSON.parse(fs.readFileSync(path.join(tmp, "sequential", "results.json"), "utf8")) as ShowdownResults;
  assert.match(String(one.settings.recall), /^one training at a time on cpu/);
  assert.equal(one.recall.length, res.recall.length);
  one.recall.forEach((x, i) => {
    const y = res.recall[i];
    assert.deepEqual([x.task, x.arch, x.variant], [y.task, y.arch, y.variant]);
    assert.deepEqual(x.accuracy, y.accuracy, `${x.task} ${x.arch} ${x.variant ?? ""}`);
    assert.equal(x.finalLoss, y.finalLoss, `${x.task} ${x.arch} ${x.variant ?? ""}: final loss`);
  });
});

test("showdown --memory-budget bounds the scaling section's peak memory", () => {
  const out = path.join(tmp, "budget");
  const r = seqlab("showdown", "--quick", "--only", "scaling", "--memory-budget", "4MiB", "--out", out);
  assert.equal(r.code, 0, r.stderr);
  const res = JSON.parse(fs.readFileSync(path.join(out, "results.json"), "utf8")) as ShowdownResults;
  assert.equal(res.settings.memoryBudgetBytes, 4 * 2 ** 20);
  const naive = res.scaling.find((s) => s.arch === "attention-naive")!;
  for (const p of naive.points) assert.ok(p.peakBytes <= 4 * 2 ** 20, `naive at ${p.T}: ${p.peakBytes}`);
  assert.match(naive.stop, /over the 4\.00 MiB memory budget/);
});

test("showdown answers bad flags with one line and writes nothing", () => {
  const cases: [string[], RegExp][] = [
    [["showdown", "--only", "nonsense"], /--only "nonsense" is not a section/],
    [["showdown", "--seed", "x"], /--seed/],
    [["showdown", "--backend", "nope"], /backend/],
    [["showdown", "--threads", "0"], /--threads/],
    [["showdown", "--memory-budget", "lots"], /--memory-budget must be a size such as 8GiB/],
    [["showdown", "--memory-budget", "0"], /--memory-budget must be a size/],
    [["showdown", "--recall-jobs", "0"], /--recall-jobs must be an integer in \[1, 256\], got "0"/],
    [["showdown", "--backend", "ref", "--recall-jobs", "2"], /--recall-jobs runs trainings in cpu processes; with --backend ref they run one at a time/],
    [["showdown", "--quick", "--recall-worker", "99"], /--recall-worker must be an integer in \[0, 11\], got "99"/],
  ];
  for (const [args, pattern] of cases) {
    const out = path.join(tmp, "bad");
    const r = seqlab(...args, "--out", out);
    assert.notEqual(r.code, 0, args.join(" "));
    const lines = r.stderr.trim().split("\n");
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0], pattern);
    assert.ok(!fs.existsSync(out), `${args.join(" ")} left ${out}`);
  }
  fs.writeFileSync(path.join(tmp, "file"), "x");
  const r = seqlab("showdown", "--quick", "--out", path.join(tmp, "file"));
  assert.notEqual(r.code, 0);
  assert.match(r.stderr.trim(), /exists and is not a directory/);
});
