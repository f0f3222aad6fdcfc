/**
 * A static file server for the browser playground. Every response carries the cross-origin
 * isolation headers (COOP same-origin, COEP require-corp) without which a browser withholds
 * SharedArrayBuffer, and so the cpu backend's shared-memory thread pool. Only files under the
 * root are served; nothing is listed.
 */
import * as fs from "node:fs";
import * as http from "node:http";
import * as path from "node:path";
import type { AddressInfo } from "node:net";
import { SeqlabError } from "../util/errors.js";

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json; charset=utf-8",
  ".map": "application/json; charset=utf-8",
  ".png": "image/png",
  ".svg": "image/svg+xml",
  ".wasm": "application/wasm",
  ".safetensors": "application/octet-stream",
};

export const ISOLATION_HEADERS = {
  "Cross-Origin-Opener-Policy": "same-origin",
  "Cross-Origin-Embedder-Policy": "require-corp",
  "Cross-Origin-Resource-Policy": "same-origin",
} as const;

export interface StaticServer {
  url: string;
  port: number;
  close(): Promise<void>;
}

export async function startStaticServer(root: string, port = 0, host = "127.0.0.1"): Promise<StaticServer> {
  const base = path.resolve(root);
  if (!fs.existsSync(path.join(base, "index.html"))) throw new SeqlabError(`${base}: no index.html to serve`);
  const server = http.createServer((req, res) => respond(base, req, res));
  await new Promise<void>((resolve, reject) => {
    server.once("error", (e: NodeJS.ErrnoException) =>
      reject(new SeqlabError(e.code === "EADDRINUSE" ? `port ${port} on ${host} is in use` : `cannot listen on ${host}:${port} (${e.code ?? e.message})`)),
    );
    server.listen(port, host, () => resolve());
  });
  const actual = (server.address() as AddressInfo).port;
  return {
    url: `http://${host.includes(":") ? `[${host}]` : host}:${actual}/`,
    port: actual,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function respond(base: string, req: http.IncomingMessage, res: http.ServerResponse): void {
  const send = (status: number, body: string) => {
    res.writeHead(status, { "Content-Type": "text/plain; charset=utf-8", ...ISOLATION_HEADERS });
    res.end(body);
  };
  if (req.method !== "GET" && req.method !== "HEAD") return send(405, "method not allowed\n");
  let rel: string;
  try {
    rel = decodeURIComponent(new URL(req.url ?? "/", "http://x").pathname);
  } catch {
    return send(400, "bad path\n");
  }
  if (rel.endsWith("/")) rel += "index.html";
  const file = path.resolve(base, "." + rel);
  if (file !== base && !file.startsWith(base + path.sep)) return send(404, "not found\n");
  fs.stat(file, (err, st) => {
    if (err || !st.isFile()) return send(404, "not found\n");
    res.writeHead(200, {
      "Content-Type": TYPES[path.extname(file)] ?? "application/octet-stream",
      "Content-Length": st.size,
      "Cache-Control": "no-cache",
      ...ISOLATION_HEADERS,
    });
    if (req.method === "HEAD") return res.end();
    fs.createReadStream(file).pipe(res);
  });
}
