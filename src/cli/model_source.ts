/**
 * What a command's --model names: a model directory (config.json, with model.safetensors when
 * weights are needed), a config.json file, or a preset built at the sizes the preset flags give.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { RawConfig } from "../io/config.js";
import { readConfigFile } from "../io/config_file.js";
import { preset, PRESET_NAMES } from "../models/presets.js";
import { SeqlabError } from "../util/errors.js";
import { intFlag, type OptionSpec } from "./args.js";
import type { Values } from "./command.js";

export const PRESET_OPTIONS: OptionSpec = {
  vocab: { type: "string", default: "256", help: "preset vocabulary" },
  width: { type: "string", default: "64", help: "preset width" },
  layers: { type: "string", help: "preset layers (default 2 for transformer and rwkv, 4 for the others)" },
  state: { type: "string", default: "16", help: "preset SSM state size" },
};

export interface ModelSource {
  raw: RawConfig;
  /** the model directory, when --model named one */
  dir: string | null;
}

export function modelSource(cmd: string, v: Values): ModelSource {
  const m = v.model;
  if (typeof m !== "string" || m === "") throw new SeqlabError(`${cmd}: --model DIR|PRESET is required`);
  if (fs.existsSync(m) && fs.statSync(m).isDirectory()) return { raw: readConfigFile(path.join(m, "config.json")), dir: m };
  if (m.endsWith(".json")) return { raw: readConfigFile(m), dir: null };
  if (!PRESET_NAMES.includes(m as never)) {
    throw new SeqlabError(`${cmd}: --model "${m}" is neither a model directory, a .json config nor a preset (${PRESET_NAMES.join(", ")})`);
  }
  const json = preset(m, {
    vocab: intFlag(cmd, "vocab", v.vocab, 256, 2, 1 << 24),
    width: intFlag(cmd, "width", v.width, 64, 8, 1 << 16),
    layers: v.layers === undefined ? undefined : intFlag(cmd, "layers", v.layers, 2, 1, 1024),
    state: intFlag(cmd, "state", v.state, 16, 1, 4096),
  });
  return { raw: new RawConfig(`preset ${m}`, json), dir: null };
}
