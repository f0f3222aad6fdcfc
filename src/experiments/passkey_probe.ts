/**
 * The passkey retrieval test (Mohtashami & Jaggi 2023, "Landmark Attention") over a grid of
 * context lengths x needle depths, with greedy decoding, for any causal LM:
 *
 * - text models (with a tokenizer) get llama.cpp's examples/passkey prompt: an instruction, the
 *   junk sentence repeated, "The pass key is N. Remember it. N is the pass key." hidden before
 *   repetition i_pos of the junk, then "What is the pass key? The pass key is", and must answer
 *   with N (1..50000). llama.cpp sizes the haystack by a repetition count (--junk); here the
 *   count is the largest whose prompt fits the target length in tokens, and the needle goes
 *   before repetition round(depth x count) (after the last one at depth 1).
 * - models trained on seqlab's synthetic passkey task (src/tasks/passkey.ts) get its token-level
 *   sequences at the target length and depth, ending at QUERY, and must emit the five digits.
 */
import type { CausalLM } from "../models/causal_lm.js";
import type { Tokenizer } from "../io/tokenizer.js";
import { generate } from "../generate/generate.js";
import { PasskeyTask } from "../tasks/passkey.js";
import { Rng } from "../util/rng.js";
import { SeqlabError } from "../util/errors.js";

export const PROMPT_PREFIX =
  "There is an important info hidden inside a lot of irrelevant text. Find it and memorize them. I will quiz you about the important information there.";
export const JUNK = " The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.";
export const needle = (key: number) => ` The pass key is ${key}. Remember it. ${key} is the pass key.`;
export const PROMPT_SUFFIX = " What is the pass key? The pass key is";

/** One prompt of the grid, and how its answer is judged. */
export interface PasskeyTrial {
  prompt: number[];
  /** the passkey as the model should write it */
  answer: string;
  /** tokens to generate (greedy) */
  maxNewTokens: number;
  /** the passkey the generated tokens state, or null */
  read(tokens: number[]): string | null;
}

/** How trials are made for one kind of model. */
export interface PasskeyProbe {
  readonly mode: "text" | "tokens";
  /** Throws when no prompt of this length can be made (before any model is loaded). */
  checkLength(length: number): void;
  trial(length: number, depth: number, rng: Rng, index: number): PasskeyTrial;
}

/** llama.cpp's prompt, sized to `length` tokens. */
export class TextPasskeyProbe implements PasskeyProbe {
  readonly mode = "text";
  private readonly junkCounts = new Map<number, number>();

  constructor(
    private readonly tok: Tokenizer,
    private readonly maxNewTokens = 8,
  ) {}

  /** The text with `count` junk repetitions and the needle before repetition `at`. */
  static text(count: number, at: number, key: number): string {
    let s = PROMPT_PREFIX;
    for (let i = 0; i <= count; i++) {
      if (i === at) s += needle(key);
      if (i < count) s += JUNK;
    }
    return s + PROMPT_SUFFIX;
  }

  private encode(count: number, at: number, key: number): number[] {
    return this.tok.encode(TextPasskeyProbe.text(count, at, key));
  }

  /** The most junk repetitions whose prompt (with a 5-digit key) fits in `length` tokens. */
  junkCount(length: number): number {
    const known = this.junkCounts.get(length);
    if (known !== undefined) return known;
    const size = (n: number) => this.encode(n, 0, 88888).length;
    const base = size(0);
    if (base > length) throw new SeqlabError(`passkey: length ${length} is shorter than the prompt without junk (${base} tokens)`);
    const per = Math.max(1, size(2) - size(1));
    let n = Math.floor((length - base) / per);
    while (n > 0 && size(n) > length) n--;
    while (size(n + 1) <= length) n++;
    this.junkCounts.set(length, n);
    return n;
  }

  checkLength(length: number): void {
    this.junkCount(length);
  }

  trial(length: number, depth: number, rng: Rng): PasskeyTrial {
    const count = this.junkCount(length);
    const key = rng.int(1, 50001); // llama.cpp: rand() % 50000 + 1
    return {
      prompt: this.encode(count, Math.round(depth * count), key),
      answer: String(key),
      maxNewTokens: this.maxNewTokens,
      read: (tokens) => /\d+/.exec(this.tok.decode(tokens, { skipSpecialTokens: true }))?.[0] ?? null,
    };
  }
}

/** seqlab's token-level passkey task: the sequence up to QUERY, answered by five digit tokens. */
export class TokenPasskeyProbe implements PasskeyProbe {
  readonly mode = "tokens";
  static readonly DIGITS = 5;

  constructor(private readonly seed: number) {}

  checkLength(length: number): void {
    new PasskeyTask(length, this.seed, 0);
  }

  trial(length: number, depth: number, _rng: Rng, index: number): PasskeyTrial {
    const batch = new PasskeyTask(length, this.seed, depth).batch("heldout", index, 1);
    const split = length - TokenPasskeyProbe.DIGITS;
    const digits = Array.from(batch.ids.subarray(split));
    return {
      prompt: Array.from(batch.ids.subarray(0, split)),
      answer: digits.join(""),
      maxNewTokens: TokenPasskeyProbe.DIGITS,
      read: (tokens) => (tokens.every((t) => t >= 0 && t <= 9) ? tokens.join("") : null),
    };
  }
}

export interface PasskeyCell {
  length: number;
  depth: number;
  correct: number;
  trials: number;
  /** prompt lengths in tokens (text prompts land at or below the target) */
  promptTokens: number[];
  /** what the model answered, per trial */
  answers: { expected: string; got: string | null }[];
}

export interface PasskeyGrid {
  mode: "text" | "tokens";
  lengths: number[];
  depths: number[];
  cells: PasskeyCell[];
}

export interface PasskeyOptions {
  lengths: number[];
  depths: number[];
  trials: number;
  seed: number;
  onCell?: (c: PasskeyCell) => void;
}

export async function runPasskey(model: CausalLM, probe: PasskeyProbe, o: PasskeyOptions): Promise<PasskeyGrid> {
  const max = model.config.maxPositions;
  const cells: PasskeyCell[] = [];
  for (const [li, length] of o.lengths.entries()) {
    if (max !== null && length > max) throw new SeqlabError(`passkey: length ${length} exceeds the model's ${max} positions`);
    for (const [di, depth] of o.depths.entries()) {
      const cell: PasskeyCell = { length, depth, correct: 0, trials: o.trials, promptTokens: [], answers: [] };
      for (let t = 0; t < o.trials; t++) {
        const rng = new Rng((o.seed * 0x9e3779b1) ^ Math.imul(li + 1, 0x85ebca6b) ^ Math.imul(di + 1, 0xc2b2ae35) ^ (t * 0x27d4eb2f));
        const trial = probe.trial(length, depth, rng, t);
        const { tokens } = await generate(model, trial.prompt, { maxNewTokens: trial.maxNewTokens });
        const got = trial.read(tokens.slice(trial.prompt.length));
        cell.promptTokens.push(trial.prompt.length);
        cell.answers.push({ expected: trial.answer, got });
        if (got === trial.answer) cell.correct++;
      }
      cells.push(cell);
      o.onCell?.(cell);
    }
  }
  return { mode: probe.mode, lengths: o.lengths, depths: o.depths, cells };
}
