// Run the whole test suite with Node's built-in runner (TypeScript through tsx).
import { readdirSync } from "node:fs";
import { spawnSync } from "node:child_process";
import { buildWasm } from "./build-wasm.mjs";

// Tests import the cpu backend's generated wasm module: (re)build it when missing or stale.
await buildWasm({ ifStale: true });

const files = readdirSync("test")
  .filter((f) => f.endsWith(".test.ts"))
  .sort()
  .map((f) => `test/${f}`);
const only = process.argv.slice(2);
const chosen = only.length ? files.filter((f) => only.some((o) => f.includes(o))) : files;
// the CLI tests run the built binary: build first (fast; also what `npm install` does)
const b = spawnSync(process.execPath, ["scripts/build.mjs"], { stdio: "inherit" });
if (b.status !== 0) process.exit(b.status ?? 1);
const r = spawnSync(process.execPath, ["--import", "tsx", "--test", "--test-concurrency=2", ...chosen], { stdio: "inherit" });
process.exit(r.status ?? 1);
