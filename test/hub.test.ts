/**
 * Hub downloads against a local stand-in for huggingface.co (never the network): listing,
 * redirects to a CDN, shards through the index, resume after a dropped connection and across
 * runs, sha256 checks, the cache, and one-line errors.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { spawn } from "node:child_process";
import { PassThrough } from "node:stream";
import { downloadModel, parseHubSpec, resolveModelDir } from "../src/io/hub.js";
import { SeqlabError } from "../src/util/errors.js";
import { startHubServer, type HubServer } from "./support/hub_server.js";
import { writeTinyChatModel } from "./support/tiny_models.js";
import { writeSharded } from "./support/checkpoints.js";
import { ROOT } from "./helpers.js";

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "seqlab-hub-"));
const root = path.join(tmp, "hub");
const REPO = "tiny-org/tiny-chat";
const SHARD = "model-00002-of-00002.safetensors";
let hub: HubServer;

before(async () => {
  const plain = path.join(tmp, "plain");
  writeTinyChatModel(plain, 3);
  const repo = path.join(root, REPO);
  writeSharded(plain, repo, { shards: 2, dtype: "F32", copy: ["tokenizer.json", "tokenizer_config.json", "generation_config.json"] });
  fs.writeFileSync(path.join(repo, "README.md"), "not downloaded");
  const pt = path.join(root, "tiny-org/pytorch-only");
  fs.mkdirSync(pt, { recursive: true });
  fs.copyFileSync(path.join(plain, "config.json"), path.join(pt, "config.json"));
  fs.writeFileSync(path.join(pt, "pytorch_model.bin"), "x");
  hub = await startHubServer(root);
});

after(() => hub.close());

let cacheCount = 0;
function freshCache(): string {
  return path.join(tmp, `cache-${cacheCount++}`);
}

function progress(): { stream: PassThrough; text: () => string } {
  const stream = new PassThrough();
  let text = "";
  stream.on("data", (d) => (text += d));
  return { stream, text: () => text };
}

const sameBytes = (a: string, b: string) => Buffer.compare(fs.readFileSync(a), fs.readFileSync(b)) === 0;

test("hf: specs parse, and bad ones are refused", () => {
  assert.deepEqual(parseHubSpec("hf:state-spaces/mamba-130m-hf"), { repo: "state-spaces/mamba-130m-hf", revision: "main", spec: "hf:state-spaces/mamba-130m-hf" });
  assert.equal(parseHubSpec("hf:a/b@v1.0")?.revision, "v1.0");
  assert.equal(parseHubSpec("/some/dir"), null);
  for (const bad of ["hf:nope", "hf:a/b/c", "hf:../x", "hf:a/b@"]) assert.throws(() => parseHubSpec(bad), SeqlabError, bad);
});

test("downloads config, tokenizer and every shard via the index; a second call uses the cache", async () => {
  const cacheDir = freshCache();
  const p = progress();
  const dir = await downloadModel(parseHubSpec(`hf:${REPO}`)!, { endpoint: hub.endpoint, cacheDir, progress: p.stream });
  const src = path.join(root, REPO);
  for (const f of ["config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json", "model.safetensors.index.json", "model-00001-of-00002.safetensors", SHARD]) {
    assert.ok(sameBytes(path.join(dir, f), path.join(src, f)), f);
  }
  assert.ok(!fs.existsSync(path.join(dir, "README.md")));
  assert.ok(fs.readdirSync(dir).every((f) => !f.endsWith(".partial")));
  assert.match(p.text(), new RegExp(`downloading ${REPO}: ${SHARD}`));
  assert.ok(hub.log.some((r) => r.path.startsWith("/cdn/")), "safetensors came through the CDN redirect");
  const requests = hub.log.length;
  assert.equal(await resolveModelDir(`hf:${REPO}`, { endpoint: hub.endpoint, cacheDir }), dir);
  assert.equal(hub.log.length, requests, "no request for a complete snapshot");
});

test("a connection dropped mid-file resumes with a Range request and the file checks out", async () => {
  const cacheDir = freshCache();
  hub.dropOnce.add(SHARD);
  const from = hub.log.length;
  const dir = await downloadModel(parseHubSpec(`hf:${REPO}`)!, { endpoint: hub.endpoint, cacheDir, progress: new PassThrough() });
  assert.equal(hub.dropOnce.size, 0, "the drop happened");
  const ranged = hub.log.slice(from).filter((r) => r.path.startsWith("/cdn/") && r.path.endsWith(SHARD) && r.range);
  assert.equal(ranged.length, 1);
  const offset = Number(/bytes=(\d+)-/.exec(ranged[0].range!)![1]);
  assert.ok(offset > 0 && offset < fs.statSync(path.join(dir, SHARD)).size, `resumed at ${offset}`);
  assert.ok(sameBytes(path.join(dir, SHARD), path.join(root, REPO, SHARD)));
});

test("a partial file left by an earlier run is resumed from its end", async () => {
  const cacheDir = freshCache();
  const snapshot = path.join(cacheDir, "models--tiny-org--tiny-chat/snapshots/main");
  fs.mkdirSync(snapshot, { recursive: true });
  fs.writeFileSync(path.join(snapshot, `${SHARD}.partial`), fs.readFileSync(path.join(root, REPO, SHARD)).subarray(0, 100));
  const from = hub.log.length;
  const dir = await downloadModel(parseHubSpec(`hf:${REPO}`)!, { endpoint: hub.endpoint, cacheDir, progress: new PassThrough() });
  assert.ok(hub.log.slice(from).some((r) => r.path.endsWith(SHARD) && r.range === "bytes=100-"));
  assert.ok(sameBytes(path.join(dir, SHARD), path.join(root, REPO, SHARD)));
});

test("a corrupted file fails its sha256 check and is discarded", async () => {
  const cacheDir = freshCache();
  hub.corrupt.add(SHARD);
  try {
    await assert.rejects(
      downloadModel(parseHubSpec(`hf:${REPO}`)!, { endpoint: hub.endpoint, cacheDir, progress: new PassThrough() }),
      (e) => e instanceof SeqlabError && new RegExp(`hf:${REPO}: ${SHARD} failed its checksum \\(sha256 [0-9a-f]{12}\\.\\.\\., the hub says [0-9a-f]{12}`).test(e.message),
    );
  } finally {
    hub.corrupt.clear();
  }
  const snapshot = path.join(cacheDir, "models--tiny-org--tiny-chat/snapshots/main");
  assert.ok(!fs.existsSync(path.join(snapshot, SHARD)) && !fs.existsSync(path.join(snapshot, `${SHARD}.partial`)));
  assert.ok(!fs.existsSync(path.join(snapshot, ".seqlab-complete")));
});

test("one-line errors: unknown repo, unknown revision, no safetensors, unreachable endpoint", async () => {
  const o = { endpoint: hub.endpoint, cacheDir: freshCache(), progress: new PassThrough() };
  const rejects = (spec: string, re: RegExp, opts = o) =>
    assert.rejects(downloadModel(parseHubSpec(spec)!, opts), (e) => e instanceof SeqlabError && re.test(e.message) && !e.message.includes("\n"));
  await rejects("hf:tiny-org/nope", /^hf:tiny-org\/nope: model tiny-org\/nope not found on http:\/\/127\.0\.0\.1:\d+$/);
  await rejects(`hf:${REPO}@v9`, /model tiny-org\/tiny-chat has no revision "v9"/);
  await rejects("hf:tiny-org/pytorch-only", /has no safetensors weights \(model\.safetensors or model\.safetensors\.index\.json; files: .*pytorch_model\.bin/);
  await rejects(`hf:${REPO}`, /cannot fetch listing from http:\/\/127\.0\.0\.1:1 \(ECONNREFUSED\)/, { ...o, endpoint: "http://127.0.0.1:1" });
});

/** The CLI in a child process (the hub stand-in runs in this one, so no spawnSync). */
function seqlab(args: string[], env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [path.join(ROOT, "bin/seqlab.mjs"), ...args], { env: { ...process.env, ...env } });
    let stdout = "";
    let stderr = "";
    p.stdout.on("data", (d) => (stdout += d));
    p.stderr.on("data", (d) => (stderr += d));
    p.on("close", (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

test("seqlab generate --model hf:... downloads into SEQLAB_CACHE from HF_ENDPOINT, then generates", async () => {
  const env = { HF_ENDPOINT: hub.endpoint, SEQLAB_CACHE: freshCache() };
  const r = await seqlab(["generate", "--model", `hf:${REPO}`, "--prompt", "hello world", "--max-new-tokens", "5", "--ignore-eos"], env);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /downloading tiny-org\/tiny-chat: config\.json/);
  assert.match(r.stderr, /generate: prefill \d+ tokens .* decode 5 tokens/);
  const missing = await seqlab(["generate", "--model", "hf:tiny-org/absent", "--prompt", "x"], env);
  assert.equal(missing.code, 2);
  assert.equal(missing.stderr.trim(), `seqlab: hf:tiny-org/absent: model tiny-org/absent not found on ${hub.endpoint}`);
});
