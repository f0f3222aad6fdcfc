// `npm run web`: rebuild the playground into dist/web-dev on every change and serve it (with
// the cross-origin isolation headers) on http://127.0.0.1:5173/ (PORT overrides).
// @ts-expect-error: a plain JavaScript build helper
import { watchWeb } from "./build-web.mjs";
// @ts-expect-error: a plain JavaScript build helper
import { buildWasm } from "./build-wasm.mjs";
import { startStaticServer } from "../src/cli/static_server.js";

const OUT = "dist/web-dev";
await buildWasm({ ifStale: true }); // the cpu backend embeds the generated kernel module
await watchWeb(OUT, () => console.log(`built ${OUT} at ${new Date().toLocaleTimeString()}`));
const server = await startStaticServer(OUT, Number(process.env.PORT ?? 5173));
console.log(`seqlab playground (dev): ${server.url}  (reload the page after an edit; Ctrl-C stops)`);
