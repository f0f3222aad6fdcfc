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
  /** layer count, once parameter matching has chosen it */
  layers?: number;
  /** width, where parameter matching had to narrow the model instead (the hybrid) */
  width?: number;
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
  const base = preset(a.preset, { ...o, layers: a.layers ?? o.layers, width: a.width ?? o.width });
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

function countParams(be: Backend, a: Arch, o: PresetOptions): number {
  const m = buildModel(new RawConfig(`showdown ${a.id}`, archConfig(a, o)), ModuleContext.forLoading(be));
  const n = m.parameterCount();
  for (const t of m.parameters()) t.dispose();
  return n;
}

/**
 * The showdown's architectures with layer counts matched to the Transformer's parameter count
 * at `o` (the ablation takes Mamba's count, so the two differ only in selection).
 */
export function matchedArchs(be: Backend, o: PresetOptions): Record<string, Arch> {
  const target = countParams(be, ARCHS.transformer, o);
  const out: Record<string, Arch> = {};
  for (const [id, a] of Object.entries(ARCHS)) {
    out[id] = a.preset === "transformer" ? { ...a, layers: o.layers ?? 2 } : { ...a, layers: matchLayers(be, a, { ...o, layers: undefined }, target).layers };
  }
  out["mamba-lti"] = { ...out["mamba-lti"], layers: out.mamba.layers };
  out.hybrid = matchHybridWidth(be, out.hybrid, o, target);
  return out;
}

/**
 * The hybrid's smallest layout is one group of four layers (three Mamba, one attention, MoE on
 * every other), which at the Transformer's width already holds more than twice its parameters.
 * It is then matched by width instead: the multiple of 8 whose parameter count is closest.
 */
function matchHybridWidth(be: Backend, a: Arch, o: PresetOptions, target: number): Arch {
  const at = (width: number) => countParams(be, { ...a, width }, { ...o, layers: a.layers });
  let best = { width: o.width, params: at(o.width) };
  if (best.params <= 1.1 * target) return a;
  for (let w = o.width - 8; w >= 16; w -= 8) {
    const params = at(w);
    if (Math.abs(params - target) < Math.abs(best.params - target)) best = { width: w, params };
    if (params < target) break;
  }
  return { ...a, width: best.width, label: `${a.label}, width ${best.width}` };
}

/**
 * Parameter matching: the layer count (a multiple of `step`, 4 for the hybrid's pattern) whose
 * parameter count is closest to the reference model's.
 */
export function matchLayers(be: Backend, a: Arch, o: PresetOptions, target: number): { layers: number; params: number } {
  const step = a.preset === "hybrid" ? 4 : 1;
  let best = { layers: step, params: countParams(be, a, { ...o, layers: step }) };
  for (let L = 2 * step; L <= 16; L += step) {
    const params = countParams(be, a, { ...o, layers: L });
    if (Math.abs(params - target) < Math.abs(best.params - target)) best = { layers: L, params };
    if (params > target) break;
  }
  return best;
}
