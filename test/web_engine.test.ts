/**
 * The playground's engine without a browser: the in-memory safetensors reader refuses what the
 * file reader refuses, with the same messages; checkpoints load from bytes as from a
 * directory; the tab's training loop and token-by-token decoding reproduce the Node trainer
 * and generate(); the static server sends the cross-origin isolation headers; the web build
 * keeps Node modules out of the page.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { spawnSync } from "node:child_process";
import { SafetensorsFile, writeSafetensors } from "../src/io/safetensors.js";
import { SafetensorsBuffer } from "../src/io/safetensors_buffer.js";
import { RawConfig } from "../src/io/config.js";
import { buildFromWeights, loadModel } from "../src/models/load.js";
import { toArray } from "../src/backend/alloc.js";
import { generate } from "../src/generate/generate.js";
import { train } from "../src/train/trainer.js";
import { PasskeyTask } from "../src/tasks/passkey.js";
import { SeqlabError } from "../src/util/errors.js";
import { startStaticServer } from "../src/cli/static_server.js";
import { ref32, ROOT, VARIANT_FIXTURES } from "./helpers.js";
import { disposeModel, freshModel, presetConfig } from "../web/src/engine/models.js";
import { decode } from "../web/src/engine/decode.js";
import { trainSteps } from "../web/src/engine/train.js";
import { scorePasskey } from "../web/src/engine/passkey.js";
// @ts-expect-error: a plain JavaScript build helper
import { checkNoNodeImports } from "../scripts/build-web.mjs";

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "seqlab-web-"));

function messageOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof SeqlabError, `expected a SeqlabError, got ${e}`);
    assert.ok(!e.message.includes("\n"));
    return e.message;
  }
  assert.fail("expected an error");
}

function rawBytes(header: unknown, data: Buffer, headerLen?: bigint): Buffer {
  const json = Buffer.from(typeof header === "string" ? header : JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(headerLen ?? BigInt(json.length));
  return Buffer.concat([len, json, data]);
}

test("the in-memory reader refuses malformed files with the file reader's messages", () => {
  const ok = { dtype: "F32", shape: [2], data_offsets: [0, 8] };
  const eight = Buffer.alloc(8);
  const cases: Buffer[] = [
    Buffer.alloc(5),
    rawBytes({ a: ok }, eight, 1000n),
    rawBytes({ a: ok }, eight, 1n << 60n),
    rawBytes("{not json", eight),
    rawBytes("[1]", eight),
    rawBytes({ a: { ...ok, dtype: "F42" } }, eight),
    rawBytes({ a: { ...ok, shape: [3] } }, Buffer.alloc(12)),
    rawBytes({ a: { ...ok, data_offsets: [0, 8] }, b: { ...ok, data_offsets: [4, 12] } }, Buffer.alloc(12)),
    rawBytes({ a: { dtype: "F32", shape: [4], data_offsets: [0, 16] } }, eight),
  ];
  cases.forEach((bytes, i) => {
    const file = path.join(tmp, `bad${i}.safetensors`);
    fs.writeFileSync(file, bytes);
    const fromFile = messageOf(() => SafetensorsFile.open(file));
    const fromBuffer = messageOf(() => new SafetensorsBuffer(file, new Uint8Array(bytes)));
    assert.equal(fromBuffer, fromFile);
  });
  const u8 = new SafetensorsBuffer("u8.safetensors", new Uint8Array(rawBytes({ a: { dtype: "U8", shape: [8], data_offsets: [0, 8] } }, eight)));
  assert.match(messageOf(() => u8.read("a")), /^u8\.safetensors: tensor "a": dtype U8 is not supported/);
  assert.match(messageOf(() => u8.readF32("zz")), /^u8\.safetensors: tensor "zz" is missing/);
});

test("every dtype reads the same from bytes as from the file, at any byte alignment", () => {
  const file = path.join(tmp, "round.safetensors");
  writeSafetensors(file, [
    { name: "a", dtype: "F32", shape: [2, 3], data: Float32Array.from([1.5, -2, 3.25, 0, 1e-8, 65504]) },
    { name: "h", dtype: "F16", shape: [1], data: Uint16Array.from([0x3c00]) },
    { name: "b", dtype: "BF16", shape: [3], data: Uint16Array.from([0x3f80, 0xc000, 0x4040]) },
    { name: "l", dtype: "I64", shape: [2], data: BigInt64Array.from([-5n, 7n]) },
  ]);
  const bytes = fs.readFileSync(file);
  // a view at an odd offset: File.arrayBuffer() gives aligned bytes, but slices need not be
  const shifted = new Uint8Array(bytes.length + 1);
  shifted.set(bytes, 1);
  const mem = new SafetensorsBuffer("round.safetensors", shifted.subarray(1));
  const st = SafetensorsFile.open(file);
  try {
    assert.deepEqual(mem.names(), st.names());
    for (const n of st.names()) {
      assert.deepEqual(mem.shape(n), st.info(n).shape);
      assert.deepEqual(Array.from(mem.read(n)), Array.from(st.read(n)));
      if (n !== "l") assert.deepEqual(Array.from(mem.readF32(n)), Array.from(st.readF32(n)));
    }
  } finally {
    st.close();
  }
});

test("a checkpoint loads from bytes as from its directory (architecture name conversions included)", async () => {
  for (const name of fs.readdirSync(VARIANT_FIXTURES).filter((n) => /^(jamba|mamba|llama)/.test(n)).slice(0, 3)) {
    const dir = path.join(VARIANT_FIXTURES, name);
    const raw = RawConfig.parse("config.json", fs.readFileSync(path.join(dir, "config.json"), "utf8"));
    const fromBytes = buildFromWeights(raw, new SafetensorsBuffer("model.safetensors", new Uint8Array(fs.readFileSync(path.join(dir, "model.safetensors")))), ref32);
    const fromDir = loadModel(dir, ref32);
    const a = fromBytes.namedParameters();
    const b = fromDir.namedParameters();
    assert.deepEqual(a.map(([n]) => n), b.map(([n]) => n), name);
    for (let i = 0; i < a.length; i++) assert.deepEqual(await toArray(a[i][1]), await toArray(b[i][1]), `${name}: ${a[i][0]}`);
  }
  assert.match(messageOf(() => RawConfig.parse("config.json", "{oops")), /^config\.json: not valid JSON$/);
  const cfg = RawConfig.parse("config.json", JSON.stringify({ ...presetConfig("transformer", "tiny", 256), hidden_size: 48 }));
  const weights = path.join(tmp, "t.safetensors");
  const m = freshModel(ref32, "transformer", "tiny", 256, 1);
  const tensors = [];
  for (const [n, t] of m.namedParameters()) tensors.push({ name: n, dtype: "F32" as const, shape: t.shape, data: Float32Array.from(await toArray(t)) });
  writeSafetensors(weights, tensors);
  assert.match(
    messageOf(() => buildFromWeights(cfg, new SafetensorsBuffer("model.safetensors", new Uint8Array(fs.readFileSync(weights))), ref32)),
    /^model\.safetensors: tensor "model\.embed_tokens\.weight" has shape \(256, 32\), the config needs \(256, 48\)$/,
  );
});

test("token-by-token decoding chooses generate()'s tokens; the state bytes grow only with attention", async () => {
  for (const arch of ["transformer", "mamba"] as const) {
    const model = freshModel(ref32, arch, "tiny", 64, 5);
    const prompt = [3, 9, 27, 17];
    const o = { maxNewTokens: 8, temperature: 0.8, topK: 0, seed: 9 };
    const events: { position: number; kvCache: number; recurrent: number }[] = [];
    const r = await decode(model, { prompt, ...o }, (e) => e.type === "token" && events.push(e), async () => false);
    const g = await generate(model, prompt, { maxNewTokens: 8, temperature: 0.8, seed: 9 });
    assert.deepEqual(r.tokens, g.tokens, arch);
    assert.deepEqual(events.map((e) => e.position), [5, 6, 7, 8, 9, 10, 11, 12]);
    if (arch === "transformer") {
      assert.ok(events.every((e, i) => e.recurrent === 0 && e.kvCache === events[0].kvCache * (e.position / events[0].position)), "KV bytes proportional to position");
    } else {
      assert.ok(events.every((e) => e.kvCache === 0 && e.recurrent === events[0].recurrent && e.recurrent > 0), "a fixed recurrent state");
    }
    let n = 0;
    const stopped = await decode(model, { prompt, ...o }, () => {}, async () => ++n >= 3);
    assert.equal(stopped.stopped, true);
    assert.equal(stopped.tokens.length, prompt.length + 3);
    disposeModel(model);
  }
});

test("training in the tab follows the Node trainer's loss curve bit for bit; passkey scoring", async () => {
  const task = new PasskeyTask(32, 4, null);
  const a = freshModel(ref32, "mamba", "tiny", 64, 2);
  const b = freshModel(ref32, "mamba", "tiny", 64, 2);
  const steps: number[] = [];
  const web = await trainSteps(a, task, { steps: 4, batch: 2, lr: 3e-3 }, "t", (e) => steps.push(e.step), async () => false);
  const node = await train(b, task, { steps: 4, batch: 2, lr: 3e-3 });
  assert.deepEqual(web.losses, node.losses);
  assert.deepEqual(steps, [1, 2, 3, 4]);
  const row = await scorePasskey(a, "mamba", 40, 0.5, 5, 1);
  assert.equal(row.trials, 5);
  assert.equal(row.key.length, 5);
  assert.equal(row.answer.length, 5);
  assert.ok(row.key.every((d) => d >= 0 && d <= 9));
  assert.equal(row.accuracy, row.correct / 5);
  const small = freshModel(ref32, "transformer", "tiny", 32, 1);
  await assert.rejects(scorePasskey(small, "small", 40, 0.5, 1, 1), /passkey needs a vocabulary of at least 64, the model has 32/);
  await assert.rejects(trainSteps(small, task, { steps: 1, batch: 1, lr: 1e-3 }, "t", () => {}, async () => false), /task passkey needs a vocabulary of 64, the model has 32/);
  await assert.rejects(trainSteps(a, task, { steps: 0, batch: 1, lr: 1e-3 }, "t", () => {}, async () => false), /steps must be an integer in \[1, 100000\], got 0/);
});

test("the static server sends the cross-origin isolation headers and only files under its root", async () => {
  const root = path.join(tmp, "site");
  fs.mkdirSync(path.join(root, "sub"), { recursive: true });
  fs.writeFileSync(path.join(root, "index.html"), "<p>hi</p>");
  fs.writeFileSync(path.join(root, "sub", "a.js"), "export {}");
  fs.writeFileSync(path.join(tmp, "secret.txt"), "no");
  const s = await startStaticServer(root, 0);
  try {
    const index = await fetch(s.url);
    assert.equal(index.status, 200);
    assert.equal(await index.text(), "<p>hi</p>");
    assert.equal(index.headers.get("cross-origin-opener-policy"), "same-origin");
    assert.equal(index.headers.get("cross-origin-embedder-policy"), "require-corp");
    assert.match(index.headers.get("content-type")!, /^text\/html/);
    const js = await fetch(`${s.url}sub/a.js`);
    assert.match(js.headers.get("content-type")!, /^text\/javascript/);
    assert.equal(js.headers.get("cross-origin-embedder-policy"), "require-corp");
    for (const p of ["../secret.txt", "%2e%2e/secret.txt", "sub/../../secret.txt", "missing.js", "sub/"]) {
      const r = await fetch(`${s.url}${p}`);
      assert.equal(r.status, 404, p);
      await r.arrayBuffer();
    }
    assert.equal((await fetch(s.url, { method: "POST" })).status, 405);
  } finally {
    await s.close();
  }
  await assert.rejects(startStaticServer(path.join(tmp, "nothing")), /no index\.html to serve/);
  for (const [args, pattern] of [
    [["--port", "http"], /^seqlab: serve: --port must be an integer in \[0, 65535\], got "http"$/],
    [["--dir", path.join(tmp, "nothing"), "--port", "0"], /^seqlab: .*nothing: no index\.html to serve$/],
  ] as const) {
    const r = spawnSync(process.execPath, [path.join(ROOT, "bin/seqlab.mjs"), "serve", ...args], { encoding: "utf8", timeout: 10000 });
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr.trim(), pattern);
  }
});

test("the web build refuses a Node module imported statically by the page or the worker", () => {
  const meta = (imports: { path: string; kind: string; external?: boolean }[]) => ({
    outputs: {
      "dist/web/engine.js": { entryPoint: "web/src/engine/worker.ts", imports: [{ path: "dist/web/chunks/c.js", kind: "import-statement" }] },
      "dist/web/chunks/c.js": { imports },
    },
  });
  assert.doesNotThrow(() => checkNoNodeImports(meta([{ path: "node:worker_threads", kind: "dynamic-import", external: true }])));
  assert.throws(() => checkNoNodeImports(meta([{ path: "node:fs", kind: "import-statement", external: true }])), /engine\.js imports node:fs statically/);
});
