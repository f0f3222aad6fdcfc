/**
 * The seqlab command line. Every error a user can cause prints one line naming the thing and
 * the problem and exits non-zero; internal errors print one line too (SEQLAB_DEBUG=1 shows
 * the stack). Each command lives in commands/<name>.ts.
 */
import { SeqlabError } from "../util/errors.js";
import { helpText, parse } from "./args.js";
import type { Command } from "./command.js";
import { verifyCommand } from "./commands/verify.js";
import { evalCommand, trainCommand } from "./commands/train.js";
import { showdownCommand } from "./commands/showdown.js";
import { benchCommand } from "./commands/bench.js";
import { memoryCommand } from "./commands/memory.js";
import { exportCommand } from "./commands/export.js";
import { generateCommand } from "./commands/generate.js";
import { chatCommand } from "./commands/chat.js";
import { passkeyCommand } from "./commands/passkey.js";
import { serveCommand } from "./commands/serve.js";

const COMMANDS: Command[] = [
  showdownCommand,
  verifyCommand,
  trainCommand,
  evalCommand,
  generateCommand,
  chatCommand,
  passkeyCommand,
  benchCommand,
  memoryCommand,
  exportCommand,
  serveCommand,
];

function usage(): string {
  const lines = ["usage: seqlab <command> [options]", "", "commands:"];
  for (const c of COMMANDS) lines.push(`  ${c.name.padEnd(12)} ${c.summary}`);
  lines.push("", "seqlab <command> --help shows a command's options.");
  return lines.join("\n");
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === "--help" || name === "-h" || name === "help") {
    console.log(usage());
    return name ? 0 : 2;
  }
  const cmd = COMMANDS.find((c) => c.name === name);
  if (!cmd) throw new SeqlabError(`unknown command "${name}" (commands: ${COMMANDS.map((c) => c.name).join(", ")})`);
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
