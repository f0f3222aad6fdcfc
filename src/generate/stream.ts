/**
 * Incremental detokenization: text pieces as tokens arrive, each piece emitted as soon as it is
 * complete. A token can end inside a multi-byte UTF-8 character (byte-level BPE, byte-fallback
 * and byte tokenizers split them), and some decoders change a token's text with its neighbours
 * (SentencePiece's leading space), so tokens are not decoded one by one: the window of recent
 * tokens is decoded twice, without and with the new ones, and the difference is emitted unless it
 * ends in U+FFFD, an incomplete character (the prefix/read-offset scheme of Hugging Face
 * text-generation-inference).
 */
import type { DecodeOptions, Tokenizer } from "../io/tokenizer.js";

/** Prompt tokens decoded ahead of the first new token, so that it decodes as it would in context. */
const CONTEXT_TOKENS = 5;

export class TextStreamer {
  private readonly ids: number[];
  /** ids[prefix, read) were emitted; ids[read, ...) are pending */
  private prefix = 0;
  private read: number;

  constructor(
    private readonly tok: Tokenizer,
    context: readonly number[] = [],
    private readonly opts: DecodeOptions = { skipSpecialTokens: true },
  ) {
    this.ids = context.slice(-CONTEXT_TOKENS);
    this.read = this.ids.length;
  }

  /** The text completed by `id` ("" while a character or a decode is still incomplete). */
  push(id: number): string {
    this.ids.push(id);
    const before = this.tok.decode(this.ids.slice(this.prefix, this.read), this.opts);
    const after = this.tok.decode(this.ids.slice(this.prefix), this.opts);
    if (after.length <= before.length || after.endsWith("\uFFFD")) return "";
    this.prefix = this.read;
    this.read = this.ids.length;
    return after.slice(before.length);
  }

  /** Whatever is still pending, complete or not (at the end of a generation). */
  flush(): string {
    const before = this.tok.decode(this.ids.slice(this.prefix, this.read), this.opts);
    const after = this.tok.decode(this.ids.slice(this.prefix), this.opts);
    this.prefix = this.read = this.ids.length;
    return after.length > before.length ? after.slice(before.length) : "";
  }
}
