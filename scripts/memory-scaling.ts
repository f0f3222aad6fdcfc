/**
 * Peak memory of an inference forward versus sequence length: Mamba and Mamba-2 (tiny width,
 * whole model: embeddings to logits) against materialised ("naive") causal attention
 * (ops.attention with impl "naive", one head). SSMs hold O(T) activations; naive attention
 * holds the (T x T) probabilities. Peak bytes are the backend's exact allocation high-water
 * mark above what was live before the forward (parameters excluded).
 *
 * Usage: npx tsx scripts/memory-scaling.ts [--lengths 8192,16384,32768,65536] [--attention-budget-gib 2]
 * Naive attention is run only while its probabilities fit the budget; longer lengths print
 * the bytes the probabilities alone would need.
 */
import { parseArgs } from "node:util";
import { RefBackend } from "../src/backend/ref/index.js";
import type { Backend } from "../src/backend/backend.js";
import { fromArray } from "../src/backend/alloc.js";
import { noGrad } from "../src/autograd/tape.js";
import { tidy } from "../src/tensor/scope.js";
import { RawConfig } from "../src/io/config.js";
import { ModuleContext } from "../src/nn/module.js";
import { buildModel } from "../src/models/registry.js";
import type { CausalLM } from "../src/models/causal_lm.js";
import * as ops from "../src/ops/index.js";
import { Rng } from "../src/util/rng.js";
import { formatBytes, table } from "../src/util/format.js";

const { values } = parseArgs({
  options: { lengths: { type: "string", default: "8192,16384,32768,65536" }, "attention-budget-gib": { type: "string", default: "2" } },
});
const lengths = values.lengths!.split(",").map(Number);
const budget = Number(values["attention-budget-gib"]) * 2 ** 30;

const be = new RefBackend();
const C = 16;
const V = 64;
const CONFIGS: Record<string, Record<string, unknown>> = {
  mamba: { model_type: "mamba", vocab_size: V, hidden_size: C, state_size: 16, num_hidden_layers: 1, expand: 2, conv_kernel: 4 },
  mamba2: { model_type: "mamba2", vocab_size: V, hidden_size: C, state_size: 16, num_hidden_layers: 1, expand: 2, num_heads: 4, head_dim: 8, n_groups: 1, chunk_size: 256 },
};

/** Peak bytes above the live baseline while `fn` runs inside a tidy scope. */
function peakOf(b: Backend, fn: () => void): number {
  const base = b.memory().bytesInUse;
  b.resetPeak();
  noGrad(() => tidy(fn));
  return b.memory().peakBytes - base;
}

function modelPeak(model: CausalLM, T: number): number {
  const rng = new Rng(T);
  const ids = Array.from({ length: T }, () => rng.int(0, V));
  return peakOf(be, () => void model.forward(model.tokens(ids, 1, T)));
}

/** q, k, v (1, T, 1, K) -> naive causal attention, probabilities (1, 1, T, T) materialised. */
function attentionPeak(T: number, K: number): number | null {
  if (T * T * 4 > budget) return null;
  const rng = new Rng(T);
  const rand = () => fromArray(be, Float32Array.from({ length: T * K }, () => rng.normal()), [1, T, 1, K]);
  const [q, k, v] = [rand(), rand(), rand()];
  const peak = peakOf(be, () => void ops.attention(q, k, v, { impl: "naive" }));
  for (const t of [q, k, v]) t.dispose();
  return peak;
}

const models = Object.fromEntries(
  Object.entries(CONFIGS).map(([name, json]) => [name, buildModel(new RawConfig(name, json), ModuleContext.seeded(be, 1))]),
);
console.log(`backend: ${be.describe()}; mamba and mamba2: C=${C}, 1 layer, V=${V}; naive attention: 1 head, K=${C}`);
const rows: string[][] = [];
for (const T of lengths) {
  const t0 = performance.now();
  const m1 = modelPeak(models.mamba, T);
  const m2 = modelPeak(models.mamba2, T);
  const at = attentionPeak(T, C);
  const per = (b: number) => `${(b / T).toFixed(0)} B/tok`;
  rows.push([
    String(T),
    formatBytes(m1),
    per(m1),
    formatBytes(m2),
    per(m2),
    at === null ? `not run (>= ${formatBytes(T * T * 4)})` : formatBytes(at),
    at === null ? "-" : per(at),
  ]);
  console.error(`T=${T} done in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}
console.log(table(["T", "mamba peak", "per token", "mamba2 peak", "per token", "naive attention peak", "per token"], rows));
