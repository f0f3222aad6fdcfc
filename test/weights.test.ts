/**
 * Checkpoint weights: sharded safetensors with an index, F16/BF16 weights kept in half precision
 * (and computed in f32) against their float32 twin, conversions between precisions, the memory
 * budget, the half-weight kernels against their f32 meaning, and bad input.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { spawnSync } from "node:child_process";
import { loadModel } from "../src/models/load.js";
import { CheckpointWeights } from "../src/io/weights.js";
import { SafetensorsFile } from "../src/io/safetensors.js";
import { HALF_TOLERANCE, runChecks, relativeError } from "../src/cli/verify.js";
import { RefBackend } from "../src/backend/ref/index.js";
import { refKernels } from "../src/backend/ref/index.js";
import { fromArray, toFloat32 } from "../src/backend/alloc.js";
import { tidy } from "../src/tensor/scope.js";
import { backward, noGrad } from "../src/autograd/tape.js";
import * as ops from "../src/ops/index.js";
import { train } from "../src/train/trainer.js";
import { InductionTask } from "../src/tasks/induction.js";
import { decodeHalf, f32ToBf16, f32ToF16 } from "../src/util/half.js";
import { Rng } from "../src/util/rng.js";
import { SeqlabError } from "../src/util/errors.js";
import { ref32, ROOT, VARIANT_FIXTURES } from "./helpers.js";
import { writeSharded } from "./support/checkpoints.js";

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "seqlab-weights-"));
const LLAMA = path.join(VARIANT_FIXTURES, "llama_rope_linear");
const GPT2 = path.join(VARIANT_FIXTURES, "gpt2_variant");

function sharded(src: string, name: string, dtype: "F32" | "F16" | "BF16", shards = 3): string {
  const d = path.join(tmp, name);
  if (!fs.existsSync(d)) writeSharded(src, d, { shards, dtype, copy: ["reference.safetensors"] });
  return d;
}

async function logitsOf(dir: string, dtype: "f32" | "auto"): Promise<{ logits: Float32Array; shapes: string[] }> {
  const model = loadModel(dir, ref32, { dtype });
  const ref = SafetensorsFile.open(path.join(dir, "reference.safetensors"));
  const [B, T] = ref.info("input_ids").shape;
  const ids = ref.read("input_ids");
  ref.close();
  const logits = await noGrad(() => tidy(() => model.forward(model.tokens(ids, B, T)).logits));
  const out = await toFloat32(logits);
  logits.dispose();
  return { logits: out, shapes: model.namedParameters().map(([n, t]) => `${n} ${t.shape}`) };
}

for (const [src, label] of [
  [LLAMA, "llama"],
  [GPT2, "gpt2"],
] as const) {
  for (const dtype of ["F16", "BF16"] as const) {
    test(`${label}: a sharded ${dtype} checkpoint verifies against its float32 twin with half-weight tolerances`, async () => {
      const dir = sharded(src, `${label}-${dtype}`, dtype);
      const model = loadModel(dir, ref32, { dtype: "auto" });
      const half = dtype.toLowerCase() as "f16" | "bf16";
      const kinds = new Set(model.namedParameters().map(([, t]) => `${t.rank >= 2 ? "matrix" : "vector"} ${t.dtype}`));
      assert.deepEqual([...kinds].sort(), [`matrix ${half}`, "vector f32"]);
      assert.ok(model.parameters().every((p) => p.requiresGrad === (p.dtype === "f32")), "half weights are frozen");
      const ref = SafetensorsFile.open(path.join(dir, "reference.safetensors"));
      const checks = await runChecks(model, ref, HALF_TOLERANCE[half]);
      ref.close();
      const logits = checks.find((c) => c.name === "logits")!;
      assert.ok(logits.ok, `logits rel err ${logits.error}`);
      assert.ok(logits.error > 1e-5, "the weights really are rounded");
      for (const c of checks.filter((c) => c.name.startsWith("hidden") || c.name === "loss")) assert.ok(c.ok, `${c.name}: ${c.error}`);
      assert.ok(checks.some((c) => c.name === "grad.*" && c.note === "half-precision weights are inference-only"));
      if (half === "f16") assert.ok(checks.find((c) => c.name.startsWith("generate"))!.ok, "f16 greedy generation matches");
      // and against the float32 twin loaded from the original file: same shapes, close logits
      const twin = await logitsOf(src, "f32");
      const mine = await logitsOf(dir, "auto");
      assert.deepEqual(mine.shapes, twin.shapes);
      assert.ok(relativeError(mine.logits, twin.logits) < HALF_TOLERANCE[half].logits);
    });
  }
}

test("half weights take half the memory, and --dtype converts in either direction", () => {
  const f16 = sharded(LLAMA, "llama-F16", "F16");
  const bytesWith = (dir: string, dtype: "f32" | "f16" | "bf16" | "auto") => {
    const be = new RefBackend();
    const m = loadModel(dir, be, { dtype });
    return { bytes: be.memory().bytesInUse, dtypes: new Set(m.parameters().map((p) => p.dtype)) };
  };
  const full = bytesWith(LLAMA, "f32");
  const half = bytesWith(f16, "auto");
  assert.ok(half.bytes < 0.6 * full.bytes, `${half.bytes} vs ${full.bytes}`);
  assert.deepEqual([...bytesWith(f16, "f32").dtypes], ["f32"]);
  assert.deepEqual([...bytesWith(LLAMA, "bf16").dtypes].sort(), ["bf16", "f32"]);
  assert.deepEqual([...bytesWith(LLAMA, "auto").dtypes], ["f32"], "auto keeps what is stored");
  const w = CheckpointWeights.open(f16);
  assert.equal(w.storedWeightDtype(), "f16");
  assert.equal(w.memoryBytes("f16"), half.bytes - bytesOfBuffers(f16));
  w.close();
});

/** Bytes a loaded model holds besides its parameters (rotary frequency buffers). */
function bytesOfBuffers(dir: string): number {
  const be = new RefBackend();
  const m = loadModel(dir, be, { dtype: "auto" });
  return be.memory().bytesInUse - m.parameters().reduce((n, p) => n + p.bytes, 0);
}

test("the memory budget is checked from the headers, before anything is allocated", () => {
  const be = new RefBackend();
  const dir = sharded(LLAMA, "llama-F32", "F32");
  assert.throws(
    () => loadModel(dir, be, { dtype: "f32", memoryBudget: 80_000 }),
    (e) => e instanceof SeqlabError && /llama-F32: the weights need 1\d\d\.\d KiB as f32 \(1\d\d\.\d KiB on disk\), more than the memory budget of 78\.1 KiB \(--memory-budget\); --dtype bf16 or f16 would fit$/.test(e.message),
  );
  assert.equal(be.memory().allocations, 0);
  assert.doesNotThrow(() => loadModel(dir, be, { dtype: "bf16", memoryBudget: 100_000 }));
});

test("bad shards and indexes are named with their problem", () => {
  const base = sharded(LLAMA, "llama-F16", "F16");
  const variant = (name: string, edit: (d: string) => void) => {
    const d = path.join(tmp, name);
    fs.cpSync(base, d, { recursive: true });
    edit(d);
    return d;
  };
  const index = (d: string) => path.join(d, "model.safetensors.index.json");
  const editIndex = (d: string, f: (j: { weight_map: Record<string, string> }) => unknown) => {
    const j = JSON.parse(fs.readFileSync(index(d), "utf8"));
    fs.writeFileSync(index(d), JSON.stringify(f(j) ?? j));
  };
  const err = (d: string, re: RegExp) => assert.throws(() => loadModel(d, ref32), (e) => e instanceof SeqlabError && re.test(e.message) && !e.message.includes("\n"));
  err(variant("bad-json", (d) => fs.writeFileSync(index(d), "{ weight_map: ")), /bad-json\/model\.safetensors\.index\.json: not valid JSON/);
  err(variant("no-map", (d) => editIndex(d, () => ({ metadata: {} }))), /no-map\/model\.safetensors\.index\.json: "weight_map" is missing or not an object/);
  err(variant("no-shard", (d) => fs.rmSync(path.join(d, "model-00002-of-00003.safetensors"))), /no-shard\/model-00002-of-00003\.safetensors: missing shard \(model\.safetensors\.index\.json lists \d+ tensors in it, e\.g\. "[\w.]+"\)/);
  err(
    variant("absent", (d) => editIndex(d, (j) => void (j.weight_map["model.norm.weight"] = "model-00001-of-00003.safetensors"))),
    /absent\/model\.safetensors\.index\.json: tensor "model\.norm\.weight" is listed in shard model-00001-of-00003\.safetensors, which does not contain it/,
  );
  err(
    variant("escape", (d) => editIndex(d, (j) => void (j.weight_map["model.norm.weight"] = "../../etc/passwd"))),
    /tensor "model\.norm\.weight" maps to "\.\.\/\.\.\/etc\/passwd", not a file name inside the model directory/,
  );
  err(
    variant("unlisted", (d) => editIndex(d, (j) => void delete j.weight_map["lm_head.weight"])),
    /unlisted\/model\.safetensors\.index\.json: tensor "lm_head\.weight" is missing/,
  );
  err(
    variant("truncated", (d) => fs.truncateSync(path.join(d, "model-00003-of-00003.safetensors"), 500)),
    /truncated\/model-00003-of-00003\.safetensors: truncated: header says \d+ bytes/,
  );
  const none = path.join(tmp, "no-weights");
  fs.mkdirSync(none, { recursive: true });
  fs.copyFileSync(path.join(LLAMA, "config.json"), path.join(none, "config.json"));
  err(none, /no-weights\/model\.safetensors: no such file \(the model's weights; no model\.safetensors\.index\.json either\)/);
});

test("training half-precision weights is refused with a clear message", async () => {
  const model = loadModel(sharded(LLAMA, "llama-F16", "F16"), ref32, { dtype: "auto" });
  await assert.rejects(
    train(model, new InductionTask(8, 1, 16), { steps: 1, batch: 1, lr: 1e-3 }),
    (e) => e instanceof SeqlabError && /parameter "model\.embed_tokens\.weight" is stored as f16: half-precision weights are inference-only \(load the model with --dtype f32 to train it\)/.test(e.message),
  );
});

test("half-weight kernels compute exactly what the decoded f32 weights give", () => {
  const rng = new Rng(3);
  const [M, N, K] = [5, 7, 33];
  const a = Float32Array.from({ length: M * K }, () => rng.normal());
  const w = Float32Array.from({ length: N * K }, () => rng.normal());
  for (const [dtype, enc] of [
    ["f16", f32ToF16],
    ["bf16", f32ToBf16],
  ] as const) {
    const bits = Uint16Array.from(w, (v) => enc(v));
    const decoded = decodeHalf(bits, dtype);
    for (const transB of [true, false]) {
      const want = new Float32Array(M * N);
      const got = new Float32Array(M * N);
      const d = { M, N, K, transA: false, transB, accumulate: false };
      refKernels.matmul(want, a, decoded, d);
      refKernels.matmul(got, a, bits, { ...d, bDtype: dtype });
      assert.deepEqual(got, want, `${dtype} transB=${transB}`);
    }
    const ids = Int32Array.from([3, 0, 6, 3]);
    const want = new Float32Array(4 * K);
    const got = new Float32Array(4 * K);
    refKernels.embeddingForward(want, ids, decoded, 4, K);
    refKernels.embeddingForward(got, ids, bits, 4, K, dtype);
    assert.deepEqual(got, want);
    // gradients flow to the input through a frozen half weight
    const W16 = fromArray(ref32, bits, [N, K], dtype);
    const W32 = fromArray(ref32, decoded, [N, K]);
    const grads = [W16, W32].map((W) =>
      tidy(() => {
        const x = fromArray(ref32, a, [M, K]);
        x.requiresGrad = true;
        backward(ops.linear(x, W));
        return Float32Array.from(x.grad!.handle as Float32Array);
      }),
    );
    assert.deepEqual(grads[0], grads[1]);
  }
});

const BIN = path.join(ROOT, "bin/seqlab.mjs");
const seqlab = (...args: string[]) => spawnSync(process.execPath, [BIN, ...args], { encoding: "utf8" });

test("seqlab verify --dtype auto passes on a sharded f16 checkpoint; bad --dtype and --memory-budget are one line", () => {
  const dir = sharded(LLAMA, "llama-F16", "F16");
  const r = seqlab("verify", dir, "--dtype", "auto");
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /^logits\s+rel\s+\S+\s+tol 1e-3\s+ok$/m);
  assert.match(r.stdout, /verify: PASS/);
  const one = (args: string[], re: RegExp) => {
    const e = seqlab(...args);
    assert.equal(e.status, 2);
    assert.equal(e.stderr.trim().split("\n").length, 1, e.stderr);
    assert.match(e.stderr, re);
  };
  one(["verify", dir, "--dtype", "fp8"], /^seqlab: verify: --dtype must be one of f32, f16, bf16, auto, got "fp8"$/m);
  one(["verify", dir, "--memory-budget", "lots"], /verify: --memory-budget must be a size such as 8GiB, 512MB or 1073741824 \(bytes\), got "lots"/);
  one(["verify", dir, "--memory-budget", "1KiB"], /the weights need .* as f32 .* more than the memory budget of 1\.00 KiB \(--memory-budget\)/);
});
