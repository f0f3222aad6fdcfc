/**
 * A local stand-in for the Hugging Face hub (node:http on 127.0.0.1, a random port) serving a
 * directory laid out as <root>/<owner>/<name>/<files>: the revision listing API, resolve URLs
 * that redirect LFS files (*.safetensors) to a "CDN" path with X-Linked-Etag = sha256 and
 * X-Linked-Size, Range requests, and faults on demand: a connection dropped mid-file, a file
 * served corrupted.
 */
import * as http from "node:http";
import * as fs from "node:fs";
import * as path from "node:path";
import { createHash } from "node:crypto";
import type { AddressInfo } from "node:net";

export interface HubServer {
  endpoint: string;
  /** every request: method, path and Range header */
  log: { path: string; range: string | undefined }[];
  /** files (repo-relative) whose next full download drops the connection halfway */
  dropOnce: Set<string>;
  /** files served with one byte flipped (the etag stays the original's) */
  corrupt: Set<string>;
  close(): Promise<void>;
}

export async function startHubServer(root: string): Promise<HubServer> {
  const state = { log: [] as HubServer["log"], dropOnce: new Set<string>(), corrupt: new Set<string>() };
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://x");
    state.log.push({ path: url.pathname, range: req.headers.range });
    const parts = url.pathname.split("/").filter(Boolean).map(decodeURIComponent);
    // /api/models/<owner>/<name>/revision/<rev>
    if (parts[0] === "api" && parts[1] === "models" && parts[4] === "revision") {
      const repoDir = path.join(root, parts[2], parts[3]);
      if (!fs.existsSync(repoDir)) return notFound(res, "RepoNotFound");
      if (parts[5] !== "main") return notFound(res, "RevisionNotFound");
      res.setHeader("content-type", "application/json");
      return res.end(JSON.stringify({ id: `${parts[2]}/${parts[3]}`, sha: "0".repeat(40), siblings: fs.readdirSync(repoDir).map((f) => ({ rfilename: f })) }));
    }
    // /<owner>/<name>/resolve/<rev>/<file>
    if (parts[2] === "resolve") {
      const file = path.join(root, parts[0], parts[1], parts.slice(4).join("/"));
      if (!fs.existsSync(file)) return notFound(res, "EntryNotFound");
      const data = fs.readFileSync(file);
      if (file.endsWith(".safetensors")) {
        res.writeHead(302, {
          location: `/cdn/${parts[0]}/${parts[1]}/${parts.slice(4).join("/")}`,
          "x-linked-etag": `"${createHash("sha256").update(data).digest("hex")}"`,
          "x-linked-size": String(data.length),
        });
        return res.end();
      }
      return serve(req, res, parts.slice(4).join("/"), data, state, { etag: `"${createHash("sha1").update(data).digest("hex")}"` });
    }
    // /cdn/<owner>/<name>/<file>
    if (parts[0] === "cdn") {
      const rel = parts.slice(3).join("/");
      const file = path.join(root, parts[1], parts[2], rel);
      if (!fs.existsSync(file)) return notFound(res, "EntryNotFound");
      return serve(req, res, rel, fs.readFileSync(file), state, {});
    }
    notFound(res, null);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as AddressInfo).port;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    ...state,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

function notFound(res: http.ServerResponse, code: string | null): void {
  res.writeHead(404, code ? { "x-error-code": code } : {});
  res.end("not found");
}

function serve(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  rel: string,
  original: Buffer,
  state: { dropOnce: Set<string>; corrupt: Set<string> },
  headers: Record<string, string>,
): void {
  let data = original;
  if (state.corrupt.has(rel)) {
    data = Buffer.from(original);
    data[data.length >> 1] ^= 0xff;
  }
  const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? "");
  const start = m ? Number(m[1]) : 0;
  if (start >= data.length && m) {
    res.writeHead(416, { "content-range": `bytes */${data.length}` });
    return void res.end();
  }
  const body = data.subarray(start);
  res.writeHead(m ? 206 : 200, {
    ...headers,
    "content-length": String(body.length),
    ...(m ? { "content-range": `bytes ${start}-${data.length - 1}/${data.length}` } : {}),
  });
  if (!m && state.dropOnce.has(rel)) {
    state.dropOnce.delete(rel);
    res.write(body.subarray(0, body.length >> 1), () => res.destroy()); // half the bytes, then the connection drops
    return;
  }
  res.end(body);
}
