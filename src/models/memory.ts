/**
 * Inference memory by layer kind, computed from shapes: an attention layer's KV cache holds a k and
 * a v row per token (B x G x K floats each), so it grows linearly with position; a Mamba, Mamba-2,
 * RWKV or DeltaNet layer holds a fixed-size state. A state is allocated once (one KV row) and its
 * per-layer sizes are extrapolated to the position asked for: nothing is run. Built on the
 * shape-only backend, a configuration's report costs no memory even when the model would not fit.
 */
import type { CausalLM } from "./causal_lm.js";
import type { RawConfig } from "../io/config.js";
import { ModuleContext } from "../nn/module.js";
import type { LayerBytes } from "../nn/state.js";
import { ShapeOnlyBackend } from "../backend/shape_only.js";
import { buildModel } from "./registry.js";

export interface LayerMemory {
  layer: number;
  kind: LayerBytes["kind"];
  /** bytes at the position: KV rows for every token so far, or the fixed recurrent state */
  bytes: number;
  bytesPerToken: number;
}

export interface KindMemory {
  kind: LayerBytes["kind"];
  layers: number;
  /** all layers of this kind together */
  bytes: number;
  bytesPerToken: number;
}

export interface MemoryReport {
  modelType: string;
  batch: number;
  /** tokens held (the KV caches have this many rows) */
  position: number;
  layers: LayerMemory[];
  byKind: KindMemory[];
  kvCache: number;
  recurrent: number;
  /** the weights in float32, as seqlab computes (tied tensors once) */
  parameterBytes: number;
}

/** The inference state memory of `model` for `batch` sequences after `position` tokens. */
export function stateMemory(model: CausalLM, position: number, batch = 1): MemoryReport {
  const state = model.allocateState(batch, 1);
  const per = state.layerBytes();
  state.dispose();
  const layers = per.map((l, layer) => ({
    layer,
    kind: l.kind,
    bytes: l.bytesPerToken > 0 ? l.bytesPerToken * position : l.bytes,
    bytesPerToken: l.bytesPerToken,
  }));
  const byKind: KindMemory[] = [];
  for (const l of layers) {
    let k = byKind.find((x) => x.kind === l.kind);
    if (!k) byKind.push((k = { kind: l.kind, layers: 0, bytes: 0, bytesPerToken: 0 }));
    k.layers++;
    k.bytes += l.bytes;
    k.bytesPerToken += l.bytesPerToken;
  }
  const sum = (attention: boolean) => layers.filter((l) => (l.kind === "attention") === attention).reduce((n, l) => n + l.bytes, 0);
  return {
    modelType: model.config.modelType,
    batch,
    position,
    layers,
    byKind,
    kvCache: sum(true),
    recurrent: sum(false),
    parameterBytes: model.parameterCount() * 4,
  };
}

/** The same report for a configuration, without weights or data (the shape-only backend). */
export function configMemory(raw: RawConfig, position: number, batch = 1): MemoryReport {
  const model = buildModel(raw, ModuleContext.forLoading(new ShapeOnlyBackend()));
  return stateMemory(model, position, batch);
}
