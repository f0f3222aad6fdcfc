/**
 * `seqlab bench decode`: decoding throughput of a model directory.
 * `seqlab bench cpu`: the cpu backend against llama.cpp on the same weights (src/bench/cpu.ts).
 * `seqlab bench gpu`: the webgpu kernels, decoding and training steps on this machine's GPU, with PyTorch's
 * numbers from the same card when given (src/bench/gpu/run.ts).
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { createBackend, setDefaultBackend } from "../../backend/registry.js";
import type { CpuBackend } from "../../backend/cpu/backend.js";
import { loadModel } from "../../models/load.js";
import { benchDecode } from "../../bench/decode.js";
import { benchCpu } from "../../bench/cpu.js";
import { cpuBenchTable } from "../../bench/cpu_report.js";
import { BENCH_MODELS, BENCH_TYPES, type BenchModelName, type BenchWeightType } from "../../bench/cpu_models.js";
import { SeqlabError } from "../../util/errors.js";
import { table } from "../../util/format.js";
import { intFlag } from "../args.js";
import { assertWritableFile } from "../output_path.js";
import { BACKEND_OPTIONS, KV_CACHE_OPTION, cpuIsaFlag, kvCacheFlag, threadsFlag, type Command, type Values } from "../command.js";
import { parseSections, runGpuBench, SECTIONS, type TorchFile } from "../../bench/gpu/run.js";

export const benchCommand: Command = {
  name: "bench",
  summary: "benchmarks: `bench decode --model DIR` (prefill and decode tokens/s), `bench cpu` (cpu backend vs llama.cpp), `bench gpu` (webgpu kernels, decoding and training steps vs PyTorch)",
  usage: "decode --model DIR [--prompt-tokens N] [--new-tokens M] [--threads T] [--backend NAME] [--json] [--out FILE]\n" +
    "       seqlab bench cpu [--threads N] [--out FILE] [--quick] [--models mamba,mamba2,llama] [--types f32,f16] [--repeats R] [--cache DIR]\n" +
    "       seqlab bench gpu [--out FILE] [--torch FILE] [--quick] [--only SECTIONS] [--check] [--variants] [--model-dir DIR]",
  options: {
    model: { type: "string", help: "decode: model directory (config.json + model.safetensors)" },
    "prompt-tokens": { type: "string", default: "128", help: "decode: random prompt length" },
    "new-tokens": { type: "string", default: "64", help: "decode: tokens to decode greedily" },
    seed: { type: "string", default: "0", help: "seed for the prompt (cpu: and the model weights)" },
    json: { type: "boolean", help: "print the result as JSON" },
    out: { type: "string", help: "also write the JSON result to this file" },
    quick: { type: "boolean", help: "cpu, gpu: tiny models / small shapes and short runs (a smoke test of the whole benchmark)" },
    models: { type: "string", help: `cpu: models to run (${BENCH_MODELS.join(",")})` },
    types: { type: "string", help: `cpu: weight types to run (${BENCH_TYPES.join(",")})` },
    repeats: { type: "string", help: "cpu: runs of each engine per measurement (default 3; 1 with --quick)" },
    cache: { type: "string", help: "cpu: where the benchmark models are written once and reused (default: the system temp dir)" },
    torch: { type: "string", help: "gpu: PyTorch's results from the same card (scripts/bench_gpu_torch.py --out)" },
    only: { type: "string", help: `gpu: comma-separated sections (${SECTIONS.join(", ")}; default all)` },
    check: { type: "boolean", help: "gpu: compare each kernel timed against the CPU reference first" },
    variants: { type: "boolean", help: "gpu: also time other tile shapes and scan plans" },
    "variant-names": { type: "string", help: "gpu: with --variants, only the scan plans and attention tiles whose name contains one of these (comma-separated)" },
    "model-dir": { type: "string", help: "gpu: decode and train the models saved under DIR/NAME by scripts/bench_gpu_torch.py --decode-dir (default: seeded weights)" },
    ...BACKEND_OPTIONS,
    ...KV_CACHE_OPTION,
  },
  async run(v, pos) {
    const name = pos.length === 1 ? pos[0] : undefined;
    if (name !== "decode" && name !== "cpu" && name !== "gpu") throw new SeqlabError(`bench: give a benchmark name: decode, cpu or gpu (got ${pos.length ? `"${pos.join(" ")}"` : "none"})`);
    if (v.out !== undefined) assertWritableFile(`bench ${name}: --out`, String(v.out));
    return name === "cpu" ? runCpu(v) : name === "gpu" ? runGpu(v) : runDecode(v);
  },
};

async function runDecode(v: Values): Promise<number> {
  const c = "bench";
  if (!v.model) throw new SeqlabError("bench decode: --model DIR is required");
  const promptTokens = intFlag(c, "prompt-tokens", v["prompt-tokens"], 128, 1, 1 << 20);
  const newTokens = intFlag(c, "new-tokens", v["new-tokens"], 64, 1, 1 << 20);
  const threads = threadsFlag(c, v.threads) ?? null;
  const be = await createBackend(v.backend as string, { threads: threads ?? undefined, kvCache: kvCacheFlag(c, v["kv-cache"]), cpuIsa: cpuIsaFlag(c, v["cpu-isa"]) });
  setDefaultBackend(be);
  const model = loadModel(v.model as string, be);
  const { tokens: _tokens, ...r } = await benchDecode(model, { promptTokens, newTokens, seed: intFlag(c, "seed", v.seed, 0), threads });
  if (v.out) {
    fs.mkdirSync(path.dirname(path.resolve(v.out as string)), { recursive: true });
    fs.writeFileSync(v.out as string, JSON.stringify(r, null, 1));
  }
  if (v.json) console.log(JSON.stringify(r));
  else
    console.log(
      table(
        ["backend", "threads", "prompt", "new", "prefill tok/s", "decode tok/s", "peak RSS"],
        [[r.backend, r.threads ?? "default", r.prompt_tokens, r.new_tokens, r.prefill_tok_s.toFixed(1), r.decode_tok_s.toFixed(1), `${(r.peak_rss_bytes / 2 ** 20).toFixed(0)} MiB`]],
      ),
    );
  return 0;
}

/** A comma-separated subset of `choices`. */
function listFlag<T extends string>(c: string, name: string, value: string | boolean | undefined, choices: readonly T[]): T[] {
  if (value === undefined) return [...choices];
  const items = String(value).split(",").map((s) => s.trim());
  for (const x of items) if (!choices.includes(x as T)) throw new SeqlabError(`${c}: --${name} takes a comma-separated list of ${choices.join(", ")}, got "${x}"`);
  return [...new Set(items)] as T[];
}

async function runCpu(v: Values): Promise<number> {
  const c = "bench cpu";
  if (v.backend !== undefined && v.backend !== "ref" && v.backend !== "cpu") throw new SeqlabError(`${c}: measures the cpu backend (--backend ${v.backend} does not apply)`);
  const threads = threadsFlag(c, v.threads) ?? os.availableParallelism();
  const models = listFlag<BenchModelName>(c, "models", v.models, BENCH_MODELS);
  const types = listFlag<BenchWeightType>(c, "types", v.types, BENCH_TYPES);
  const repeats = v.repeats === undefined ? undefined : intFlag(c, "repeats", v.repeats, 3, 1, 100);
  const cacheDir = (v.cache as string | undefined) ?? path.join(os.tmpdir(), "seqlab-bench-cpu");
  // seqlab's default f32 KV cache unless told otherwise (llama.cpp's is f16): with --kv-cache f16
  // the Llama lines after 2048 tokens measured the same within noise (decode attention is bound
  // by the f16 widening as much as by the halved bytes), and f32 keeps the exact keys
  const kvCache = kvCacheFlag(c, v["kv-cache"]);
  const be = (await createBackend("cpu", { threads, kvCache, cpuIsa: cpuIsaFlag(c, v["cpu-isa"]) })) as CpuBackend;
  try {
    setDefaultBackend(be);
    const r = await benchCpu(be, { threads, quick: !!v.quick, models, types, repeats, cacheDir, seed: intFlag(c, "seed", v.seed, 0), log: (l) => (v.json ? undefined : console.log(l)) });
    if (v.out) {
      fs.mkdirSync(path.dirname(path.resolve(v.out as string)), { recursive: true });
      fs.writeFileSync(v.out as string, JSON.stringify(r, null, 1) + "\n");
    }
    if (v.json) console.log(JSON.stringify(r));
    else console.log("\n" + cpuBenchTable(r));
    return r.greedy.every((g) => g.match) ? 0 : 1;
  } finally {
    await be.dispose();
  }
}

/** --variant-names a,b: the names to keep (only meaningful with --variants). */
function parseVariantNames(v: Values): string[] | undefined {
  if (v["variant-names"] === undefined) return undefined;
  if (!v.variants) throw new SeqlabError("bench gpu: --variant-names only filters --variants: give both");
  const names = String(v["variant-names"]).split(",").map((n) => n.trim()).filter((n) => n.length > 0);
  if (names.length === 0) throw new SeqlabError("bench gpu: --variant-names takes a comma-separated list of plan names (e.g. lookback,CH64)");
  return names;
}

async function runGpu(v: Values): Promise<number> {
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
  const modelDir = v["model-dir"] as string | undefined;
  if (modelDir !== undefined && !fs.existsSync(modelDir)) throw new SeqlabError(`bench gpu: --model-dir ${modelDir}: no such directory`);
  const variantNames = parseVariantNames(v);
  const json = await runGpuBench({ quick: !!v.quick, sections, check: !!v.check, variants: !!v.variants, variantNames, torch, modelDir, log: (l) => console.log(l) });
  if (v.out) {
    fs.mkdirSync(path.dirname(path.resolve(String(v.out))), { recursive: true });
    fs.writeFileSync(String(v.out), JSON.stringify(json, null, 2) + "\n");
    console.log(`# wrote ${v.out}`);
  }
  return (json.checks as { ok: boolean }[]).some((c) => !c.ok) ? 1 : 0;
}
