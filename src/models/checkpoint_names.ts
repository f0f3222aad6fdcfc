/**
 * Module names vs. checkpoint file names. seqlab's modules carry the names transformers 5.x uses
 * at runtime, which for mixture-of-experts layers are fused tensors (`experts.gate_up_proj`
 * (E, 2F, C), `experts.down_proj` (E, C, F)); checkpoint files of several architectures store
 * them otherwise, and transformers converts on load (core_model_loading WeightConverter /
 * WeightRenaming, registered per model_type in conversion_mapping.py). An architecture lists the
 * same conversions here as data: the loader reads the file through them, and export writes the
 * inverse.
 */
import type { SafetensorsFile } from "../io/safetensors.js";
import { SeqlabError } from "../util/errors.js";

/** Named float tensors, read one at a time. */
export interface TensorReader {
  readonly path: string;
  names(): string[];
  has(name: string): boolean;
  shape(name: string): number[];
  readF32(name: string): Float32Array;
}

export function safetensorsReader(st: SafetensorsFile): TensorReader {
  return {
    path: st.path,
    names: () => st.names(),
    has: (n) => st.has(n),
    shape: (n) => st.info(n).shape,
    readF32: (n) => st.readF32(n),
  };
}

/**
 * One conversion, by name suffix (the layer prefix is kept):
 * - stack: the module tensor (E, R, C) is, for each expert i (the "{i}" in the file patterns),
 *   the concatenation along rows of the file tensors (R_j, C) in the order listed (HF
 *   MergeModulelist(dim=0) then Concatenate(dim=1));
 * - rename: the module tensor is the file tensor under another name.
 */
export type NameRule = { kind: "stack"; module: string; files: string[] } | { kind: "rename"; module: string; file: string };

/** A module tensor as stored in a checkpoint file. */
export interface FileTensor {
  name: string;
  shape: number[];
  data: Float32Array;
}

export interface CheckpointNames {
  /** the file, seen under module names */
  fromCheckpoint(file: TensorReader): TensorReader;
  /** the file tensors that one module tensor is stored as (the inverse, for export) */
  toCheckpoint(name: string, shape: number[], data: Float32Array): FileTensor[];
}

/** transformers' conversion for qwen2_moe and the models that copy it (qwen3_next, qwen3_moe, ...). */
export const QWEN2_MOE_NAMES: NameRule[] = [
  { kind: "stack", module: "mlp.experts.gate_up_proj", files: ["mlp.experts.{i}.gate_proj.weight", "mlp.experts.{i}.up_proj.weight"] },
  { kind: "stack", module: "mlp.experts.down_proj", files: ["mlp.experts.{i}.down_proj.weight"] },
];

/** transformers' conversion for jamba. */
export const JAMBA_NAMES: NameRule[] = [
  {
    kind: "stack",
    module: "feed_forward.experts.gate_up_proj",
    files: ["feed_forward.experts.{i}.gate_proj.weight", "feed_forward.experts.{i}.up_proj.weight"],
  },
  { kind: "stack", module: "feed_forward.experts.down_proj", files: ["feed_forward.experts.{i}.down_proj.weight"] },
];

/** Granite MoE files keep experts fused under older names (input_linear is gate rows then up rows). */
export const GRANITE_MOE_NAMES: NameRule[] = [
  { kind: "rename", module: "block_sparse_moe.experts.gate_up_proj", file: "block_sparse_moe.input_linear.weight" },
  { kind: "rename", module: "block_sparse_moe.experts.down_proj", file: "block_sparse_moe.output_linear.weight" },
  { kind: "rename", module: "block_sparse_moe.router.weight", file: "block_sparse_moe.router.layer.weight" },
];

/** The prefix before `suffix` when `name` is `<prefix>.<suffix>` (or exactly `suffix`: ""). */
function prefixOf(name: string, suffix: string): string | null {
  if (name === suffix) return "";
  return name.endsWith("." + suffix) ? name.slice(0, -suffix.length - 1) : null;
}

const join = (prefix: string, rest: string) => (prefix ? `${prefix}.${rest}` : rest);

function match(rules: NameRule[], name: string): { rule: NameRule; prefix: string } | null {
  for (const rule of rules) {
    const prefix = prefixOf(name, rule.module);
    if (prefix !== null) return { rule, prefix };
  }
  return null;
}

type StackRule = Extract<NameRule, { kind: "stack" }>;

/** The file names of expert i under a stack rule. */
const expertFiles = (rule: StackRule, prefix: string, i: number) => rule.files.map((f) => join(prefix, f.replace("{i}", String(i))));

function stackedShape(file: TensorReader, rule: StackRule, prefix: string): number[] {
  let E = 0;
  while (expertFiles(rule, prefix, E).every((n) => file.has(n))) E++;
  const shapes = expertFiles(rule, prefix, 0).map((n) => file.shape(n));
  const cols = shapes[0][1];
  for (const [j, s] of shapes.entries()) {
    if (s.length !== 2 || s[1] !== cols) {
      throw new SeqlabError(`${file.path}: tensor "${expertFiles(rule, prefix, 0)[j]}" has shape [${s}], expected (rows, ${cols})`);
    }
  }
  return [E, shapes.reduce((r, s) => r + s[0], 0), cols];
}

function readStacked(file: TensorReader, rule: StackRule, prefix: string): Float32Array {
  const [E, R, C] = stackedShape(file, rule, prefix);
  const out = new Float32Array(E * R * C);
  let offset = 0;
  for (let i = 0; i < E; i++) {
    for (const n of expertFiles(rule, prefix, i)) {
      const part = file.readF32(n);
      const want = file.shape(n);
      if (want[1] !== C || offset + part.length > out.length) throw new SeqlabError(`${file.path}: tensor "${n}" has shape [${want}], unlike the other experts`);
      out.set(part, offset);
      offset += part.length;
    }
  }
  return out;
}

export function checkpointNames(rules: NameRule[]): CheckpointNames {
  return {
    fromCheckpoint(file: TensorReader): TensorReader {
      // a file already under module names (a seqlab training checkpoint) is read as it is
      const has = (name: string): boolean => {
        const m = match(rules, name);
        if (!m || file.has(name)) return file.has(name);
        if (m.rule.kind === "rename") return file.has(join(m.prefix, m.rule.file));
        return expertFiles(m.rule, m.prefix, 0).every((n) => file.has(n));
      };
      return {
        path: file.path,
        has,
        names: () => {
          const out = new Set<string>();
          for (const n of file.names()) {
            const owner = rules.find((r) => (r.kind === "rename" ? [r.file] : r.files).some((f) => fileMatches(n, f)));
            out.add(owner ? moduleNameOf(n, owner) : n);
          }
          return [...out];
        },
        shape: (name) => {
          const m = match(rules, name);
          if (!m || file.has(name)) return file.shape(name);
          if (m.rule.kind === "rename") return file.shape(join(m.prefix, m.rule.file));
          return stackedShape(file, m.rule, m.prefix);
        },
        readF32: (name) => {
          const m = match(rules, name);
          if (!m || file.has(name)) return file.readF32(name);
          if (m.rule.kind === "rename") return file.readF32(join(m.prefix, m.rule.file));
          return readStacked(file, m.rule, m.prefix);
        },
      };
    },

    toCheckpoint(name: string, shape: number[], data: Float32Array): FileTensor[] {
      const m = match(rules, name);
      if (!m) return [{ name, shape, data }];
      if (m.rule.kind === "rename") return [{ name: join(m.prefix, m.rule.file), shape, data }];
      const [E, R, C] = shape;
      const parts = m.rule.files.length;
      if (R % parts !== 0) throw new SeqlabError(`${name}: ${R} rows do not split into ${parts} equal expert tensors`);
      const rows = R / parts;
      const out: FileTensor[] = [];
      for (let i = 0; i < E; i++) {
        expertFiles(m.rule, m.prefix, i).forEach((n, j) => {
          const begin = (i * R + j * rows) * C;
          out.push({ name: n, shape: [rows, C], data: data.slice(begin, begin + rows * C) });
        });
      }
      return out;
    },
  };
}

/** The file name pattern (with "{i}") as a regex over whole names ending in it. */
function patternRegex(pattern: string): RegExp {
  const escaped = pattern.replace(/[.*+?^${}()|[\]\\]/g, "\\$&").replace("\\{i\\}", "\\d+");
  return new RegExp(`(^|\\.)${escaped}$`);
}

function fileMatches(name: string, pattern: string): boolean {
  return patternRegex(pattern).test(name);
}

/** The module name a matching file tensor belongs to. */
function moduleNameOf(fileName: string, rule: NameRule): string {
  const pattern = rule.kind === "rename" ? rule.file : rule.files.find((f) => fileMatches(fileName, f))!;
  const m = patternRegex(pattern).exec(fileName)!;
  return join(fileName.slice(0, m.index), rule.module);
}
