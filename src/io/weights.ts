/**
 * A model directory's weights, as transformers' save_pretrained writes them: one
 * `model.safetensors`, or shards listed by `model.safetensors.index.json` ({"weight_map":
 * {tensor name -> shard file}}). Both are read the same way: every header is opened and
 * validated up front (so a missing shard or a tensor absent from its shard fails before any
 * weight is read), then tensors are read one at a time, straight from their shard.
 *
 * Tensors come back in their stored precision or converted to the precision a parameter is
 * kept in (f32, or half-precision inference weights), one tensor at a time: loading never
 * holds two full copies of a model.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { SafetensorsFile, type TensorInfo } from "./safetensors.js";
import type { HostArray } from "../tensor/dtype.js";
import { SeqlabError } from "../util/errors.js";
import { f32ToBf16, f32ToF16 } from "../util/half.js";

export const SINGLE_FILE = "model.safetensors";
export const INDEX_FILE = "model.safetensors.index.json";

/** Precisions a float weight can be kept in. */
export type StorageDtype = "f32" | "f16" | "bf16";

const FLOAT_DTYPES: Record<string, StorageDtype> = { F32: "f32", F64: "f32", F16: "f16", BF16: "bf16" };

/**
 * Named tensors read one at a time, under the names the loader asks for (the checkpoint's own,
 * or module names through an architecture's name conversion). readAs, where present, reads a
 * tensor straight into a half precision; otherwise the loader converts readF32's result.
 */
export interface WeightReader {
  readonly path: string;
  names(): string[];
  has(name: string): boolean;
  shape(name: string): number[];
  readF32(name: string): Float32Array;
  readAs?(name: string, dtype: StorageDtype): HostArray;
}

export class CheckpointWeights implements WeightReader {
  private constructor(
    /** what errors name: the single file, or the index */
    readonly source: string,
    /** tensor name -> the open shard holding it */
    private readonly where: Map<string, SafetensorsFile>,
    private readonly files: SafetensorsFile[],
  ) {}

  /** True when `dir` holds weights in either layout. */
  static existsIn(dir: string): boolean {
    return fs.existsSync(path.join(dir, SINGLE_FILE)) || fs.existsSync(path.join(dir, INDEX_FILE));
  }

  /** Open the weights of a model directory: model.safetensors if present, else the sharded index. */
  static open(dir: string): CheckpointWeights {
    const single = path.join(dir, SINGLE_FILE);
    if (fs.existsSync(single)) return CheckpointWeights.fromFile(single);
    const index = path.join(dir, INDEX_FILE);
    if (fs.existsSync(index)) return CheckpointWeights.fromIndex(index);
    throw new SeqlabError(`${single}: no such file (the model's weights; no ${INDEX_FILE} either)`);
  }

  static fromFile(file: string): CheckpointWeights {
    const st = SafetensorsFile.open(file);
    return new CheckpointWeights(file, new Map(st.names().map((n) => [n, st])), [st]);
  }

  /** Open every shard an index names and check that each listed tensor is where it says. */
  static fromIndex(indexPath: string): CheckpointWeights {
    const weightMap = readWeightMap(indexPath);
    const dir = path.dirname(indexPath);
    const byShard = new Map<string, string[]>();
    for (const [name, shard] of weightMap) byShard.set(shard, [...(byShard.get(shard) ?? []), name]);
    const files: SafetensorsFile[] = [];
    const where = new Map<string, SafetensorsFile>();
    try {
      for (const [shard, names] of byShard) {
        const file = path.join(dir, shard);
        if (!fs.existsSync(file)) {
          throw new SeqlabError(`${file}: missing shard (${INDEX_FILE} lists ${names.length} tensors in it, e.g. "${names[0]}")`);
        }
        const st = SafetensorsFile.open(file);
        files.push(st);
        for (const name of names) {
          if (!st.has(name)) throw new SeqlabError(`${indexPath}: tensor "${name}" is listed in shard ${shard}, which does not contain it`);
          where.set(name, st);
        }
      }
    } catch (e) {
      for (const f of files) f.close();
      throw e;
    }
    return new CheckpointWeights(indexPath, where, files);
  }

  get path(): string {
    return this.source;
  }

  names(): string[] {
    return [...this.where.keys()];
  }

  shape(name: string): number[] {
    return this.info(name).shape;
  }

  has(name: string): boolean {
    return this.where.has(name);
  }

  info(name: string): TensorInfo {
    const f = this.where.get(name);
    if (!f) throw new SeqlabError(`${this.source}: tensor "${name}" is missing`);
    return f.info(name);
  }

  /** The shard file a tensor lives in (for error messages). */
  fileOf(name: string): string {
    return this.where.get(name)?.path ?? this.source;
  }

  /** One tensor in its stored precision (see SafetensorsFile.read). */
  read(name: string): HostArray {
    this.info(name);
    return this.where.get(name)!.read(name);
  }

  readF32(name: string): Float32Array {
    this.info(name);
    return this.where.get(name)!.readF32(name);
  }

  /** One float tensor in the precision `dtype` (f16/bf16 as Uint16Array bits), converted if stored otherwise. */
  readAs(name: string, dtype: StorageDtype): HostArray {
    const info = this.info(name);
    const stored = FLOAT_DTYPES[info.dtype];
    if (!stored) throw new SeqlabError(`${this.fileOf(name)}: tensor "${name}" is ${info.dtype}, not a float tensor`);
    if (dtype === "f32") return this.readF32(name);
    if (stored === dtype && info.dtype !== "F64") return this.read(name);
    const f32 = this.readF32(name);
    const out = new Uint16Array(f32.length);
    const encode = dtype === "f16" ? f32ToF16 : f32ToBf16;
    for (let i = 0; i < f32.length; i++) out[i] = encode(f32[i]);
    return out;
  }

  /**
   * The precision the weight matrices are stored in: that of most bytes among float tensors of
   * rank >= 2 (what `--dtype auto` keeps). Checkpoints are normally uniform.
   */
  storedWeightDtype(): StorageDtype {
    const bytes: Record<StorageDtype, number> = { f32: 0, f16: 0, bf16: 0 };
    for (const name of this.names()) {
      const i = this.info(name);
      const d = FLOAT_DTYPES[i.dtype];
      if (d && i.shape.length >= 2) bytes[d] += i.end - i.begin;
    }
    return (Object.keys(bytes) as StorageDtype[]).reduce((a, b) => (bytes[b] > bytes[a] ? b : a), "f32");
  }

  /** Bytes the tensors occupy on disk. */
  storedBytes(): number {
    let n = 0;
    for (const name of this.names()) {
      const i = this.info(name);
      n += i.end - i.begin;
    }
    return n;
  }

  /**
   * Bytes the tensors will occupy in memory when weight matrices (float, rank >= 2) are kept in
   * `dtype` and everything else in f32: an estimate made from the headers alone.
   */
  memoryBytes(dtype: StorageDtype): number {
    let n = 0;
    for (const name of this.names()) {
      const i = this.info(name);
      const count = i.shape.reduce((a, b) => a * b, 1);
      const isMatrix = FLOAT_DTYPES[i.dtype] !== undefined && i.shape.length >= 2;
      n += count * (isMatrix && dtype !== "f32" ? 2 : 4);
    }
    return n;
  }

  close(): void {
    for (const f of this.files) f.close();
  }
}

/** Parse and check an index file: a JSON object with a "weight_map" of tensor name -> shard file name. */
function readWeightMap(indexPath: string): Map<string, string> {
  let text: string;
  try {
    text = fs.readFileSync(indexPath, "utf8");
  } catch (e) {
    throw new SeqlabError(`${indexPath}: cannot read (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new SeqlabError(`${indexPath}: not valid JSON`);
  }
  const map = (json as { weight_map?: unknown } | null)?.weight_map;
  if (typeof json !== "object" || json === null || typeof map !== "object" || map === null || Array.isArray(map)) {
    throw new SeqlabError(`${indexPath}: "weight_map" is missing or not an object of tensor name -> shard file`);
  }
  const out = new Map<string, string>();
  for (const [name, shard] of Object.entries(map as Record<string, unknown>)) {
    if (typeof shard !== "string" || shard === "" || path.isAbsolute(shard) || shard.split(/[\\/]/).includes("..")) {
      throw new SeqlabError(`${indexPath}: tensor "${name}" maps to ${JSON.stringify(shard)}, not a file name inside the model directory`);
    }
    out.set(name, shard);
  }
  if (out.size === 0) throw new SeqlabError(`${indexPath}: "weight_map" lists no tensors`);
  return out;
}
