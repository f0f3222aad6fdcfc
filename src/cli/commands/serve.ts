/**
 * `seqlab serve [--port N] [--host H] [--dir DIR]`: the browser playground, built into dist/web
 * by `npm run build`, served with the cross-origin isolation headers that shared memory (the
 * cpu backend's WebAssembly threads) needs. Runs until interrupted.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { SeqlabError } from "../../util/errors.js";
import { intFlag } from "../args.js";
import type { Command } from "../command.js";
import { startStaticServer } from "../static_server.js";

/** dist/web beside the running bundle (dist/seqlab.mjs), else under the working directory. */
function defaultDir(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const candidates = [path.join(here, "web"), path.resolve("dist/web")];
  const found = candidates.find((d) => fs.existsSync(path.join(d, "index.html")));
  if (!found) throw new SeqlabError(`serve: the built playground is missing (looked in ${candidates.join(", ")}): run npm run build`);
  return found;
}

export const serveCommand: Command = {
  name: "serve",
  summary: "serve the browser playground (dist/web) on localhost",
  usage: "[--port N] [--host 127.0.0.1] [--dir dist/web]",
  options: {
    port: { type: "string", default: "8080", help: "port (0 picks a free one)" },
    host: { type: "string", default: "127.0.0.1", help: "address to listen on" },
    dir: { type: "string", help: "the built playground (default: dist/web)" },
    help: { type: "boolean", short: "h", help: "show this help" },
  },
  async run(v) {
    const port = intFlag("serve", "port", v.port, 8080, 0, 65535);
    const dir = typeof v.dir === "string" ? v.dir : defaultDir();
    const server = await startStaticServer(dir, port, String(v.host ?? "127.0.0.1"));
    console.log(`seqlab playground: ${server.url} (serving ${dir}; Ctrl-C stops)`);
    await new Promise<void>((resolve) => {
      const stop = () => void server.close().then(resolve);
      process.once("SIGINT", stop);
      process.once("SIGTERM", stop);
    });
    return 0;
  },
};
