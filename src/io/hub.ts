/**
 * Models from the Hugging Face hub: `hf:owner/name[@revision]` becomes a local directory with
 * config.json, the tokenizer files and the safetensors weights (shards included), downloaded
 * over HTTPS in the hub's layout into a cache:
 *
 *   GET {endpoint}/api/models/{repo}/revision/{rev}     the file list ("siblings")
 *   GET {endpoint}/{repo}/resolve/{rev}/{file}          a file (LFS files redirect to a CDN)
 *
 * The endpoint is https://huggingface.co unless HF_ENDPOINT says otherwise (as in huggingface_hub);
 * HF_TOKEN is sent for gated or private repositories. The cache is SEQLAB_CACHE or
 * ~/.cache/seqlab/hub, one directory per repository and revision. Each file downloads into
 * `<file>.partial` and resumes from it with an HTTP Range request after a dropped connection (or
 * in a later run); LFS files are checked against the sha256 the hub sends as X-Linked-Etag
 * before they are renamed into place. A snapshot whose every file arrived is marked complete and
 * used without touching the network again.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { createHash } from "node:crypto";
import { SeqlabError } from "../util/errors.js";
import { httpGet, HttpError, readBody, type HttpResponse } from "./http.js";
import { ProgressLine } from "./progress.js";
import { RWKV_VOCAB } from "./tokenizer_files.js";

export interface HubOptions {
  /** default: HF_ENDPOINT or https://huggingface.co */
  endpoint?: string;
  /** default: SEQLAB_CACHE or ~/.cache/seqlab/hub */
  cacheDir?: string;
  /** default: HF_TOKEN */
  token?: string;
  /** where progress lines go (default stderr) */
  progress?: NodeJS.WritableStream;
  /** attempts per file before a network error is final (default 5) */
  attempts?: number;
}

export interface HubRef {
  repo: string;
  revision: string;
  /** the spec as the user wrote it, for messages */
  spec: string;
}

const COMPLETE = ".seqlab-complete";
/** Files besides the weights that a model directory may use. */
const EXTRAS = [
  "generation_config.json",
  "tokenizer.json",
  "tokenizer_config.json",
  "special_tokens_map.json",
  "chat_template.jinja",
];

/** `hf:owner/name[@revision]` -> its parts, or null for anything else (a local path). */
export function parseHubSpec(spec: string): HubRef | null {
  if (!spec.startsWith("hf:")) return null;
  const body = spec.slice(3);
  const at = body.indexOf("@");
  const repo = at < 0 ? body : body.slice(0, at);
  const revision = at < 0 ? "main" : body.slice(at + 1);
  if (!/^[A-Za-z0-9][\w.-]*\/[A-Za-z0-9][\w.-]*$/.test(repo) || repo.includes("..")) {
    throw new SeqlabError(`${spec}: not a model id (expected hf:owner/name or hf:owner/name@revision)`);
  }
  if (!/^[\w.-][\w./-]*$/.test(revision) || revision.includes("..")) throw new SeqlabError(`${spec}: "${revision}" is not a revision`);
  return { repo, revision, spec };
}

export function defaultCacheDir(): string {
  return process.env.SEQLAB_CACHE || path.join(os.homedir(), ".cache", "seqlab", "hub");
}

function endpointOf(o: HubOptions): string {
  return (o.endpoint ?? process.env.HF_ENDPOINT ?? "https://huggingface.co").replace(/\/+$/, "");
}

/** A local model directory for `spec`: the path itself, or the hub snapshot it names (downloaded if needed). */
export async function resolveModelDir(spec: string, o: HubOptions = {}): Promise<string> {
  const ref = parseHubSpec(spec);
  return ref ? downloadModel(ref, o) : spec;
}

export async function downloadModel(ref: HubRef, o: HubOptions = {}): Promise<string> {
  const dir = path.join(o.cacheDir ?? defaultCacheDir(), `models--${ref.repo.replace("/", "--")}`, "snapshots", encodeURIComponent(ref.revision));
  if (fs.existsSync(path.join(dir, COMPLETE))) return dir;
  const endpoint = endpointOf(o);
  const client = new HubClient(ref, endpoint, o);
  const listing = await client.listFiles();
  const files = new Set(listing);
  if (!files.has("config.json")) throw new SeqlabError(`${ref.spec}: the repository has no config.json (files: ${preview(listing)})`);
  fs.mkdirSync(dir, { recursive: true });
  const wanted = ["config.json", ...EXTRAS.filter((f) => files.has(f)), ...listing.filter((f) => RWKV_VOCAB.test(f))];
  for (const f of wanted) await client.download(f, path.join(dir, f));
  for (const f of await weightFiles(client, files, dir, listing)) await client.download(f, path.join(dir, f));
  fs.writeFileSync(path.join(dir, COMPLETE), JSON.stringify({ repo: ref.repo, revision: ref.revision, endpoint }) + "\n");
  return dir;
}

/** model.safetensors, or the index and every shard it names (each checked against the listing). */
async function weightFiles(client: HubClient, files: Set<string>, dir: string, listing: string[]): Promise<string[]> {
  const { ref } = client;
  if (files.has("model.safetensors")) return ["model.safetensors"];
  const index = "model.safetensors.index.json";
  if (!files.has(index)) {
    throw new SeqlabError(`${ref.spec}: the repository has no safetensors weights (model.safetensors or ${index}; files: ${preview(listing)})`);
  }
  await client.download(index, path.join(dir, index));
  let map: unknown;
  try {
    map = JSON.parse(fs.readFileSync(path.join(dir, index), "utf8")).weight_map;
  } catch {
    throw new SeqlabError(`${ref.spec}: ${index} is not valid JSON`);
  }
  if (typeof map !== "object" || map === null) throw new SeqlabError(`${ref.spec}: ${index} has no "weight_map"`);
  const shards = [...new Set(Object.values(map as Record<string, unknown>))];
  for (const s of shards) {
    if (typeof s !== "string" || !files.has(s) || s.includes("..")) throw new SeqlabError(`${ref.spec}: ${index} lists shard ${JSON.stringify(s)}, which the repository does not have`);
  }
  return shards as string[];
}

function preview(list: string[]): string {
  return list.length <= 8 ? list.join(", ") : `${list.slice(0, 8).join(", ")} and ${list.length - 8} more`;
}

/** Requests against one repository, with its errors phrased for that repository. */
class HubClient {
  private readonly headers: Record<string, string>;

  constructor(
    readonly ref: HubRef,
    readonly endpoint: string,
    private readonly o: HubOptions,
  ) {
    const token = o.token ?? process.env.HF_TOKEN;
    this.headers = { "user-agent": "seqlab", ...(token ? { authorization: `Bearer ${token}` } : {}) };
  }

  /** Rephrase a failed request as one line about this repository; `what` is "listing" or a file. */
  private fail(e: unknown, what: string): never {
    const { spec, repo, revision } = this.ref;
    if (e instanceof SeqlabError) throw e;
    if (e instanceof HttpError) {
      if (e.status === 404 && e.errorCode === "RevisionNotFound") throw new SeqlabError(`${spec}: model ${repo} has no revision "${revision}" on ${this.endpoint}`);
      if (e.status === 404 && what === "listing") throw new SeqlabError(`${spec}: model ${repo} not found on ${this.endpoint}`);
      if (e.status === 404) throw new SeqlabError(`${spec}: ${what} not found in ${repo} on ${this.endpoint}`);
      if (e.status === 401 || e.status === 403) {
        throw new SeqlabError(`${spec}: access to ${repo} denied (HTTP ${e.status}; a gated or private repository needs HF_TOKEN)`);
      }
      throw new SeqlabError(`${spec}: ${this.endpoint} answered HTTP ${e.status} for ${what}`);
    }
    const code = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
    throw new SeqlabError(`${spec}: cannot fetch ${what} from ${this.endpoint} (${code})`);
  }

  async listFiles(): Promise<string[]> {
    const url = `${this.endpoint}/api/models/${this.ref.repo}/revision/${encodeURIComponent(this.ref.revision)}`;
    let body: string;
    try {
      body = await readBody(await httpGet(url, this.headers));
    } catch (e) {
      this.fail(e, "listing");
    }
    let siblings: unknown;
    try {
      siblings = JSON.parse(body).siblings;
    } catch {
      throw new SeqlabError(`${this.ref.spec}: ${url} did not answer with JSON`);
    }
    if (!Array.isArray(siblings)) throw new SeqlabError(`${this.ref.spec}: ${url} lists no files`);
    return siblings.map((s: { rfilename?: unknown }) => s.rfilename).filter((f): f is string => typeof f === "string");
  }

  /** Download one file into `dest`, resuming `dest.partial`, retrying dropped connections. */
  async download(file: string, dest: string): Promise<void> {
    if (fs.existsSync(dest)) return;
    const attempts = this.o.attempts ?? 5;
    for (let attempt = 1; ; attempt++) {
      try {
        await this.fetchInto(file, dest);
        return;
      } catch (e) {
        const transient = !(e instanceof SeqlabError) && !(e instanceof HttpError && e.status < 500);
        if (!transient || attempt >= attempts) this.fail(e, file);
        await new Promise((r) => setTimeout(r, 100 * attempt));
      }
    }
  }

  private async fetchInto(file: string, dest: string): Promise<void> {
    const partial = `${dest}.partial`;
    const have = fs.existsSync(partial) ? fs.statSync(partial).size : 0;
    const url = `${this.endpoint}/${this.ref.repo}/resolve/${encodeURIComponent(this.ref.revision)}/${file.split("/").map(encodeURIComponent).join("/")}`;
    const res = await httpGet(url, { ...this.headers, ...(have > 0 ? { range: `bytes=${have}-` } : {}) });
    const sha256 = res.linkedEtag && /^[0-9a-f]{64}$/.test(res.linkedEtag) ? res.linkedEtag : null;
    let start = have;
    if (res.status === 416) {
      res.body.resume(); // the partial file already holds every byte
    } else {
      if (res.status !== 206) start = 0; // the server sent the whole file
      const total = res.linkedSize ?? (res.contentLength === null ? null : start + res.contentLength);
      await this.receive(res, partial, start, total, file);
    }
    if (sha256) await verifySha256(partial, sha256, file, this.ref.spec);
    fs.renameSync(partial, dest);
  }

  private async receive(res: HttpResponse, partial: string, start: number, total: number | null, file: string): Promise<void> {
    const out = fs.createWriteStream(partial, { flags: start > 0 ? "a" : "w" });
    let writeError: Error | null = null;
    out.on("error", (e) => (writeError = e));
    const bar = new ProgressLine(this.o.progress ?? process.stderr, `${this.ref.repo}: ${file}`, total);
    let received = start;
    bar.update(received);
    try {
      for await (const chunk of res.body) {
        if (!out.write(chunk)) await new Promise<void>((r) => out.once("drain", () => r()));
        received += (chunk as Buffer).length;
        bar.update(received);
      }
    } finally {
      await new Promise<void>((r) => out.end(r));
    }
    if (writeError) throw new SeqlabError(`${partial}: cannot write (${(writeError as NodeJS.ErrnoException).code ?? writeError})`);
    if (total !== null && received !== total) throw new Error(`connection closed after ${received} of ${total} bytes`);
    bar.done(received);
  }
}

async function verifySha256(file: string, expected: string, name: string, spec: string): Promise<void> {
  const hash = createHash("sha256");
  for await (const chunk of fs.createReadStream(file)) hash.update(chunk as Buffer);
  const got = hash.digest("hex");
  if (got !== expected) {
    fs.rmSync(file, { force: true });
    throw new SeqlabError(`${spec}: ${name} failed its checksum (sha256 ${got.slice(0, 12)}..., the hub says ${expected.slice(0, 12)}...); the download was discarded`);
  }
}
