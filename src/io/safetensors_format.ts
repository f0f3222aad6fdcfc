/**
 * The safetensors format (https://github.com/huggingface/safetensors) without any I/O: an
 * 8-byte little-endian header length, a JSON header mapping names to {dtype, shape,
 * data_offsets}, then the raw bytes. Validating a header and decoding one tensor's bytes are
 * pure functions, shared by the Node file reader (safetensors.ts) and the in-memory reader
 * browsers use (safetensors_buffer.ts), so both refuse the same malformed files with the same
 * messages.
 */
import { SeqlabError } from "../util/errors.js";
import type { HostArray } from "../tensor/dtype.js";

/** Every dtype the format defines, with its byte size; reading supports a subset. */
export const DTYPE_SIZES: Record<string, number> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U64: 8, U32: 4, U16: 2, U8: 1, BOOL: 1,
  F8_E4M3: 1, F8_E5M2: 1,
};
export const READABLE = new Set(["F64", "F32", "F16", "BF16", "I64", "I32"]);
/** Headers beyond this are not credible (the format's own reader caps them at 100 MB). */
export const MAX_HEADER_BYTES = 100_000_000;

export interface TensorInfo {
  name: string;
  dtype: string;
  shape: number[];
  /** absolute byte range in the file */
  begin: number;
  end: number;
}

export interface SafetensorsHeader {
  entries: Map<string, TensorInfo>;
  metadata: Record<string, string>;
}

/**
 * The header length from the first 8 bytes, checked against the file size; `source` is what
 * errors name.
 */
export function headerLength(source: string, first8: Uint8Array, fileSize: number): number {
  if (fileSize < 8) throw new SeqlabError(`${source}: truncated: ${fileSize} bytes, too short for a safetensors header`);
  const headerLen = Number(new DataView(first8.buffer, first8.byteOffset, 8).getBigUint64(0, true));
  if (headerLen > MAX_HEADER_BYTES) throw new SeqlabError(`${source}: header length ${headerLen} is not credible (limit ${MAX_HEADER_BYTES})`);
  if (8 + headerLen > fileSize) {
    throw new SeqlabError(`${source}: truncated: header says ${headerLen} bytes but the file has ${fileSize - 8} after the length`);
  }
  return headerLen;
}

/** Parse and validate the JSON header (bytes 8 .. 8 + its length) of a file of `fileSize` bytes. */
export function parseHeader(source: string, headerBytes: Uint8Array, fileSize: number): SafetensorsHeader {
  const fail = (problem: string): never => {
    throw new SeqlabError(`${source}: ${problem}`);
  };
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder().decode(headerBytes));
  } catch {
    fail("header is not valid JSON");
  }
  if (typeof header !== "object" || header === null || Array.isArray(header)) fail("header is not a JSON object");
  const dataStart = 8 + headerBytes.length;
  const dataSize = fileSize - dataStart;
  const entries = new Map<string, TensorInfo>();
  let metadata: Record<string, string> = {};
  const ranges: [number, number, string][] = [];
  for (const [name, raw] of Object.entries(header as Record<string, unknown>)) {
    if (name === "__metadata__") {
      if (raw && typeof raw === "object") metadata = raw as Record<string, string>;
      continue;
    }
    const info = parseEntry(fail, name, raw, dataStart, dataSize);
    entries.set(name, info);
    if (info.end > info.begin) ranges.push([info.begin, info.end, name]);
  }
  ranges.sort((a, b) => a[0] - b[0]);
  for (let i = 1; i < ranges.length; i++) {
    if (ranges[i][0] < ranges[i - 1][1]) fail(`tensors "${ranges[i - 1][2]}" and "${ranges[i][2]}" overlap`);
  }
  return { entries, metadata };
}

function parseEntry(fail: (p: string) => never, name: string, raw: unknown, dataStart: number, dataSize: number): TensorInfo {
  const e = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
  if (!e || typeof e !== "object") fail(`tensor "${name}": header entry is not an object`);
  const dtype = e.dtype;
  if (typeof dtype !== "string" || !(dtype in DTYPE_SIZES)) fail(`tensor "${name}": unknown dtype ${JSON.stringify(dtype)}`);
  const shape = e.shape;
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    fail(`tensor "${name}": shape ${JSON.stringify(shape)} is not a list of non-negative integers`);
  }
  const offs = e.data_offsets;
  if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((d) => Number.isSafeInteger(d) && d >= 0) || offs[0] > offs[1]) {
    fail(`tensor "${name}": data_offsets ${JSON.stringify(offs)} are not a [begin, end] pair`);
  }
  const [begin, end] = offs as number[];
  if (end > dataSize) fail(`tensor "${name}": data_offsets [${offs}] run past the end of the data (${dataSize} bytes)`);
  let count = 1;
  for (const d of shape as number[]) count *= d;
  const expected = count * DTYPE_SIZES[dtype as string];
  if (end - begin !== expected) {
    fail(`tensor "${name}": ${end - begin} bytes stored but shape [${shape}] x ${dtype} needs ${expected}`);
  }
  return { name, dtype: dtype as string, shape: shape as number[], begin: dataStart + begin, end: dataStart + end };
}

/**
 * One tensor's bytes in its stored precision: F32 as Float32Array, F16/BF16 as Uint16Array
 * (bits), I32 as Int32Array; F64 narrows to Float32Array and I64 to Int32Array (range-checked).
 * The result never aliases `bytes` (which may be unaligned).
 */
export function decodeTensor(source: string, info: TensorInfo, bytes: Uint8Array): HostArray {
  const fail = (problem: string): never => {
    throw new SeqlabError(`${source}: tensor "${info.name}": ${problem}`);
  };
  if (!READABLE.has(info.dtype)) fail(`dtype ${info.dtype} is not supported (use F32, F16, BF16, I32 or I64)`);
  const n = (info.end - info.begin) / DTYPE_SIZES[info.dtype];
  const aligned = new ArrayBuffer(bytes.length);
  new Uint8Array(aligned).set(bytes);
  switch (info.dtype) {
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
        if (v > 2147483647n || v < -2147483648n) fail(`value ${v} does not fit in int32`);
        out[k] = Number(v);
      }
      return out;
    }
  }
  return fail(`dtype ${info.dtype} is not supported`);
}
