/**
 * The browser playground end to end: `seqlab serve` serves the built app (dist/web, made by
 * scripts/build.mjs, which the test runner runs first); headless Chromium opens it on WebGPU
 * (SwiftShader) and on the cpu WebAssembly backend; generation runs, the charts fill, and the
 * first tokens equal the Node engine's for the same weights, sampling seed and backend.
 * Screenshots are kept in test-artifacts/.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import type { Page } from "playwright-core";
import { ARTIFACTS, launch, openPlayground, servePlayground, WEBGPU_FLAGS, type Served } from "./support/browser.js";
import { useSwiftShader } from "./webgpu_helpers.js";
import { createBackend } from "../src/backend/registry.js";
import type { Backend } from "../src/backend/backend.js";
import { generate } from "../src/generate/generate.js";
import { loadModel } from "../src/models/load.js";
import { writeSafetensors } from "../src/io/safetensors.js";
import { toArray } from "../src/backend/alloc.js";
import { RefBackend } from "../src/backend/ref/index.js";
import { disposeModel, freshModel, presetConfig } from "../web/src/engine/models.js";
import type { Playground } from "../web/src/main.js";

let served: Served;
before(async () => {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  served = await servePlayground();
});
after(() => served?.stop());

type Win = { seqlab: Playground };

/** Fill the generation form, press Generate, wait for the result (or the error the page shows). */
async function generateOnPage(page: Page, prompt: string, newTokens: number, temperature: number, seed: number): Promise<number[]> {
  await page.fill("#prompt", prompt);
  await page.fill("#new-tokens", String(newTokens));
  await page.fill("#temperature", String(temperature));
  await page.fill("#sample-seed", String(seed));
  const before = await page.evaluate(() => (window as unknown as Win).seqlab.generations.length);
  await page.click("#generate");
  await page.waitForFunction(
    (n) => (window as unknown as Win).seqlab.generations.length > n || document.querySelector("#gen-stats")!.classList.contains("error"),
    before,
    { timeout: 60000 },
  );
  const error = await page.evaluate(() => (document.querySelector("#gen-stats")!.classList.contains("error") ? document.querySelector("#gen-stats")!.textContent : null));
  assert.equal(error, null, `generation failed on the page: ${error}`);
  return page.evaluate(() => {
    const g = (window as unknown as Win).seqlab.generations;
    return g[g.length - 1].tokens;
  });
}

/** Series lengths and values of a live chart, as the page holds them. */
function chartSeries(page: Page, chart: "latency" | "memory" | "loss" | "passkeyLoss") {
  return page.evaluate(
    (c) => (window as unknown as Win).seqlab.charts[c].chart.data.datasets.map((d) => ({ label: String(d.label), points: d.data.map((p) => [p.x, p.y]) })),
    chart,
  );
}

async function nodeTokens(be: Backend, model: Parameters<typeof generate>[0], prompt: number[], newTokens: number, temperature: number, seed: number) {
  const r = await generate(model, prompt, { maxNewTokens: newTokens, temperature, seed });
  return r.tokens;
}

test("WebGPU (SwiftShader): generation with live charts, tokens equal to Node's webgpu backend", { timeout: 150000 }, async () => {
  const t0 = performance.now();
  const { context, close } = await launch(WEBGPU_FLAGS);
  try {
    const { page, errors } = await openPlayground(context, `${served.url}?backend=webgpu&size=tiny&seed=7`);
    const state = await page.evaluate(() => ({ b: (window as unknown as Win).seqlab.backend, e: (window as unknown as Win).seqlab.startupError }));
    assert.equal(state.e, null);
    assert.equal(state.b?.name, "webgpu");
    assert.match(await page.textContent("#backend") ?? "", /WebGPU · adapter: .*swiftshader/i);
    assert.match(await page.textContent("#model-info") ?? "", /Transformer, tiny .* 2× attention, width 32, vocabulary 256/);

    const canvasBefore = await page.evaluate(() => (document.getElementById("latency-chart") as HTMLCanvasElement).toDataURL());
    const prompt = [5, 17, 42, 99, 3];
    const N = 12;
    const tokens = await generateOnPage(page, prompt.join(" "), N, 1, 3);
    assert.equal(tokens.length, prompt.length + N);

    const latency = await chartSeries(page, "latency");
    assert.deepEqual(latency.map((s) => s.label), ["Transformer, tiny (C=32)", ""], "a running-median line and the raw per-token dots");
    for (const s of latency) {
      assert.deepEqual(s.points.map((p) => p[0]), Array.from({ length: N }, (_, i) => prompt.length + i + 1), "one latency point per token, at its position");
      assert.ok(s.points.every((p) => p[1] > 0));
    }
    const memory = await chartSeries(page, "memory");
    assert.deepEqual(memory.map((s) => s.label), ["Transformer, tiny (C=32): KV cache"], "a Transformer has a KV cache and no recurrent state");
    const kv = memory[0].points.map((p) => p[1]);
    assert.equal(kv.length, N + 1, "prefill and every token");
    for (let i = 1; i < kv.length; i++) assert.equal(kv[i] - kv[i - 1], kv[1] - kv[0], "the KV cache grows by the same bytes every token");
    assert.equal(kv[0] / prompt.length, kv[1] - kv[0]);
    await page.waitForFunction((before) => (document.getElementById("latency-chart") as HTMLCanvasElement).toDataURL() !== before, canvasBefore, { timeout: 5000 });
    await page.screenshot({ path: path.join(ARTIFACTS, "web-webgpu.png"), fullPage: true });
    assert.deepEqual(errors, []);

    useSwiftShader();
    const be = await createBackend("webgpu");
    const model = freshModel(be, "transformer", "tiny", 256, 7);
    assert.deepEqual(tokens, await nodeTokens(be, model, prompt, N, 1, 3), "the page's tokens are the Node engine's");
    disposeModel(model);
    console.log(`# web webgpu: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  } finally {
    await close();
  }
});

/** A tiny hybrid (attention + Mamba + MoE) checkpoint as `save_pretrained` lays it out. */
async function writeCheckpoint(dir: string): Promise<void> {
  fs.mkdirSync(dir, { recursive: true });
  const config = presetConfig("hybrid", "tiny", 256);
  const model = freshModel(new RefBackend(), "hybrid", "tiny", 256, 11);
  const tensors = [];
  for (const [name, t] of model.namedParameters()) tensors.push({ name, dtype: "F32" as const, shape: t.shape, data: Float32Array.from(await toArray(t)) });
  writeSafetensors(path.join(dir, "model.safetensors"), tensors, { format: "pt" });
  fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify(config, null, 2));
}

test("cpu (WebAssembly, 2 workers): a checkpoint from local files, generation equal to Node's cpu backend, training and passkey", { timeout: 150000 }, async () => {
  const t0 = performance.now();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "seqlab-web-ckpt-"));
  await writeCheckpoint(dir);
  const { context, close } = await launch([]);
  try {
    const { page, errors } = await openPlayground(context, `${served.url}?backend=cpu&threads=2&size=tiny`);
    const state = await page.evaluate(() => ({ b: (window as unknown as Win).seqlab.backend, e: (window as unknown as Win).seqlab.startupError }));
    assert.equal(state.e, null);
    assert.equal(state.b?.name, "cpu");
    assert.equal(state.b?.threads, 2);
    assert.match(await page.textContent("#backend") ?? "", /cpu · WebAssembly SIMD · 2 threads \(forced by \?backend=cpu\)/);

    await page.setInputFiles("#files", [path.join(dir, "config.json"), path.join(dir, "model.safetensors")]);
    await page.waitForFunction(() => /model\.safetensors \(seqlab\)/.test(document.getElementById("model-info")!.textContent!), null, { timeout: 30000 });
    assert.match(await page.textContent("#model-info") ?? "", /3× mamba \+ 1× attention/);

    const prompt = [72, 101, 108, 108, 111];
    const N = 10;
    const tokens = await generateOnPage(page, "Hello", N, 0, 0);
    assert.deepEqual(tokens.slice(0, prompt.length), prompt, "text prompts are UTF-8 bytes");
    const memory = await chartSeries(page, "memory");
    assert.deepEqual(memory.map((s) => s.label.replace(/^.*: /, "")), ["KV cache", "recurrent"]);
    const recurrent = memory[1].points.map((p) => p[1]);
    assert.equal(recurrent.length, N + 1);
    assert.ok(recurrent.every((b) => b === recurrent[0] && b > 0), "the recurrent state keeps its size");
    const kv = memory[0].points.map((p) => p[1]);
    assert.ok(kv[kv.length - 1] > kv[0], "the one attention layer's cache grows");

    // training: a few steps on passkey, the loss curve gets a point per step
    await page.fill("#train-length", "32");
    await page.fill("#train-steps", "3");
    await page.fill("#train-batch", "2");
    await page.click("#train");
    await page.waitForFunction(() => /^(done|stopped)|error/.test(document.getElementById("train-stats")!.textContent!) || document.getElementById("train-stats")!.classList.contains("error"), null, { timeout: 60000 });
    assert.match(await page.textContent("#train-stats") ?? "", /^done: 3 steps, final loss \d/);
    const loss = await chartSeries(page, "loss");
    assert.deepEqual(loss[0].points.map((p) => p[0]), [1, 2, 3]);
    assert.ok(loss[0].points.every((p) => Number.isFinite(p[1]) && p[1] > 0));

    // passkey: two architectures trained briefly, scored at another length and depth
    await page.check('#pk-archs input[value="transformer"]');
    await page.check('#pk-archs input[value="mamba"]');
    await page.selectOption("#pk-size", "tiny");
    for (const [id, v] of [["pk-train-length", "32"], ["pk-steps", "2"], ["pk-batch", "2"], ["pk-length", "48"], ["pk-trials", "2"]]) await page.fill(`#${id}`, v);
    await page.click("#passkey");
    await page.waitForFunction(() => /^(done|stopped)/.test(document.getElementById("pk-status")!.textContent!) || document.getElementById("pk-status")!.classList.contains("error"), null, { timeout: 60000 });
    assert.match(await page.textContent("#pk-status") ?? "", /^done: 2 models scored at context length 48, depth 0.25/);
    const rows = await page.$$eval("#pk-table tbody tr", (trs) => trs.map((tr) => Array.from(tr.querySelectorAll("td"), (td) => td.textContent)));
    assert.deepEqual(rows.map((r) => r[0]), ["Transformer", "Mamba"]);
    for (const r of rows) {
      assert.match(r[1]!, /^\d{5}$/, "the key");
      assert.match(r[2]!, /^[\d·]{5}$/, "the model's answer (a dot for a non-digit)");
      assert.match(r[3]!, /^\d+% \(\d\/2\)$/);
    }
    const pkLoss = await chartSeries(page, "passkeyLoss");
    assert.deepEqual(pkLoss.map((s) => s.points.length), [2, 2]);
    await page.screenshot({ path: path.join(ARTIFACTS, "web-cpu.png"), fullPage: true });
    assert.deepEqual(errors, []);

    const be = await createBackend("cpu", { threads: 2 });
    const model = loadModel(dir, be);
    assert.deepEqual(tokens, await nodeTokens(be, model, prompt, N, 0, 0), "the page's tokens are the Node engine's");
    console.log(`# web cpu: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  } finally {
    await close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("without a WebGPU adapter: auto says so and runs the cpu backend; a forced webgpu is an error, not a switch", { timeout: 60000 }, async () => {
  const { context, close } = await launch([]);
  try {
    const auto = await openPlayground(context, `${served.url}?size=tiny`);
    const a = await auto.page.evaluate(() => ({ b: (window as unknown as Win).seqlab.backend, e: (window as unknown as Win).seqlab.startupError }));
    assert.equal(a.e, null);
    assert.equal(a.b?.name, "cpu");
    assert.match(a.b!.reason, /^auto: navigator\.gpu gave no adapter$/);
    assert.match(await auto.page.textContent("#backend") ?? "", /cpu · WebAssembly SIMD .*auto: navigator\.gpu gave no adapter/);

    const forced = await openPlayground(context, `${served.url}?backend=webgpu`);
    const f = await forced.page.evaluate(() => ({ b: (window as unknown as Win).seqlab.backend, e: (window as unknown as Win).seqlab.startupError }));
    assert.equal(f.b, null);
    assert.match(f.e ?? "", /webgpu: no GPU adapter is available/);
    assert.match(await forced.page.getAttribute("#backend", "class") ?? "", /failed/);
  } finally {
    await close();
  }
});
