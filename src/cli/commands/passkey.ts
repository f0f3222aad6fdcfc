/**
 * `seqlab passkey --model DIR`: the passkey retrieval grid (context length x needle depth,
 * accuracy of greedy answers) for a model with a tokenizer (llama.cpp's text prompt) or one
 * trained on seqlab's synthetic passkey task (token-level). Prints the table, writes an HTML
 * heatmap with --out.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { SeqlabError } from "../../util/errors.js";
import { table } from "../../util/format.js";
import { intFlag, intListFlag, numFlag } from "../args.js";
import { assertWritableFile } from "../output_path.js";
import { BACKEND_OPTIONS, KV_CACHE_OPTION, LOAD_OPTIONS, type Command, type Values } from "../command.js";
import { checkTokenizerFits, loadForInference, modelDir, MODEL_OPTION } from "../inference.js";
import { hasTokenizer, loadTokenizer } from "../../io/tokenizer.js";
import { readTaskMarker } from "../../io/task_marker.js";
import { runPasskey, TextPasskeyProbe, TokenPasskeyProbe, type PasskeyGrid, type PasskeyProbe } from "../../experiments/passkey_probe.js";
import { passkeyReportHtml } from "../../report/passkey_html.js";

const DEFAULT_DEPTHS = [0, 0.25, 0.5, 0.75, 1];

function depthsFlag(c: string, v: Values): number[] {
  const s = v.depths;
  if (s === undefined) return DEFAULT_DEPTHS;
  if (typeof s !== "string" || s.trim() === "") throw new SeqlabError(`${c}: --depths needs a comma-separated list of numbers in [0, 1]`);
  return s.split(",").map((x) => numFlag(c, "depths", x.trim(), 0, 0, 1));
}

export const passkeyCommand: Command = {
  name: "passkey",
  summary: "passkey retrieval accuracy over context lengths x needle depths, with an HTML heatmap",
  usage: "--model DIR|hf:owner/name [--lengths 256,512,...] [--depths 0,0.25,...] [--trials N] [--seed S] [--out FILE.html]",
  options: {
    ...MODEL_OPTION,
    lengths: { type: "string", help: "context lengths in tokens (default 256,512,1024; the training length for task models)" },
    depths: { type: "string", help: "needle depths in [0, 1] (default 0,0.25,0.5,0.75,1)" },
    trials: { type: "string", default: "4", help: "passkeys per cell" },
    seed: { type: "string", default: "0", help: "seed for the passkeys" },
    out: { type: "string", help: "write the HTML report here" },
    ...LOAD_OPTIONS,
    ...BACKEND_OPTIONS,
    ...KV_CACHE_OPTION,
  },
  async run(v, pos) {
    const c = "passkey";
    if (pos.length > 0) throw new SeqlabError(`${c}: unexpected argument "${pos[0]}"`);
    const depths = depthsFlag(c, v);
    const trials = intFlag(c, "trials", v.trials, 4, 1, 1 << 20);
    const seed = intFlag(c, "seed", v.seed, 0, 0, 2 ** 31 - 1);
    const out = v.out as string | undefined;
    if (out !== undefined) assertWritableFile(`${c}: --out`, out);
    const dir = await modelDir(c, v);
    const { probe, defaultLengths } = probeFor(dir, seed);
    const lengths = intListFlag(c, "lengths", v.lengths, defaultLengths, 1, 1 << 24);
    for (const l of lengths) probe.checkLength(l);
    const { model, backend } = await loadForInference(c, v, dir);
    if (probe instanceof TextPasskeyProbe) checkTokenizerFits(loadTokenizer(dir), model);
    console.error(`${c}: ${probe.mode} passkey, lengths ${lengths.join(",")}, depths ${depths.join(",")}, ${trials} trials per cell`);
    const t0 = performance.now();
    const grid = await runPasskey(model, probe, {
      lengths,
      depths,
      trials,
      seed,
      onCell: (cell) => console.error(`${c}: length ${cell.length} depth ${cell.depth}: ${cell.correct}/${cell.trials} (${((performance.now() - t0) / 1000).toFixed(1)} s)`),
    });
    console.log(formatGrid(grid));
    if (out) {
      const info = { model: dir, modelType: model.config.modelType, parameters: model.parameterCount(), backend: backend.describe(), seed, date: new Date().toISOString() };
      fs.mkdirSync(path.dirname(path.resolve(out)), { recursive: true });
      fs.writeFileSync(out, passkeyReportHtml(grid, info));
      console.error(`${c}: wrote ${out}`);
    }
    return 0;
  },
};

/** Text prompts for a model with a tokenizer; the token-level task for a passkey-trained seqlab model. */
function probeFor(dir: string, seed: number): { probe: PasskeyProbe; defaultLengths: number[] } {
  if (hasTokenizer(dir)) return { probe: new TextPasskeyProbe(loadTokenizer(dir)), defaultLengths: [256, 512, 1024] };
  const marker = readTaskMarker(dir);
  if (marker?.name === "passkey") return { probe: new TokenPasskeyProbe(seed), defaultLengths: [marker.length ?? 64] };
  if (marker) throw new SeqlabError(`${dir}: the model was trained on task "${marker.name}", not passkey, and has no tokenizer`);
  throw new SeqlabError(`${dir}: no tokenizer found (tokenizer.json, rwkv_vocab*.txt) and no config.json "seqlab_task" marking a passkey-trained model`);
}

/** Accuracy per cell: depths down, lengths across. */
export function formatGrid(g: PasskeyGrid): string {
  const rows = g.depths.map((d) => [
    String(d),
    ...g.lengths.map((l) => {
      const cell = g.cells.find((x) => x.length === l && x.depth === d)!;
      return `${Math.round((100 * cell.correct) / cell.trials)}% (${cell.correct}/${cell.trials})`;
    }),
  ]);
  return table(["depth \\ length", ...g.lengths.map(String)], rows);
}
