/**
 * The RWKV World tokenizer (BlinkDL, rwkv_vocab_v20230424.txt): 65529 byte strings, matched
 * greedily, longest first, over the UTF-8 bytes of the text with a trie (the TRIE_TOKENIZER of
 * ChatRWKV / the rwkv pip package). Each vocabulary line is `<id> <Python str or bytes literal>
 * <byte length>`; a str literal stands for its UTF-8 bytes. Id 0 is <|endoftext|> (not in the
 * file); it ends a text, so it is the EOS; there is no BOS.
 */
import * as fs from "node:fs";
import { SeqlabError } from "../util/errors.js";
import type { DecodeOptions, Tokenizer } from "./tokenizer.js";

const END_OF_TEXT = 0;

/** A trie node: children by next byte; `id` when the bytes so far are a token. */
interface TrieNode {
  next: Map<number, TrieNode>;
  id: number;
}

export class RwkvWorldTokenizer implements Tokenizer {
  readonly kind = "rwkv-world" as const;
  readonly vocabSize: number;
  readonly bosId = null;
  readonly eosIds = [END_OF_TEXT];
  readonly specialTokens = { eos_token: "<|endoftext|>" };
  private readonly root: TrieNode = { next: new Map(), id: -1 };
  private readonly bytesOf: (Uint8Array | undefined)[] = [];

  constructor(
    readonly source: string,
    vocab: Map<number, Uint8Array>,
    readonly chatTemplate: string | null = null,
  ) {
    let max = END_OF_TEXT;
    for (const [id, bytes] of vocab) {
      this.bytesOf[id] = bytes;
      this.insert(bytes, id);
      max = Math.max(max, id);
    }
    this.vocabSize = max + 1;
    for (let b = 0; b < 256; b++) {
      if (!this.root.next.get(b) || this.root.next.get(b)!.id < 0) throw new SeqlabError(`${source}: the vocabulary has no token for the single byte 0x${b.toString(16).padStart(2, "0")}`);
    }
  }

  static fromFile(file: string, chatTemplate: string | null = null): RwkvWorldTokenizer {
    let text: string;
    try {
      text = fs.readFileSync(file, "utf8");
    } catch (e) {
      throw new SeqlabError(`${file}: cannot read (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
    }
    return new RwkvWorldTokenizer(file, parseVocab(file, text), chatTemplate);
  }

  private insert(bytes: Uint8Array, id: number): void {
    let node = this.root;
    for (const b of bytes) {
      let child = node.next.get(b);
      if (!child) node.next.set(b, (child = { next: new Map(), id: -1 }));
      node = child;
    }
    node.id = id;
  }

  /** Greedy longest match: at each position take the longest vocabulary entry that the bytes start with. */
  encode(text: string): number[] {
    const src = new TextEncoder().encode(text);
    const ids: number[] = [];
    let i = 0;
    while (i < src.length) {
      let node = this.root;
      let bestId = -1;
      let bestEnd = i;
      for (let j = i; j < src.length; j++) {
        const child = node.next.get(src[j]);
        if (!child) break;
        node = child;
        if (node.id >= 0) {
          bestId = node.id;
          bestEnd = j + 1;
        }
      }
      ids.push(bestId); // every single byte is a token (checked at construction), so bestEnd > i
      i = bestEnd;
    }
    return ids;
  }

  decode(ids: readonly number[], opts: DecodeOptions = {}): string {
    const parts: Uint8Array[] = [];
    for (const id of ids) {
      if (id === END_OF_TEXT) {
        if (!opts.skipSpecialTokens) parts.push(new TextEncoder().encode("<|endoftext|>"));
        continue;
      }
      const b = this.bytesOf[id];
      if (b) parts.push(b);
    }
    return new TextDecoder("utf-8", { fatal: false }).decode(concat(parts));
  }
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** Parse every line `<id> <literal> <length>`, checking the literal's byte length. */
export function parseVocab(file: string, text: string): Map<number, Uint8Array> {
  const vocab = new Map<number, Uint8Array>();
  const lines = text.split("\n");
  lines.forEach((line, n) => {
    if (line.trim() === "") return;
    const fail = (why: string): never => {
      throw new SeqlabError(`${file}: line ${n + 1}: ${why}`);
    };
    const first = line.indexOf(" ");
    const last = line.trimEnd().lastIndexOf(" ");
    if (first <= 0 || last <= first) fail("expected `<id> <literal> <byte length>`");
    const id = Number(line.slice(0, first));
    const length = Number(line.slice(last + 1));
    if (!Number.isSafeInteger(id) || id < 1) fail(`token id "${line.slice(0, first)}" is not a positive integer`);
    if (vocab.has(id)) fail(`token id ${id} appears twice`);
    let bytes: Uint8Array;
    try {
      bytes = parsePythonLiteral(line.slice(first + 1, last));
    } catch (e) {
      return fail((e as Error).message);
    }
    if (bytes.length !== length) fail(`the literal has ${bytes.length} bytes, the line says ${length}`);
    vocab.set(id, bytes);
  });
  if (vocab.size === 0) throw new SeqlabError(`${file}: no vocabulary lines`);
  return vocab;
}

const SIMPLE_ESCAPES: Record<string, number> = { "\\": 92, "'": 39, '"': 34, a: 7, b: 8, f: 12, n: 10, r: 13, t: 9, v: 11 };

/**
 * The bytes of a Python str literal ('...' or "...", UTF-8 encoded) or bytes literal (b'...'):
 * the escapes the vocabulary uses (\\xNN, \\uNNNN, \\UNNNNNNNN, \\n, \\t, \\\\, quotes ...).
 */
export function parsePythonLiteral(lit: string): Uint8Array {
  const isBytes = lit.startsWith("b");
  const body = isBytes ? lit.slice(1) : lit;
  const quote = body[0];
  if ((quote !== "'" && quote !== '"') || body.length < 2 || body[body.length - 1] !== quote) {
    throw new Error(`${lit} is not a quoted Python string or bytes literal`);
  }
  const out: number[] = [];
  const pushCodePoint = (cp: number) => {
    if (isBytes) {
      if (cp > 0xff) throw new Error(`${lit}: bytes literal holds a character beyond \\xff`);
      out.push(cp);
    } else {
      out.push(...new TextEncoder().encode(String.fromCodePoint(cp)));
    }
  };
  const s = body.slice(1, -1);
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c !== "\\") {
      pushCodePoint(s.codePointAt(i)!);
      if (s.codePointAt(i)! > 0xffff) i++; // a surrogate pair is one character
      continue;
    }
    const e = s[++i];
    if (e in SIMPLE_ESCAPES) out.push(SIMPLE_ESCAPES[e]);
    else if (e === "x" || (!isBytes && (e === "u" || e === "U"))) {
      const width = e === "x" ? 2 : e === "u" ? 4 : 8;
      const hex = s.slice(i + 1, i + 1 + width);
      if (!/^[0-9a-fA-F]+$/.test(hex) || hex.length !== width) throw new Error(`${lit}: bad \\${e} escape`);
      const v = parseInt(hex, 16);
      if (isBytes) out.push(v);
      else pushCodePoint(v);
      i += width;
    } else if (e >= "0" && e <= "7") {
      let oct = e;
      while (oct.length < 3 && s[i + 1] >= "0" && s[i + 1] <= "7") oct += s[++i];
      pushCodePoint(parseInt(oct, 8));
    } else {
      throw new Error(`${lit}: unsupported escape \\${e}`);
    }
  }
  return Uint8Array.from(out);
}
