/**
 * Minimal HTTP(S) GET for the hub: redirects followed by hand (the hub's first answer carries
 * the LFS file's sha256 and size in X-Linked-Etag / X-Linked-Size, which a redirect-following
 * client would drop), the body left as a stream for the caller.
 */
import * as http from "node:http";
import * as https from "node:https";

export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly url: string,
    /** the hub's X-Error-Code (RepoNotFound, RevisionNotFound, EntryNotFound, GatedRepo ...) */
    readonly errorCode: string | null,
  ) {
    super(`HTTP ${status} for ${url}`);
  }
}

export interface HttpResponse {
  status: number;
  body: http.IncomingMessage;
  contentLength: number | null;
  /** sha256 (LFS) or git hash the hub announced for the file, unquoted */
  linkedEtag: string | null;
  linkedSize: number | null;
}

const MAX_REDIRECTS = 10;

export async function httpGet(url: string, headers: Record<string, string>): Promise<HttpResponse> {
  let linkedEtag: string | null = null;
  let linkedSize: number | null = null;
  let current = url;
  for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
    const res = await request(current, hop === 0 ? headers : withoutAuthAcrossHosts(headers, url, current));
    const h = res.headers;
    linkedEtag ??= unquote(header(h, "x-linked-etag") ?? (hop === 0 ? header(h, "etag") : null));
    linkedSize ??= numberOrNull(header(h, "x-linked-size"));
    const status = res.statusCode ?? 0;
    if (status >= 300 && status < 400 && h.location) {
      res.resume();
      current = new URL(h.location, current).toString();
      continue;
    }
    if (status >= 400 && status !== 416) {
      res.resume();
      throw new HttpError(status, current, header(h, "x-error-code"));
    }
    return { status, body: res, contentLength: numberOrNull(header(h, "content-length")), linkedEtag, linkedSize };
  }
  throw new Error(`too many redirects from ${url}`);
}

function request(url: string, headers: Record<string, string>): Promise<http.IncomingMessage> {
  const lib = url.startsWith("https:") ? https : http;
  return new Promise((resolve, reject) => {
    const req = lib.get(url, { headers }, resolve);
    req.on("error", reject);
    req.setTimeout(60_000, () => req.destroy(Object.assign(new Error("timed out"), { code: "ETIMEDOUT" })));
  });
}

/** A token for the hub must not travel to the CDN it redirects to. */
function withoutAuthAcrossHosts(headers: Record<string, string>, from: string, to: string): Record<string, string> {
  if (new URL(from).host === new URL(to).host) return headers;
  const { authorization: _drop, ...rest } = headers;
  return rest;
}

export async function readBody(res: HttpResponse): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of res.body) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

function header(h: http.IncomingHttpHeaders, name: string): string | null {
  const v = h[name];
  return Array.isArray(v) ? (v[0] ?? null) : (v ?? null);
}

function unquote(etag: string | null): string | null {
  return etag === null ? null : etag.replace(/^W\//, "").replace(/^"|"$/g, "");
}

function numberOrNull(v: string | null): number | null {
  const n = v === null ? NaN : Number(v);
  return Number.isSafeInteger(n) && n >= 0 ? n : null;
}
