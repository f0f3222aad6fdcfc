/**
 * GGUF v3 (ggml's file format, docs/gguf.md in ggml-org/ggml): what llama.cpp loads.
 *
 *   header      "GGUF" magic, version 3, tensor count (u64), metadata count (u64)
 *   metadata    key (string), value type (u32), value; arrays are item type, count, items
 *   tensors     name, dims (u32), ne[dims] (u64, innermost first), ggml type (u32), data offset (u64)
 *   padding     to general.alignment (32 unless set)
 *   data        each tensor at its offset from here, every offset aligned
 *
 * Strings are a u64 byte length then UTF-8 bytes; everything is little-endian. ne lists the
 * dimensions fastest-varying first, the reverse of a row-major shape, so a PyTorch (out, in)
 * weight is ne = [in, out] over the same bytes. The writer streams tensors one at a time into a
 * temporary file renamed into place. The reader (for tests and inspection: it holds the whole
 * file in memory) validates the header and every tensor's extent before anything is read.
 */
import * as fs from "node:fs";
import { SeqlabError } from "../util/errors.js";
import { f32ToF16 } from "../util/half.js";

const MAGIC = 0x46554747; // "GGUF" read as a little-endian u32
const VERSION = 3;
export const DEFAULT_ALIGNMENT = 32;

/** Value types, by their GGUF code. */
const VALUE_TYPES = ["uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "bool", "string", "array", "uint64", "int64", "float64"] as const;
export type GgufScalarType = Exclude<(typeof VALUE_TYPES)[number], "array">;
export type GgufScalar = number | bigint | boolean | string;

export type GgufValue =
  | { type: GgufScalarType; value: GgufScalar }
  | { type: "array"; itemType: GgufScalarType; value: GgufScalar[] };

/** ggml tensor types this module reads and writes, with their codes (ggml.h enum ggml_type). */
export const GGML_TYPES = { F32: 0, F16: 1 } as const;
export type GgmlType = keyof typeof GGML_TYPES;
const TYPE_BYTES: Record<GgmlType, number> = { F32: 4, F16: 2 };

export interface GgufTensorToWrite {
  name: string;
  type: GgmlType;
  /** row-major shape, outermost first (as PyTorch); stored reversed as ne */
  shape: readonly number[];
  /** f32 values (converted when type is F16), or F16 bits; produced when its turn comes */
  data: () => Float32Array | Uint16Array;
}

// helpers that make typed metadata values read like the keys they fill
export const u32 = (value: number): GgufValue => ({ type: "uint32", value });
export const i32 = (value: number): GgufValue => ({ type: "int32", value });
export const f32 = (value: number): GgufValue => ({ type: "float32", value });
export const bool = (value: boolean): GgufValue => ({ type: "bool", value });
export const str = (value: string): GgufValue => ({ type: "string", value });
export const arr = (itemType: GgufScalarType, value: GgufScalar[]): GgufValue => ({ type: "array", itemType, value });

/** A growable little-endian byte buffer for the header. */
class Bytes {
  private buf = Buffer.alloc(1 << 16);
  length = 0;

  private room(n: number): void {
    if (this.length + n <= this.buf.length) return;
    const bigger = Buffer.alloc(Math.max(this.buf.length * 2, this.length + n));
    this.buf.copy(bigger, 0, 0, this.length);
    this.buf = bigger;
  }

  u8(v: number): void {
    this.room(1);
    this.buf.writeUInt8(v, this.length++);
  }
  u32(v: number): void {
    this.room(4);
    this.buf.writeUInt32LE(v, this.length);
    this.length += 4;
  }
  u64(v: number | bigint): void {
    this.room(8);
    this.buf.writeBigUInt64LE(BigInt(v), this.length);
    this.length += 8;
  }
  scalar(type: GgufScalarType, v: GgufScalar): void {
    const n = type === "string" ? 0 : SCALAR_BYTES[type];
    if (type === "string") {
      const b = Buffer.from(String(v), "utf8");
      this.u64(b.length);
      this.room(b.length);
      b.copy(this.buf, this.length);
      this.length += b.length;
      return;
    }
    this.room(n);
    const o = this.length;
    switch (type) {
      case "uint8": this.buf.writeUInt8(Number(v), o); break;
      case "int8": this.buf.writeInt8(Number(v), o); break;
      case "uint16": this.buf.writeUInt16LE(Number(v), o); break;
      case "int16": this.buf.writeInt16LE(Number(v), o); break;
      case "uint32": this.buf.writeUInt32LE(Number(v), o); break;
      case "int32": this.buf.writeInt32LE(Number(v), o); break;
      case "float32": this.buf.writeFloatLE(Number(v), o); break;
      case "bool": this.buf.writeUInt8(v ? 1 : 0, o); break;
      case "uint64": this.buf.writeBigUInt64LE(BigInt(v), o); break;
      case "int64": this.buf.writeBigInt64LE(BigInt(v), o); break;
      case "float64": this.buf.writeDoubleLE(Number(v), o); break;
    }
    this.length += n;
  }
  bytes(): Buffer {
    return this.buf.subarray(0, this.length);
  }
}

const SCALAR_BYTES: Record<Exclude<GgufScalarType, "string">, number> = {
  uint8: 1, int8: 1, uint16: 2, int16: 2, uint32: 4, int32: 4, float32: 4, bool: 1, uint64: 8, int64: 8, float64: 8,
};

const align = (n: number, a: number) => Math.ceil(n / a) * a;

function tensorBytes(t: { type: GgmlType; shape: readonly number[] }): number {
  return t.shape.reduce((a, b) => a * b, 1) * TYPE_BYTES[t.type];
}

/** Write a GGUF v3 file: metadata in the given order, then the tensors in the given order. */
export function writeGguf(path: string, metadata: [string, GgufValue][], tensors: GgufTensorToWrite[]): void {
  const alignValue = metadata.find(([k]) => k === "general.alignment")?.[1].value;
  const alignment = typeof alignValue === "number" ? alignValue : DEFAULT_ALIGNMENT;
  const h = new Bytes();
  h.u32(MAGIC);
  h.u32(VERSION);
  h.u64(tensors.length);
  h.u64(metadata.length);
  for (const [key, v] of metadata) {
    h.scalar("string", key);
    h.u32(VALUE_TYPES.indexOf(v.type));
    if (v.type === "array") {
      h.u32(VALUE_TYPES.indexOf(v.itemType));
      h.u64(v.value.length);
      for (const x of v.value) h.scalar(v.itemType, x);
    } else {
      h.scalar(v.type, v.value);
    }
  }
  let offset = 0;
  const offsets: number[] = [];
  for (const t of tensors) {
    h.scalar("string", t.name);
    h.u32(t.shape.length);
    for (const d of [...t.shape].reverse()) h.u64(d);
    h.u32(GGML_TYPES[t.type]);
    h.u64(offset);
    offsets.push(offset);
    offset = align(offset + tensorBytes(t), alignment);
  }
  const header = h.bytes();
  const dataStart = align(header.length, alignment);
  const tmp = `${path}.tmp-${process.pid}`;
  const fd = fs.openSync(tmp, "w");
  try {
    fs.writeSync(fd, header);
    fs.writeSync(fd, Buffer.alloc(dataStart - header.length));
    let written = 0;
    tensors.forEach((t, i) => {
      if (offsets[i] > written) fs.writeSync(fd, Buffer.alloc(offsets[i] - written));
      const bytes = encodeTensor(t);
      fs.writeSync(fd, bytes);
      written = offsets[i] + bytes.length;
    });
    fs.fsyncSync(fd);
  } catch (e) {
    fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    throw e;
  }
  fs.closeSync(fd);
  fs.renameSync(tmp, path);
}

function encodeTensor(t: GgufTensorToWrite): Buffer {
  let data = t.data();
  if (t.type === "F16" && data instanceof Float32Array) data = Uint16Array.from(data, (v) => f32ToF16(v));
  if (t.type === "F32" && !(data instanceof Float32Array)) throw new Error(`internal: GGUF tensor ${t.name} is F32 but its data is not float32`);
  const bytes = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  if (bytes.length !== tensorBytes(t)) throw new Error(`internal: GGUF tensor ${t.name} has ${bytes.length} bytes, its shape needs ${tensorBytes(t)}`);
  return bytes;
}

export interface GgufTensorInfo {
  name: string;
  type: GgmlType;
  /** row-major shape (ne reversed) */
  shape: number[];
  /** absolute byte offset in the file */
  begin: number;
}

/** A GGUF file opened for reading: metadata and tensor infos parsed and checked, tensors read on demand. */
export class GgufFile {
  readonly metadata = new Map<string, GgufValue>();
  readonly tensors = new Map<string, GgufTensorInfo>();
  version = 0;
  alignment = DEFAULT_ALIGNMENT;
  private readonly buf: Buffer;
  private pos = 0;

  constructor(readonly path: string) {
    try {
      this.buf = fs.readFileSync(path);
    } catch (e) {
      throw new SeqlabError(`${path}: cannot read (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
    }
    this.parse();
  }

  private fail(problem: string): never {
    throw new SeqlabError(`${this.path}: ${problem}`);
  }

  private need(n: number): void {
    if (this.pos + n > this.buf.length) this.fail(`truncated at byte ${this.pos} (needs ${n} more)`);
  }

  private u32(): number {
    this.need(4);
    const v = this.buf.readUInt32LE(this.pos);
    this.pos += 4;
    return v;
  }

  private u64(): number {
    this.need(8);
    const v = this.buf.readBigUInt64LE(this.pos);
    this.pos += 8;
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) this.fail(`value ${v} at byte ${this.pos - 8} is too large`);
    return Number(v);
  }

  private scalar(type: GgufScalarType): GgufScalar {
    if (type === "string") {
      const n = this.u64();
      this.need(n);
      const s = this.buf.toString("utf8", this.pos, this.pos + n);
      this.pos += n;
      return s;
    }
    const n = SCALAR_BYTES[type];
    this.need(n);
    const o = this.pos;
    this.pos += n;
    switch (type) {
      case "uint8": return this.buf.readUInt8(o);
      case "int8": return this.buf.readInt8(o);
      case "uint16": return this.buf.readUInt16LE(o);
      case "int16": return this.buf.readInt16LE(o);
      case "uint32": return this.buf.readUInt32LE(o);
      case "int32": return this.buf.readInt32LE(o);
      case "float32": return this.buf.readFloatLE(o);
      case "bool": return this.buf.readUInt8(o) !== 0;
      case "uint64": return this.buf.readBigUInt64LE(o);
      case "int64": return this.buf.readBigInt64LE(o);
      case "float64": return this.buf.readDoubleLE(o);
    }
  }

  private valueType(code: number, key: string): (typeof VALUE_TYPES)[number] {
    const t = VALUE_TYPES[code];
    if (t === undefined) this.fail(`metadata "${key}" has unknown value type ${code}`);
    return t;
  }

  private parse(): void {
    if (this.buf.length < 24 || this.u32() !== MAGIC) this.fail("not a GGUF file (no GGUF magic)");
    this.version = this.u32();
    if (this.version !== VERSION) this.fail(`GGUF version ${this.version} is not supported (only ${VERSION})`);
    const nTensors = this.u64();
    const nKv = this.u64();
    for (let i = 0; i < nKv; i++) {
      const key = this.scalar("string") as string;
      const type = this.valueType(this.u32(), key);
      if (type === "array") {
        const itemType = this.valueType(this.u32(), key);
        if (itemType === "array") this.fail(`metadata "${key}": nested arrays are not supported`);
        const n = this.u64();
        const value: GgufScalar[] = [];
        for (let j = 0; j < n; j++) value.push(this.scalar(itemType));
        this.metadata.set(key, { type, itemType, value });
      } else {
        this.metadata.set(key, { type, value: this.scalar(type) });
      }
    }
    const a = this.metadata.get("general.alignment");
    if (a) this.alignment = Number(a.value);
    const infos: (Omit<GgufTensorInfo, "begin"> & { offset: number })[] = [];
    for (let i = 0; i < nTensors; i++) {
      const name = this.scalar("string") as string;
      const dims = this.u32();
      const ne: number[] = [];
      for (let d = 0; d < dims; d++) ne.push(this.u64());
      const code = this.u32();
      const type = (Object.keys(GGML_TYPES) as GgmlType[]).find((k) => GGML_TYPES[k] === code);
      if (!type) this.fail(`tensor "${name}" has ggml type ${code} (this reader knows F32 and F16)`);
      infos.push({ name, type, shape: ne.reverse(), offset: this.u64() });
    }
    const dataStart = align(this.pos, this.alignment);
    for (const t of infos) {
      const begin = dataStart + t.offset;
      if (t.offset % this.alignment !== 0) this.fail(`tensor "${t.name}" offset ${t.offset} is not aligned to ${this.alignment}`);
      if (begin + tensorBytes(t) > this.buf.length) this.fail(`tensor "${t.name}" runs past the end of the file`);
      this.tensors.set(t.name, { name: t.name, type: t.type, shape: t.shape, begin });
    }
  }

  /** A metadata value (scalar or array), or undefined. */
  get(key: string): GgufScalar | GgufScalar[] | undefined {
    return this.metadata.get(key)?.value;
  }

  /** One tensor: F32 as Float32Array, F16 as Uint16Array bits. */
  readTensor(name: string): Float32Array | Uint16Array {
    const t = this.tensors.get(name);
    if (!t) this.fail(`tensor "${name}" is missing`);
    const n = t.shape.reduce((a, b) => a * b, 1);
    const copy = new Uint8Array(this.buf.subarray(t.begin, t.begin + n * TYPE_BYTES[t.type])).buffer;
    return t.type === "F32" ? new Float32Array(copy) : new Uint16Array(copy);
  }
}
