/**
 * `seqlab export --gguf`: a model directory's weights as a GGUF file llama.cpp loads, with the
 * tensor names, layouts and metadata its convert_hf_to_gguf.py would produce. Tensors are read
 * straight from the safetensors files by their Hugging Face names (the mapping does not need the
 * model's modules) and written one at a time.
 *
 * Matrices multiplied by activations (embeddings, projections) can be F16; norms, biases, the
 * convolution and state-space parameters stay F32, as convert_hf_to_gguf.py keeps them.
 */
import * as path from "node:path";
import { RawConfig } from "../io/config.js";
import { CheckpointWeights } from "../io/weights.js";
import { str, u32, writeGguf, type GgmlType, type GgufTensorToWrite, type GgufValue } from "../io/gguf.js";
import { readModelConfig } from "../models/load.js";
import { SeqlabError } from "../util/errors.js";
import { llamaGguf } from "./gguf_llama.js";
import { mambaGguf } from "./gguf_mamba.js";
import { mamba2Gguf } from "./gguf_mamba2.js";

/** Precision of the large matrices: f32, f16, or as stored (f16 when the checkpoint is half). */
export type ExportType = "f32" | "f16" | "auto";

export interface GgufModel {
  arch: string;
  metadata: [string, GgufValue][];
  tensors: GgufTensorToWrite[];
}

/** What an architecture's mapping gets: the config, the weights, and the type for large matrices. */
export interface ExportContext {
  dir: string;
  raw: RawConfig;
  weights: CheckpointWeights;
  matrixType: GgmlType;
}

const MAPPINGS: Record<string, (c: ExportContext) => GgufModel> = {
  llama: llamaGguf,
  mamba: mambaGguf,
  mamba2: mamba2Gguf,
};

export interface ExportReport {
  arch: string;
  tensors: number;
  matrixType: GgmlType;
}

export function exportGguf(dir: string, out: string, type: ExportType = "auto"): ExportReport {
  const raw = readModelConfig(dir);
  const modelType = raw.str("model_type");
  const mapping = MAPPINGS[modelType];
  if (!mapping) throw new SeqlabError(`${raw.source}: model_type "${modelType}" has no GGUF mapping (export supports: ${Object.keys(MAPPINGS).join(", ")})`);
  const weights = CheckpointWeights.open(dir);
  try {
    const matrixType: GgmlType = type === "f16" || (type === "auto" && weights.storedWeightDtype() !== "f32") ? "F16" : "F32";
    const m = mapping({ dir, raw, weights, matrixType });
    const general: [string, GgufValue][] = [
      ["general.architecture", str(m.arch)],
      ["general.name", str(path.basename(path.resolve(dir)))],
      ["general.file_type", u32(matrixType === "F16" ? 1 : 0)], // llama_ftype: ALL_F32 = 0, MOSTLY_F16 = 1
    ];
    writeGguf(out, [...general, ...m.metadata], m.tensors);
    return { arch: m.arch, tensors: m.tensors.length, matrixType };
  } finally {
    weights.close();
  }
}

/** A tensor copied from the checkpoint (optionally transformed), as `type`. */
export function fromCheckpoint(
  c: ExportContext,
  hfName: string,
  ggufName: string,
  type: GgmlType,
  transform?: (x: Float32Array, shape: number[]) => { data: Float32Array; shape: number[] },
): GgufTensorToWrite {
  if (!c.weights.has(hfName)) throw new SeqlabError(`${c.weights.source}: tensor "${hfName}" is missing (GGUF ${ggufName})`);
  const info = c.weights.info(hfName);
  const shape = transform ? transform(new Float32Array(0), info.shape).shape : info.shape;
  return {
    name: ggufName,
    type,
    shape,
    data: () => {
      const x = c.weights.readF32(hfName);
      return transform ? transform(x, info.shape).data : x;
    },
  };
}
