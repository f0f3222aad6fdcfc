/** A seqlab subcommand: its options, usage, and what it runs. */
import type { OptionSpec } from "./args.js";
import { intFlag } from "./args.js";
import { backendNames } from "../backend/registry.js";

export type Values = Record<string, string | boolean | undefined>;

export interface Command {
  name: string;
  summary: string;
  usage: string;
  options: OptionSpec;
  /** returns the exit status */
  run(values: Values, positionals: string[]): Promise<number>;
}

/** Options every compute command takes. */
export const BACKEND_OPTIONS: OptionSpec = {
  backend: { type: "string", default: "ref", help: `compute backend (${backendNames().join(", ")})` },
  threads: { type: "string", help: "worker threads for the cpu backend (default: all cores)" },
  help: { type: "boolean", short: "h", help: "show this help" },
};

export function threadsFlag(command: string, v: string | boolean | undefined): number | undefined {
  return v === undefined ? undefined : intFlag(command, "threads", v, 0, 1, 256);
}
