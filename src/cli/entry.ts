/** Process entry for the seqlab binary. */
import { run } from "./main.js";

await run(process.argv.slice(2));
