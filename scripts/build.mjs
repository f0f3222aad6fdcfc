// Build: bundle the CLI (and, as they arrive, the WebAssembly kernels and the web app) into dist/.
import { build } from "esbuild";
import { mkdirSync } from "node:fs";
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
});
console.log("built dist/seqlab.mjs");
