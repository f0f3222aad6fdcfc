/**
 * The seqlab command line. Every error a user can cause prints one line naming the thing and
 * the problem and exits non-zero; internal errors print one line too (SEQLAB_DEBUG=1 shows
 * the stack).
 */
import { SeqlabError } from "../util/errors.js";
import { helpText, parse, intFlag, type OptionSpec } from "./args.js";
import { verify } from "./verify.js";
import { backendNames } from "../backend/registry.js";

interface Command {
  summary: string;
  usage: string;
  options: OptionSpec;
  run(values: Record<string, string | boolean | undefined>, positionals: string[]): Promise<number>;
}

const COMMON: OptionSpec = {
  backend: { type: "string", default: "ref", help: `compute backend (${backendNames().join(", ")})` },
  threads: { type: "string", help: "worker threads for the cpu backend (default: all cores)" },
  help: { type: "boolean", short: "h", help: "show this help" },
};

const COMMANDS: Record<string, Command> = {
  verify: {
    summary: "check a model directory against its reference logits, hidden states, loss, gradients and generation",
    usage: "<model-dir> [--reference FILE] [--backend NAME]",
    options: { reference: { type: "string", help: "reference file (default <model-dir>/reference.safetensors)" }, ...COMMON },
    async run(v, pos) {
      if (pos.length !== 1) throw new SeqlabError("verify: give exactly one model directory");
      const ok = await verify(pos[0], { reference: v.reference as string | undefined, backend: v.backend as string, threads: threadsFlag("verify", v.threads) }, (l) => console.log(l));
      return ok ? 0 : 1;
    },
  },
};

function threadsFlag(command: string, v: string | boolean | undefined): number | undefined {
  return v === undefined ? undefined : intFlag(command, "threads", v, 0, 1, 256);
}

function usage(): string {
  const lines = ["usage: seqlab <command> [options]", "", "commands:"];
  for (const [name, c] of Object.entries(COMMANDS)) lines.push(`  ${name.padEnd(12)} ${c.summary}`);
  lines.push("", "seqlab <command> --help shows a command's options.");
  return lines.join("\n");
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === "--help" || name === "-h" || name === "help") {
    console.log(usage());
    return name ? 0 : 2;
  }
  const cmd = COMMANDS[name];
  if (!cmd) throw new SeqlabError(`unknown command "${name}" (commands: ${Object.keys(COMMANDS).join(", ")})`);
  const { values, positionals } = parse(name, rest, cmd.options);
  if (values.help) {
    console.log(helpText(name, cmd.usage, cmd.options));
    return 0;
  }
  return cmd.run(values, positionals);
}

export function reportError(e: unknown): void {
  if (e instanceof SeqlabError) {
    console.error(`seqlab: ${e.message}`);
  } else {
    const err = e as Error;
    console.error(`seqlab: internal error: ${err?.message ?? String(e)}`.split("\n")[0]);
    if (process.env.SEQLAB_DEBUG) console.error(err?.stack);
  }
}

export async function run(argv: string[]): Promise<void> {
  try {
    process.exitCode = await main(argv);
  } catch (e) {
    reportError(e);
    process.exitCode = e instanceof SeqlabError ? 2 : 70;
  }
}
