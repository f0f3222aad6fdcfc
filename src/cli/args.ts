/** Command-line parsing on node:util parseArgs, with one-line errors that name the flag. */
import { parseArgs } from "node:util";
import { SeqlabError } from "../util/errors.js";

export type OptionSpec = Record<string, { type: "string" | "boolean"; short?: string; default?: string | boolean; help: string }>;

export interface Parsed {
  values: Record<string, string | boolean | undefined>;
  positionals: string[];
}

export function parse(command: string, argv: string[], spec: OptionSpec): Parsed {
  const options = Object.fromEntries(
    Object.entries(spec).map(([k, v]) => [
      k,
      { type: v.type, ...(v.short ? { short: v.short } : {}), ...(v.default !== undefined ? { default: v.default } : {}) },
    ]),
  ) as Parameters<typeof parseArgs>[0] extends infer P ? (P extends { options?: infer O } ? O : never) : never;
  try {
    const { values, positionals } = parseArgs({ args: argv, options, allowPositionals: true, strict: true });
    return { values: values as Parsed["values"], positionals };
  } catch (e) {
    const msg = (e as Error).message.split("\n")[0].replace(/\. To specify a positional.*$/, "");
    throw new SeqlabError(`${command}: ${msg}`);
  }
}

/** An integer flag within [min, max]. */
export function intFlag(command: string, name: string, value: string | boolean | undefined, fallback: number, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (typeof value !== "string" || value.trim() === "" || !Number.isInteger(n) || n < min || n > max) {
    throw new SeqlabError(`${command}: --${name} must be an integer in [${min}, ${max}], got "${value}"`);
  }
  return n;
}

export function numFlag(command: string, name: string, value: string | boolean | undefined, fallback: number, min = -Infinity, max = Infinity): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (typeof value !== "string" || value.trim() === "" || !Number.isFinite(n) || n < min || n > max) {
    throw new SeqlabError(`${command}: --${name} must be a number in [${min}, ${max}], got "${value}"`);
  }
  return n;
}

/** A comma-separated list of integers. */
export function intListFlag(command: string, name: string, value: string | boolean | undefined, fallback: number[], min = 1, max = 1 << 24): number[] {
  if (value === undefined) return fallback;
  if (typeof value !== "string" || value.trim() === "") throw new SeqlabError(`${command}: --${name} needs a comma-separated list of integers`);
  return value.split(",").map((s) => intFlag(command, name, s.trim(), 0, min, max));
}

export function helpText(command: string, usage: string, spec: OptionSpec): string {
  const lines = [`usage: seqlab ${command} ${usage}`, ""];
  for (const [k, v] of Object.entries(spec)) {
    const flag = `--${k}${v.type === "string" ? " VALUE" : ""}`;
    lines.push(`  ${flag.padEnd(26)} ${v.help}${v.default !== undefined && v.default !== false ? ` (default ${v.default})` : ""}`);
  }
  return lines.join("\n");
}
