/**
 * The playground's model choices: five architectures at three sizes, as seqlab presets, and a
 * one-line summary of any built model. Pure (no DOM, no worker APIs): the Node tests build the
 * very same configs to compare the browser's tokens with the Node engine's.
 */
import { preset } from "../../../src/models/presets.js";
import { RawConfig } from "../../../src/io/config.js";
import { buildModel } from "../../../src/models/registry.js";
import { ModuleContext } from "../../../src/nn/module.js";
import type { Backend } from "../../../src/backend/backend.js";
import type { CausalLM } from "../../../src/models/causal_lm.js";
import { SeqlabError } from "../../../src/util/errors.js";

import { ARCHS, SIZES, type ArchName, type SizeName } from "./choices.js";

export { ARCHS, SIZES, type ArchName, type SizeName };

export function presetConfig(arch: ArchName, size: SizeName, vocab: number): Record<string, unknown> {
  if (!ARCHS.some((a) => a.name === arch)) throw new SeqlabError(`architecture "${arch}" is unknown (${ARCHS.map((a) => a.name).join(", ")})`);
  if (!(size in SIZES)) throw new SeqlabError(`size "${size}" is unknown (${Object.keys(SIZES).join(", ")})`);
  if (!(Number.isInteger(vocab) && vocab >= 2 && vocab <= 1 << 20)) throw new SeqlabError(`vocabulary must be an integer in [2, ${1 << 20}], got ${vocab}`);
  return preset(arch, { vocab, width: SIZES[size].width });
}

/** A freshly initialised model from the seeded generator: the same seed gives the same weights everywhere. */
export function freshModel(be: Backend, arch: ArchName, size: SizeName, vocab: number, seed: number): CausalLM {
  if (!(Number.isInteger(seed) && seed >= 0 && seed <= 0xffffffff)) throw new SeqlabError(`seed must be an integer in [0, 4294967295], got ${seed}`);
  const config = presetConfig(arch, size, vocab);
  return buildModel(new RawConfig(`preset ${arch}`, config), ModuleContext.seeded(be, seed));
}

/** Free a model's parameters (backend memory the JS collector cannot see). */
export function disposeModel(model: CausalLM): void {
  for (const t of model.parameters()) t.dispose();
}

/** The kind of each layer's mixer, from the state it allocates (attention, mamba, rwkv7 ...). */
export function layerKinds(model: CausalLM): string[] {
  const state = model.allocateState(1, 1);
  try {
    return state.layers.map((l) => l.kind);
  } finally {
    state.dispose();
  }
}
