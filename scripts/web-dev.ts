// `npm run web`: rebuild the playground into dist/web on every change and serve it (with the
// cross-origin isolation headers) on http://127.0.0.1:5173/ (PORT overrides).
// @ts-expect-error: a plain JavaScript build helper
import { watchWeb } from "./build-web.mjs";
import { startStaticServer } from "../src/cli/static_server.js";

await watchWeb(() => console.log(`rebuilt dist/web at ${new Date().toLocaleTimeString()}`));
const server = await startStaticServer("dist/web", Number(process.env.PORT ?? 5173));
console.log(`seqlab playground (dev): ${server.url}  (reload the page after an edit; Ctrl-C stops)`);
