#!/usr/bin/env node
// seqlab command-line entry: runs the bundle that `npm install` (or `npm run build`) makes.
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
const bundle = new URL("../dist/seqlab.mjs", import.meta.url);
if (!existsSync(fileURLToPath(bundle))) {
  console.error("seqlab: not built yet: run `npm install` (or `npm run build`) in " + fileURLToPath(new URL("..", import.meta.url)));
  process.exit(2);
}
await import(bundle.href);
