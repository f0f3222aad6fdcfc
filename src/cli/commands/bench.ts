/**
 * `seqlab bench decode`: decoding throughput of a model directory.
 * `seqlab bench gpu`: the webgpu kernels and decoding on this machine's GPU, with PyTorch's
 * numbers from the same card when given (src/bench/gpu/run.ts).
 */
import * as fs from "node:fs";
import { createBackend, setDefaultBackend } from "../../backend/registry.js";
import { loadModel } from "../../models/load.js";
import { benchDecode } from "../../bench/decode.js";
import { SeqlabError } from "../../util/errors.js";
import { table } from "../../util/format.js";
import { intFlag } from "../args.js";
import { BACKEND_OPTIONS, threadsFlag, type Command, type Values } from "../command.js";
import { parseSections, runGpuBench, SECTIONS, type TorchFile } from "../../bench/gpu/run.js";

export const benchCommand: Command = {
  name: "bench",
  summary: "benchmarks: `bench decode --model DIR` (prefill and decode tokens/s), `bench gpu` (webgpu kernels and decoding vs PyTorch)",
  usage: "decode --model DIR [--prompt-tokens N] [--new-tokens M] [--threads T] [--backend NAME] [--json] [--out FILE]\n       gpu [--out FILE] [--torch FILE] [--quick] [--only SECTIONS] [--check] [--variants]",
  options: {
    model: { type: "string", help: "model directory (config.json + model.safetensors)" },
    "prompt-tokens": { type: "string", default: "128", help: "random prompt length" },
    "new-tokens": { type: "string", default: "64", help: "tokens to decode greedily" },
    seed: { type: "string", default: "0", help: "seed for the prompt" },
    json: { type: "boolean", help: "print the result as JSON" },
    out: { type: "string", help: "also write the JSON result to this file" },
    torch: { type: "string", help: "gpu: PyTorch's results from the same card (scripts/bench_gpu_torch.py --out)" },
    quick: { type: "boolean", help: "gpu: small shapes (a smoke run)" },
    only: { type: "string", help: `gpu: comma-separated sections (${SECTIONS.join(", ")}; default all)` },
    check: { type: "boolean", help: "gpu: compare each kernel timed against the CPU reference first" },
    variants: { type: "boolean", help: "gpu: also time other tile shapes and scan plans" },
    ...BACKEND_OPTIONS,
  },
  async run(v, pos) {
    const c = "bench";
    if (pos[0] === "gpu" && pos.length === 1) return benchGpu(v);
    if (pos[0] !== "decode" || pos.length !== 1) throw new SeqlabError(`bench: give a benchmark name: decode or gpu (got ${pos.length ? `"${pos.join(" ")}"` : "none"})`);
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

async function benchGpu(v: Values): Promise<number> {
  const sections = parseSections(v.only as string | undefined);
  if (typeof sections === "string") throw new SeqlabError(`bench gpu: --only: unknown section "${sections}" (sections: ${SECTIONS.join(", ")})`);
  let torch: TorchFile | null = null;
  if (v.torch) {
    const file = String(v.torch);
    if (!fs.existsSync(file)) throw new SeqlabError(`bench gpu: --torch ${file}: no such file`);
    try {
      torch = JSON.parse(fs.readFileSync(file, "utf8")) as TorchFile;
    } catch (e) {
      throw new SeqlabError(`bench gpu: --torch ${file}: not JSON (${(e as Error).message.split("\n")[0]})`);
    }
    if (!Array.isArray(torch?.results)) throw new SeqlabError(`bench gpu: --torch ${file}: no "results" list (write it with scripts/bench_gpu_torch.py --out)`);
  }
  const json = await runGpuBench({ quick: !!v.quick, sections, check: !!v.check, variants: !!v.variants, torch, log: (l) => console.log(l) });
  if (v.out) {
    fs.writeFileSync(String(v.out), JSON.stringify(json, null, 2) + "\n");
    console.log(`# wrote ${v.out}`);
  }
  return (json.checks as { ok: boolean }[]).some((c) => !c.ok) ? 1 : 0;
}
