/** `seqlab bench decode`: decoding throughput of a model directory. */
import * as fs from "node:fs";
import { createBackend, setDefaultBackend } from "../../backend/registry.js";
import { loadModel } from "../../models/load.js";
import { benchDecode } from "../../bench/decode.js";
import { SeqlabError } from "../../util/errors.js";
import { table } from "../../util/format.js";
import { intFlag } from "../args.js";
import { BACKEND_OPTIONS, threadsFlag, type Command } from "../command.js";

export const benchCommand: Command = {
  name: "bench",
  summary: "benchmarks: `bench decode --model DIR` (prefill and decode tokens/s)",
  usage: "decode --model DIR [--prompt-tokens N] [--new-tokens M] [--threads T] [--backend NAME] [--json] [--out FILE]",
  options: {
    model: { type: "string", help: "model directory (config.json + model.safetensors)" },
    "prompt-tokens": { type: "string", default: "128", help: "random prompt length" },
    "new-tokens": { type: "string", default: "64", help: "tokens to decode greedily" },
    seed: { type: "string", default: "0", help: "seed for the prompt" },
    json: { type: "boolean", help: "print the result as JSON" },
    out: { type: "string", help: "also write the JSON result to this file" },
    ...BACKEND_OPTIONS,
  },
  async run(v, pos) {
    const c = "bench";
    if (pos[0] !== "decode" || pos.length !== 1) throw new SeqlabError(`bench: give a benchmark name: decode (got ${pos.length ? `"${pos.join(" ")}"` : "none"})`);
    if (!v.model) throw new SeqlabError("bench decode: --model DIR is required");
    const promptTokens = intFlag(c, "prompt-tokens", v["prompt-tokens"], 128, 1, 1 << 20);
    const newTokens = intFlag(c, "new-tokens", v["new-tokens"], 64, 1, 1 << 20);
    const threads = threadsFlag(c, v.threads) ?? null;
    const be = await createBackend(v.backend as string, { threads: threads ?? undefined });
    setDefaultBackend(be);
    const model = loadModel(v.model as string, be);
    const { tokens: _tokens, ...r } = await benchDecode(model, { promptTokens, newTokens, seed: intFlag(c, "seed", v.seed, 0), threads });
    if (v.out) fs.writeFileSync(v.out as string, JSON.stringify(r, null, 1));
    if (v.json) console.log(JSON.stringify(r));
    else
      console.log(
        table(
          ["backend", "threads", "prompt", "new", "prefill tok/s", "decode tok/s", "peak RSS"],
          [[r.backend, r.threads ?? "default", r.prompt_tokens, r.new_tokens, r.prefill_tok_s.toFixed(1), r.decode_tok_s.toFixed(1), `${(r.peak_rss_bytes / 2 ** 20).toFixed(0)} MiB`]],
        ),
      );
    return 0;
  },
};
