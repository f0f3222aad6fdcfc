/**
 * `seqlab bench cpu --quick` end to end: tiny Mamba, Mamba-2 and Llama models written with
 * seeded weights, exported to GGUF, run by seqlab's cpu backend and by llama.cpp
 * (node-llama-cpp's prebuilt CPU binary) interleaved; the JSON carries every measurement with
 * its ratio, and both engines agree on the greedy tokens.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { spawnSync } from "node:child_process";
import { createRequire } from "node:module";
import { ROOT } from "./helpers.js";

const hasNodeLlamaCpp = (() => {
  try {
    createRequire(import.meta.url).resolve("node-llama-cpp");
    return true;
  } catch {
    return false;
  }
})();

test("seqlab bench cpu --quick: tiny models through seqlab and llama.cpp, JSON with ratios, same greedy tokens", { skip: hasNodeLlamaCpp ? false : "node-llama-cpp is not installed", timeout: 120_000 }, () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "seqlab-bench-cpu-"));
  const out = path.join(tmp, "result.json");
  const t0 = performance.now();
  const r = spawnSync(process.execPath, [path.join(ROOT, "bin/seqlab.mjs"), "bench", "cpu", "--quick", "--threads", "2", "--cache", path.join(tmp, "models"), "--out", out], {
    encoding: "utf8",
    timeout: 110_000,
  });
  const seconds = (performance.now() - t0) / 1e3;
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /ratio/);
  const j = JSON.parse(fs.readFileSync(out, "utf8"));
  assert.equal(j.schema, "seqlab-bench-cpu/1");
  assert.equal(j.threads, 2);
  assert.ok(j.machine.cores >= 1 && j.machine.load_average_start.length === 3);
  assert.match(j.versions.node_llama_cpp, /^3\.21\.1$/);
  assert.ok(j.matmul.peak_gflop_s > 0 && j.matmul.cases.length === 3);
  for (const c of j.matmul.cases) assert.ok(c.gflop_s > 0 && c.fraction_of_peak > 0, c.name);
  for (const model of ["mamba", "mamba2", "llama"]) {
    for (const weights of ["f32", "f16"]) {
      const lines = j.results.filter((l: { model: string; weights: string }) => l.model === model && l.weights === weights);
      assert.deepEqual(
        lines.map((l: { metric: string; tokens: number }) => `${l.metric} ${l.tokens}`).sort(),
        ["decode 64", "decode 8", "prefill 16", "prefill 64"],
        `${model} ${weights}`,
      );
      for (const l of lines) {
        assert.ok(l.seqlab.tok_s > 0 && l.llama_cpp.tok_s > 0, `${model} ${weights} ${l.metric}`);
        assert.ok(Math.abs(l.ratio - l.seqlab.tok_s / l.llama_cpp.tok_s) < 1e-9 * l.ratio);
      }
    }
  }
  for (const g of j.greedy) assert.ok(g.match, `${g.model} ${g.weights} after ${g.prompt_tokens}: seqlab ${g.seqlab} vs llama.cpp ${g.llama_cpp}`);
  assert.equal(j.greedy.length, 3 * 2 * 2);
  fs.rmSync(tmp, { recursive: true, force: true });
  console.log(`bench cpu --quick took ${seconds.toFixed(1)} s`);
});

test("seqlab bench cpu refuses unknown models and types with one line", () => {
  for (const [flag, value, want] of [
    ["--models", "mamba,gpt9", 'seqlab: bench cpu: --models takes a comma-separated list of mamba, mamba2, llama, got "gpt9"'],
    ["--types", "q4", 'seqlab: bench cpu: --types takes a comma-separated list of f32, f16, got "q4"'],
  ]) {
    const r = spawnSync(process.execPath, [path.join(ROOT, "bin/seqlab.mjs"), "bench", "cpu", flag, value], { encoding: "utf8" });
    assert.equal(r.status, 2);
    assert.equal(r.stderr.trim(), want);
  }
});

test("seqlab bench gpu refuses --variant-names without --variants, or an empty list, with one line", () => {
  for (const [args, want] of [
    [["--variant-names", "lookback"], "seqlab: bench gpu: --variant-names only filters --variants: give both"],
    [["--variants", "--variant-names", " , "], "seqlab: bench gpu: --variant-names takes a comma-separated list of plan names (e.g. lookback,CH64)"],
  ] as const) {
    const r = spawnSync(process.execPath, [path.join(ROOT, "bin/seqlab.mjs"), "bench", "gpu", ...args], { encoding: "utf8" });
    assert.equal(r.status, 2);
    assert.equal(r.stderr.trim(), want);
  }
});
