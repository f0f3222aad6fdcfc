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
import { decodeTensor, DTYPE_SIZES, headerLength, parseHeader, type TensorInfo } from "./safetensors_format.js";

export type StDtype = "F64" | "F32" | "F16" | "BF16" | "I64" | "I32";
export type { TensorInfo };

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
    const lenBuf = Buffer.alloc(8);
    if (fileSize >= 8) fs.readSync(this.fd, lenBuf, 0, 8, 0);
    const headerLen = headerLength(this.path, lenBuf, fileSize);
    const hbuf = Buffer.alloc(headerLen);
    fs.readSync(this.fd, hbuf, 0, headerLen, 8);
    const { entries, metadata } = parseHeader(this.path, hbuf, fileSize);
    for (const [name, info] of entries) this.entries.set(name, info);
    this.metadata = metadata;
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
    return decodeTensor(this.path, i, this.readBytes(name));
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
