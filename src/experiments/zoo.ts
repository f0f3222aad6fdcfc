/**
 * The showdown's architectures: native configs from the presets, at one width and vocabulary,
 * plus the attention implementation to use (naive materialised vs tiled).
 */
import { RawConfig } from "../io/config.js";
import type { Backend } from "../backend/backend.js";
import { buildModel } from "../models/registry.js";
import { preset, type PresetOptions } from "../models/presets.js";
import { ModuleContext } from "../nn/module.js";
import type { CausalLM } from "../models/causal_lm.js";

export interface Arch {
  /** short id used in results.json */
  id: string;
  label: string;
  preset: string;
  /** overrides merged into the preset's config */
  overrides?: Record<string, unknown>;
}

export const ARCHS: Record<string, Arch> = {
  "attention-naive": { id: "attention-naive", label: "Transformer, naive attention", preset: "transformer", overrides: { attention: { impl: "naive" } } },
  "attention-tiled": { id: "attention-tiled", label: "Transformer, tiled attention", preset: "transformer" },
  transformer: { id: "transformer", label: "Transformer (Llama-style)", preset: "transformer" },
  mamba: { id: "mamba", label: "Mamba", preset: "mamba" },
  "mamba-lti": { id: "mamba-lti", label: "Mamba without selection", preset: "mamba-lti" },
  mamba2: { id: "mamba2", label: "Mamba-2", preset: "mamba2" },
  rwkv: { id: "rwkv", label: "RWKV-7", preset: "rwkv7" },
  hybrid: { id: "hybrid", label: "Hybrid (Jamba-style, MoE)", preset: "hybrid" },
};

export function archConfig(a: Arch, o: PresetOptions): Record<string, unknown> {
  const base = preset(a.preset, o);
  const merged: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(a.overrides ?? {})) {
    const prev = base[k];
    merged[k] = prev && typeof prev === "object" && !Array.isArray(prev) ? { ...(prev as object), ...(v as object) } : v;
  }
  return merged;
}

export function buildArch(be: Backend, a: Arch, o: PresetOptions, seed: number): CausalLM {
  return buildModel(new RawConfig(`showdown ${a.id}`, archConfig(a, o)), ModuleContext.seeded(be, seed));
}
