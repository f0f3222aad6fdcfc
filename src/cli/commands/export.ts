/**
 * `seqlab export --gguf OUT.gguf --model DIR`: write a model's weights as a GGUF file that
 * llama.cpp (and node-llama-cpp) load: Llama and Mamba, with their tokenizer (or a minimal byte
 * vocabulary when the model has none).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { SeqlabError } from "../../util/errors.js";
import { formatBytes } from "../../util/format.js";
import type { Command } from "../command.js";
import { modelDir, MODEL_OPTION } from "../inference.js";
import { exportGguf, type ExportType } from "../../export/gguf_export.js";

const TYPES: ExportType[] = ["f32", "f16", "auto"];

export const exportCommand: Command = {
  name: "export",
  summary: "write a model as GGUF for llama.cpp (Llama, Mamba)",
  usage: "--gguf OUT.gguf --model DIR|hf:owner/name [--type f32|f16|auto]",
  options: {
    gguf: { type: "string", help: "the GGUF file to write" },
    ...MODEL_OPTION,
    type: { type: "string", default: "auto", help: "precision of the weight matrices: f32, f16, or auto (f16 when the checkpoint is half precision)" },
    help: { type: "boolean", short: "h", help: "show this help" },
  },
  async run(v, pos) {
    const c = "export";
    if (pos.length > 0) throw new SeqlabError(`${c}: unexpected argument "${pos[0]}"`);
    const out = v.gguf as string | undefined;
    if (!out) throw new SeqlabError(`${c}: --gguf OUT.gguf is required (the only export format)`);
    const type = v.type as ExportType;
    if (!TYPES.includes(type)) throw new SeqlabError(`${c}: --type must be one of ${TYPES.join(", ")}, got "${type}"`);
    if (!fs.existsSync(path.dirname(path.resolve(out)))) throw new SeqlabError(`${c}: ${path.dirname(out)}: no such directory for the output`);
    const dir = await modelDir(c, v);
    const r = exportGguf(dir, out, type);
    console.log(`export: ${out}: ${r.arch}, ${r.tensors} tensors, matrices ${r.matrixType}, ${formatBytes(fs.statSync(out).size)}`);
    return 0;
  },
};
