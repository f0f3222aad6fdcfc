/**
 * The parts a native seqlab model is assembled from: token mixers (attention, Mamba, Mamba-2,
 * RWKV, Gated DeltaNet) and FFNs (MLP, MoE, none), each made from its section of the native
 * config. Architectures register their factories here; the native model looks them up by name.
 */
import type { Tensor } from "../tensor/tensor.js";
import type { Backend } from "../backend/backend.js";
import type { RawConfig } from "../io/config.js";
import type { Module, ModuleContext } from "../nn/module.js";
import type { LayerState } from "../nn/state.js";
import type { RouterLog } from "../nn/moe.js";
import { SeqlabError } from "../util/errors.js";

/** A token mixer as the native block uses it. */
export interface MixerPart {
  module: Module;
  /** x (B, T, C) at positions pos0.. -> (B, T, C); prefill from / into `state` when given */
  forward(x: Tensor, pos0: number, state?: LayerState): Tensor;
  allocateState(be: Backend, batch: number, capacity: number): LayerState;
}

export interface FfnPart {
  module: Module;
  /** (B, T, C) -> (B, T, C); a mixture of experts records its routing in `router` when given */
  forward(x: Tensor, router?: RouterLog): Tensor;
}

/** The sizes every part sees, plus its own section of the config (e.g. config.mamba). */
export interface PartContext {
  ctx: ModuleContext;
  C: number;
  eps: number;
  initStd: number;
  section: RawConfig;
  layer: number;
}

type MixerFactory = (p: PartContext) => MixerPart;
type FfnFactory = (p: PartContext) => FfnPart;

const mixers = new Map<string, MixerFactory>();
const ffns = new Map<string, FfnFactory>();

export function registerMixer(name: string, f: MixerFactory): void {
  mixers.set(name, f);
}

export function registerFfn(name: string, f: FfnFactory): void {
  ffns.set(name, f);
}

export function mixerNames(): string[] {
  return [...mixers.keys()];
}

export function ffnNames(): string[] {
  return ["none", ...ffns.keys()];
}

export function makeMixer(name: string, p: PartContext, source: string): MixerPart {
  const f = mixers.get(name);
  if (!f) throw new SeqlabError(`${source}: layer ${p.layer}: mixer "${name}" is unknown (known: ${mixerNames().join(", ")})`);
  return f(p);
}

export function makeFfn(name: string, p: PartContext, source: string): FfnPart | null {
  if (name === "none") return null;
  const f = ffns.get(name);
  if (!f) throw new SeqlabError(`${source}: layer ${p.layer}: ffn "${name}" is unknown (known: ${ffnNames().join(", ")})`);
  return f(p);
}
