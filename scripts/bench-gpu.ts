/**
 * The GPU benchmark as a standalone bundle (dist/bench-gpu.mjs: node and the webgpu package are
 * all a GPU machine needs); `seqlab bench gpu` runs the same code (src/bench/gpu/run.ts).
 *
 *   source .device/prologue.sh && python scripts/bench_gpu_torch.py --out torch.json &&
 *     node dist/bench-gpu.mjs --torch torch.json --out bench-gpu.json
 * Flags: --out FILE (JSON: both sides and their ratios when --torch is given), --torch FILE
 * (PyTorch's results from the same card), --quick (small shapes, for a smoke run),
 * --only copy,scan,matvec,decode,train,profile,matmul,attention, --check (compare every kernel timed against
 * the CPU reference on random inputs first), --variants [NAME,...] (also time other tiles and
 * plans; with names, only the scan plans and attention tiles whose name contains one of them),
 * --model-dir DIR (decode the models PyTorch saved there), --write-configs DIR (only write the
 * decode models' config.json files there, for scripts/bench_gpu_torch.py --decode-dir DIR):
 *
 *   node dist/bench-gpu.mjs --write-configs m && python scripts/bench_gpu_torch.py --decode-dir m --out torch.json &&
 *     node dist/bench-gpu.mjs --model-dir m --torch torch.json --out bench-gpu.json
 */
import * as fs from "node:fs";
import { parseSections, runGpuBench, SECTIONS, type TorchFile } from "../src/bench/gpu/run.js";
import { DECODE_MODELS, QUICK_MODELS, writeDecodeConfigs } from "../src/bench/gpu/decode.js";

function flag(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return undefined;
  const v = process.argv[i + 1];
  return v && !v.startsWith("--") ? v : "true";
}

async function main(): Promise<void> {
  const configs = flag("write-configs");
  if (configs && configs !== "true") {
    writeDecodeConfigs(configs, flag("quick") !== undefined ? QUICK_MODELS : DECODE_MODELS);
    console.log(`# wrote the decode models' configs under ${configs}`);
    return;
  }
  const sections = parseSections(flag("only"));
  if (typeof sections === "string") throw new Error(`--only: unknown section "${sections}" (sections: ${SECTIONS.join(", ")})`);
  const torchFile = flag("torch");
  const torch = torchFile && torchFile !== "true" ? (JSON.parse(fs.readFileSync(torchFile, "utf8")) as TorchFile) : null;
  const modelDir = flag("model-dir");
  const json = await runGpuBench({
    quick: flag("quick") !== undefined,
    sections,
    check: flag("check") !== undefined,
    variants: flag("variants") !== undefined,
    variantNames: flag("variants") && flag("variants") !== "true" ? flag("variants")!.split(",") : undefined,
    torch,
    modelDir: modelDir && modelDir !== "true" ? modelDir : undefined,
    log: (l) => console.log(l),
  });
  const out = flag("out");
  if (out && out !== "true") {
    fs.writeFileSync(out, JSON.stringify(json, null, 2) + "\n");
    console.log(`# wrote ${out}`);
  }
  const checks = json.checks as { ok: boolean }[];
  if (checks.some((c) => !c.ok)) process.exitCode = 1;
}

main().catch((e) => {
  console.error(`bench-gpu: ${(e as Error).message.split("\n")[0]}`);
  process.exitCode = 1;
});
