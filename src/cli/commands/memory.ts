/**
 * `seqlab memory --model DIR|PRESET [--position N]`: inference memory by layer kind at a position,
 * from shapes alone (nothing is run, no weights are read): KV-cache bytes, which grow with every
 * token, against recurrent-state bytes, which do not.
 */
import { configMemory, type MemoryReport } from "../../models/memory.js";
import { formatBytes, table } from "../../util/format.js";
import { intFlag } from "../args.js";
import type { Command } from "../command.js";
import { modelSource, PRESET_OPTIONS } from "../model_source.js";

export const memoryCommand: Command = {
  name: "memory",
  summary: "KV-cache vs recurrent-state bytes per layer kind at a position (from shapes)",
  usage: "--model DIR|config.json|PRESET [--position N] [--batch B] [--json]",
  options: {
    model: { type: "string", help: "model directory, config.json or preset" },
    position: { type: "string", default: "4096", help: "tokens held in the state" },
    batch: { type: "string", default: "1", help: "sequences" },
    json: { type: "boolean", help: "print the report as JSON" },
    ...PRESET_OPTIONS,
    help: { type: "boolean", short: "h", help: "show this help" },
  },
  async run(v) {
    const c = "memory";
    const src = modelSource(c, v);
    const r = configMemory(src.raw, intFlag(c, "position", v.position, 4096, 0, 1 << 30), intFlag(c, "batch", v.batch, 1, 1, 1 << 20));
    console.log(v.json ? JSON.stringify(r) : formatReport(r, src.dir ?? String(v.model)));
    return 0;
  },
};

export function formatReport(r: MemoryReport, name: string): string {
  const rows = r.byKind.map((k) => [
    k.kind === "attention" ? "attention (KV cache)" : `${k.kind} (recurrent)`,
    k.layers,
    formatBytes(k.bytes / k.layers),
    k.bytesPerToken > 0 ? formatBytes(k.bytesPerToken / k.layers) : "0 (fixed)",
    formatBytes(k.bytes),
  ]);
  return [
    `memory ${name}: ${r.modelType}, ${r.layers.length} layers, batch ${r.batch}, position ${r.position} (from shapes; nothing is run)`,
    table(["layer kind", "layers", "bytes per layer", "per token per layer", "total"], rows),
    `KV cache ${formatBytes(r.kvCache)} (${r.kvCache} B), recurrent state ${formatBytes(r.recurrent)} (${r.recurrent} B), ` +
      `state total ${formatBytes(r.kvCache + r.recurrent)}; weights ${formatBytes(r.parameterBytes)} in float32`,
  ].join("\n");
}
