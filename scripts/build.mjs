// Build: bundle the CLI (and, as they arrive, the WebAssembly kernels and the web app) into dist/.
import { build } from "esbuild";
import { mkdirSync, readFileSync } from "node:fs";
import { buildWasm } from "./build-wasm.mjs";

// The WebAssembly kernels first: the bundle embeds the generated module.
await buildWasm();

mkdirSync("dist", { recursive: true });
await build({
  entryPoints: ["src/cli/entry.ts"],
  outfile: "dist/seqlab.mjs",
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node20",
  sourcemap: "linked",
  external: ["webgpu", "node-llama-cpp", "playwright-core"],
  banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
  logLevel: "warning",
  define: { SEQLAB_VERSION: JSON.stringify(JSON.parse(readFileSync("package.json", "utf8")).version) },
});
console.log("built dist/seqlab.mjs");

// The GPU benchmark, runnable on a machine that has node and the webgpu package only.
await build({
  entryPoints: ["scripts/bench-gpu.ts"],
  outfile: "dist/bench-gpu.mjs",
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node20",
  external: ["webgpu"],
  logLevel: "warning",
});
console.log("built dist/bench-gpu.mjs");

// The browser playground (served by `seqlab serve`).
const { buildWeb } = await import("./build-web.mjs");
await buildWeb();
console.log("built dist/web");
