/**
 * A safetensors file held in memory (an ArrayBuffer from a browser's File, or any bytes): the
 * same header validation and tensor decoding as the Node file reader (safetensors_format.ts),
 * with no Node APIs, so a browser can load checkpoints that a user drops on a page.
 */
import type { HostArray } from "../tensor/dtype.js";
import { SeqlabError } from "../util/errors.js";
import { decodeHalf } from "../util/half.js";
import { decodeTensor, headerLength, parseHeader, type TensorInfo } from "./safetensors_format.js";
import type { WeightReader } from "./weights.js";

export class SafetensorsBuffer implements WeightReader {
  readonly entries: Map<string, TensorInfo>;
  readonly metadata: Record<string, string>;

  /** `path` names the file in errors (a file name in browsers). */
  constructor(
    readonly path: string,
    private readonly bytes: Uint8Array,
  ) {
    const headerLen = headerLength(path, bytes.subarray(0, 8), bytes.length);
    const header = parseHeader(path, bytes.subarray(8, 8 + headerLen), bytes.length);
    this.entries = header.entries;
    this.metadata = header.metadata;
  }

  names(): string[] {
    return [...this.entries.keys()];
  }

  has(name: string): boolean {
    return this.entries.has(name);
  }

  info(name: string): TensorInfo {
    const i = this.entries.get(name);
    if (!i) throw new SeqlabError(`${this.path}: tensor "${name}" is missing`);
    return i;
  }

  shape(name: string): number[] {
    return this.info(name).shape;
  }

  /** One tensor in its stored precision (see decodeTensor). */
  read(name: string): HostArray {
    const i = this.info(name);
    return decodeTensor(this.path, i, this.bytes.subarray(i.begin, i.end));
  }

  /** One float tensor converted to float32. */
  readF32(name: string): Float32Array {
    const i = this.info(name);
    const a = this.read(name);
    if (i.dtype === "F16" || i.dtype === "BF16") return decodeHalf(a as Uint16Array, i.dtype === "F16" ? "f16" : "bf16");
    if (a instanceof Float32Array) return a;
    return Float32Array.from(a);
  }
}
