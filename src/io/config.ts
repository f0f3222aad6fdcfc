/**
 * Reading HF config.json files. A RawConfig wraps the parsed JSON with typed getters that
 * name the file and the key in their errors, so each model's typed config is a short list of
 * lookups with defaults taken from the matching transformers configuration class.
 */
import { SeqlabError } from "../util/errors.js";

export class RawConfig {
  constructor(
    readonly source: string,
    readonly json: Record<string, unknown>,
  ) {}

  /**
   * A config from the text of a config.json; `source` (a path, or a file name in a browser) is
   * what errors name. Files are read by io/config_file.ts: this module stays free of Node APIs,
   * so the browser bundle can parse configs too.
   */
  static parse(source: string, text: string): RawConfig {
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      throw new SeqlabError(`${source}: not valid JSON`);
    }
    if (typeof json !== "object" || json === null || Array.isArray(json)) throw new SeqlabError(`${source}: not a JSON object`);
    return new RawConfig(source, json as Record<string, unknown>);
  }

  has(key: string): boolean {
    return this.json[key] !== undefined && this.json[key] !== null;
  }

  private fail(key: string, problem: string): never {
    throw new SeqlabError(`${this.source}: "${key}" ${problem}`);
  }

  private value(key: string, fallback: unknown): unknown {
    const v = this.json[key];
    if (v === undefined || v === null) {
      if (fallback === undefined) this.fail(key, "is missing");
      return fallback;
    }
    return v;
  }

  /** A positive integer (or >= min). */
  int(key: string, fallback?: number, min = 1): number {
    const v = this.value(key, fallback);
    if (typeof v !== "number" || !Number.isSafeInteger(v)) this.fail(key, `must be an integer, got ${JSON.stringify(v)}`);
    if (v < min) this.fail(key, `must be at least ${min}, got ${v}`);
    return v;
  }

  num(key: string, fallback?: number): number {
    const v = this.value(key, fallback);
    if (typeof v !== "number" || !Number.isFinite(v)) this.fail(key, `must be a finite number, got ${JSON.stringify(v)}`);
    return v;
  }

  bool(key: string, fallback?: boolean): boolean {
    const v = this.value(key, fallback);
    if (typeof v !== "boolean") this.fail(key, `must be true or false, got ${JSON.stringify(v)}`);
    return v;
  }

  str(key: string, fallback?: string): string {
    const v = this.value(key, fallback);
    if (typeof v !== "string") this.fail(key, `must be a string, got ${JSON.stringify(v)}`);
    return v;
  }

  oneOf<T extends string>(key: string, allowed: readonly T[], fallback?: T): T {
    const v = this.str(key, fallback);
    if (!allowed.includes(v as T)) this.fail(key, `must be one of ${allowed.join(", ")}, got "${v}"`);
    return v as T;
  }

  /**
   * A list of numbers (time_step_limit and the like). Non-finite values are accepted in the
   * encodings transformers writes: {"__float__": "Infinity"} (transformers 5) or the strings
   * "Infinity", "-Infinity", "inf", "-inf".
   */
  floats(key: string, fallback?: number[]): number[] {
    const v = this.value(key, fallback);
    if (!Array.isArray(v)) this.fail(key, `must be a list of numbers, got ${JSON.stringify(v)}`);
    return v.map((x) => {
      const n = decodeFloat(x);
      if (n === null) this.fail(key, `must be a list of numbers, got ${JSON.stringify(v)}`);
      return n;
    });
  }

  /** An array of strings (layer_types and the like). */
  strings(key: string, fallback?: string[]): string[] {
    const v = this.value(key, fallback);
    if (!Array.isArray(v) || !v.every((x) => typeof x === "string")) this.fail(key, "must be a list of strings");
    return v as string[];
  }

  /** An array of integers (mlp_only_layers and the like). */
  ints(key: string, fallback?: number[]): number[] {
    const v = this.value(key, fallback);
    if (!Array.isArray(v) || !v.every((x) => typeof x === "number" && Number.isSafeInteger(x))) this.fail(key, "must be a list of integers");
    return v as number[];
  }

  /** A nested object (rope_parameters, rope_scaling), or null when absent. */
  object(key: string): RawConfig | null {
    const v = this.json[key];
    if (v === undefined || v === null) return null;
    if (typeof v !== "object" || Array.isArray(v)) this.fail(key, "must be an object");
    return new RawConfig(`${this.source} (${key})`, v as Record<string, unknown>);
  }

  /** Checks a derived relation and reports it against the config. */
  require(cond: boolean, problem: string): void {
    if (!cond) throw new SeqlabError(`${this.source}: ${problem}`);
  }
}

const NON_FINITE: Record<string, number> = { Infinity: Infinity, "-Infinity": -Infinity, inf: Infinity, "-inf": -Infinity, NaN: NaN };

/** A JSON number, or a non-finite float as transformers serialises it; null otherwise. */
function decodeFloat(x: unknown): number | null {
  if (typeof x === "number") return x;
  const tagged = typeof x === "object" && x !== null && !Array.isArray(x) ? (x as Record<string, unknown>).__float__ : x;
  return typeof tagged === "string" && tagged in NON_FINITE ? NON_FINITE[tagged] : null;
}
