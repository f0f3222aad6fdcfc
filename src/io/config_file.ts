/** Reading a config.json from disk (Node); parsing and typed access are in config.ts. */
import * as fs from "node:fs";
import { RawConfig } from "./config.js";
import { SeqlabError } from "../util/errors.js";

export function readConfigFile(path: string): RawConfig {
  let text: string;
  try {
    text = fs.readFileSync(path, "utf8");
  } catch (e) {
    throw new SeqlabError(`${path}: cannot read (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
  }
  return RawConfig.parse(path, text);
}
