/**
 * The byte tokenizer of seqlab's byte-level models (the "text" task, src/tasks/text.ts): token
 * id = one UTF-8 byte, vocabulary 256, no special tokens.
 */
import type { Tokenizer } from "./tokenizer.js";

export class ByteTokenizer implements Tokenizer {
  readonly kind = "byte" as const;
  readonly vocabSize = 256;
  readonly bosId = null;
  readonly eosIds: readonly number[] = [];
  readonly specialTokens = {};

  constructor(
    readonly source: string,
    readonly chatTemplate: string | null = null,
  ) {}

  encode(text: string): number[] {
    return Array.from(new TextEncoder().encode(text));
  }

  decode(ids: readonly number[]): string {
    return new TextDecoder("utf-8", { fatal: false }).decode(Uint8Array.from(ids.filter((id) => id >= 0 && id < 256)));
  }
}
