/**
 * safetensors (https://github.com/huggingface/safetensors): an 8-byte little-endian header
 * length, a JSON header mapping names to {dtype, shape, data_offsets}, then the raw bytes.
 *
 * Reading validates the whole header before any tensor is read, and reads one tensor at a time
 * straight from the file, so a multi-GB checkpoint never needs two copies in memory. Writing
 * streams tensor by tensor into a temporary file that is renamed into place (atomic).
 */
import * as fs from "node:fs";
import { SeqlabError } from "../util/errors.js";
import type { HostArray } from "../tensor/dtype.js";
import { decodeHalf } from "../util/half.js";

/** Every dtype the format defines, with its byte size; reading supports a subset. */
const DTYPE_SIZES: Record<string, number> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U64: 8, U32: 4, U16: 2, U8: 1, BOOL: 1,
  F8_E4M3: 1, F8_E5M2: 1,
};
const READABLE = new Set(["F64", "F32", "F16", "BF16", "I64", "I32"]);
/** Headers beyond this are not credible (the format's own reader caps them at 100 MB). */
const MAX_HEADER_BYTES = 100_000_000;

export type StDtype = "F64" | "F32" | "F16" | "BF16" | "I64" | "I32";

export interface TensorInfo {
  name: string;
  dtype: string;
  shape: number[];
  /** absolute byte range in the file */
  begin: number;
  end: number;
}

export class SafetensorsFile {
  readonly entries = new Map<string, TensorInfo>();
  metadata: Record<string, string> = {};
  private fd: number;

  private constructor(readonly path: string) {
    try {
      this.fd = fs.openSync(path, "r");
    } catch (e) {
      throw new SeqlabError(`${path}: cannot open (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
    }
  }

  static open(path: string): SafetensorsFile {
    const f = new SafetensorsFile(path);
    try {
      f.parseHeader();
    } catch (e) {
      f.close();
      throw e;
    }
    return f;
  }

  private fail(problem: string): never {
    throw new SeqlabError(`${this.path}: ${problem}`);
  }

  private parseHeader(): void {
    const fileSize = fs.fstatSync(this.fd).size;
    if (fileSize < 8) this.fail(`truncated: ${fileSize} bytes, too short for a safetensors header`);
    const lenBuf = Buffer.alloc(8);
    fs.readSync(this.fd, lenBuf, 0, 8, 0);
    const headerLen = Number(lenBuf.readBigUInt64LE(0));
    if (headerLen > MAX_HEADER_BYTES) this.fail(`header length ${headerLen} is not credible (limit ${MAX_HEADER_BYTES})`);
    if (8 + headerLen > fileSize) this.fail(`truncated: header says ${headerLen} bytes but the file has ${fileSize - 8} after the length`);
    const hbuf = Buffer.alloc(headerLen);
    fs.readSync(this.fd, hbuf, 0, headerLen, 8);
    let header: unknown;
    try {
      header = JSON.parse(hbuf.toString("utf8"));
    } catch {
      this.fail("header is not valid JSON");
    }
    if (typeof header !== "object" || header === null || Array.isArray(header)) this.fail("header is not a JSON object");
    const dataStart = 8 + headerLen;
    const dataSize = fileSize - dataStart;
    const ranges: [number, number, string][] = [];
    for (const [name, raw] of Object.entries(header as Record<string, unknown>)) {
      if (name === "__metadata__") {
        if (raw && typeof raw === "object") this.metadata = raw as Record<string, string>;
        continue;
      }
      const info = this.parseEntry(name, raw, dataStart, dataSize);
      this.entries.set(name, info);
      if (info.end > info.begin) ranges.push([info.begin, info.end, name]);
    }
    ranges.sort((a, b) => a[0] - b[0]);
    for (let i = 1; i < ranges.length; i++) {
      if (ranges[i][0] < ranges[i - 1][1]) this.fail(`tensors "${ranges[i - 1][2]}" and "${ranges[i][2]}" overlap`);
    }
  }

  private parseEntry(name: string, raw: unknown, dataStart: number, dataSize: number): TensorInfo {
    const e = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (!e || typeof e !== "object") this.fail(`tensor "${name}": header entry is not an object`);
    const dtype = e.dtype;
    if (typeof dtype !== "string" || !(dtype in DTYPE_SIZES)) this.fail(`tensor "${name}": unknown dtype ${JSON.stringify(dtype)}`);
    const shape = e.shape;
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      this.fail(`tensor "${name}": shape ${JSON.stringify(shape)} is not a list of non-negative integers`);
    }
    const offs = e.data_offsets;
    if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((d) => Number.isSafeInteger(d) && d >= 0) || offs[0] > offs[1]) {
      this.fail(`tensor "${name}": data_offsets ${JSON.stringify(offs)} are not a [begin, end] pair`);
    }
    if (offs[1] > dataSize) this.fail(`tensor "${name}": data_offsets [${offs}] run past the end of the data (${dataSize} bytes)`);
    let count = 1;
    for (const d of shape as number[]) count *= d;
    const expected = count * DTYPE_SIZES[dtype];
    if (offs[1] - offs[0] !== expected) {
      this.fail(`tensor "${name}": ${offs[1] - offs[0]} bytes stored but shape [${shape}] x ${dtype} needs ${expected}`);
    }
    return { name, dtype, shape: shape as number[], begin: dataStart + offs[0], end: dataStart + offs[1] };
  }

  has(name: string): boolean {
    return this.entries.has(name);
  }

  info(name: string): TensorInfo {
    const i = this.entries.get(name);
    if (!i) this.fail(`tensor "${name}" is missing`);
    return i;
  }

  names(): string[] {
    return [...this.entries.keys()];
  }

  /** Raw bytes of one tensor. */
  readBytes(name: string): Buffer {
    const i = this.info(name);
    const buf = Buffer.allocUnsafe(i.end - i.begin);
    let done = 0;
    while (done < buf.length) {
      const n = fs.readSync(this.fd, buf, done, buf.length - done, i.begin + done);
      if (n === 0) this.fail(`tensor "${name}": file ended early`);
      done += n;
    }
    return buf;
  }

  /**
   * One tensor in its stored precision: F32 as Float32Array, F16/BF16 as Uint16Array (bits),
   * I32 as Int32Array; F64 narrows to Float32Array and I64 to Int32Array (range-checked).
   */
  read(name: string): HostArray {
    const i = this.info(name);
    if (!READABLE.has(i.dtype)) this.fail(`tensor "${name}": dtype ${i.dtype} is not supported (use F32, F16, BF16, I32 or I64)`);
    const buf = this.readBytes(name);
    const n = (i.end - i.begin) / DTYPE_SIZES[i.dtype];
    const aligned = new ArrayBuffer(buf.length);
    new Uint8Array(aligned).set(buf);
    switch (i.dtype) {
      case "F32":
        return new Float32Array(aligned, 0, n);
      case "F16":
      case "BF16":
        return new Uint16Array(aligned, 0, n);
      case "I32":
        return new Int32Array(aligned, 0, n);
      case "F64":
        return Float32Array.from(new Float64Array(aligned, 0, n));
      case "I64": {
        const src = new BigInt64Array(aligned, 0, n);
        const out = new Int32Array(n);
        for (let k = 0; k < n; k++) {
          const v = src[k];
          if (v > 2147483647n || v < -2147483648n) this.fail(`tensor "${name}": value ${v} does not fit in int32`);
          out[k] = Number(v);
        }
        return out;
      }
    }
    this.fail(`tensor "${name}": dtype ${i.dtype} is not supported`);
  }

  /** One float tensor converted to float32. */
  readF32(name: string): Float32Array {
    const i = this.info(name);
    const a = this.read(name);
    if (i.dtype === "F16" || i.dtype === "BF16") return decodeHalf(a as Uint16Array, i.dtype === "F16" ? "f16" : "bf16");
    if (a instanceof Float32Array) return a;
    return Float32Array.from(a);
  }

  close(): void {
    if (this.fd >= 0) fs.closeSync(this.fd);
    this.fd = -1;
  }
}

export interface TensorToWrite {
  name: string;
  dtype: StDtype;
  shape: readonly number[];
  /** the data, or a function producing it when its turn comes (keeps one tensor in memory) */
  data: HostArray | BigInt64Array | (() => HostArray | BigInt64Array);
}

/**
 * Write tensors to `path` atomically: a temporary file in the same directory, then rename.
 * Tensors are written in the given order; the header is padded to 8 bytes as the format asks.
 */
export function writeSafetensors(path: string, tensors: TensorToWrite[], metadata?: Record<string, string>): void {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  let offset = 0;
  for (const t of tensors) {
    const bytes = t.shape.reduce((a, b) => a * b, 1) * DTYPE_SIZES[t.dtype];
    header[t.name] = { dtype: t.dtype, shape: [...t.shape], data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const tmp = `${path}.tmp-${process.pid}`;
  const fd = fs.openSync(tmp, "w");
  try {
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
    fs.writeSync(fd, len);
    fs.writeSync(fd, json);
    for (const t of tensors) {
      const data = typeof t.data === "function" ? t.data() : t.data;
      const expected = t.shape.reduce((a, b) => a * b, 1) * DTYPE_SIZES[t.dtype];
      const view = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
      if (view.length !== expected) throw new Error(`internal: tensor ${t.name} has ${view.length} bytes, header says ${expected}`);
      fs.writeSync(fd, view);
    }
    fs.fsyncSync(fd);
  } catch (e) {
    fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    throw e;
  }
  fs.closeSync(fd);
  fs.renameSync(tmp, path);
}
