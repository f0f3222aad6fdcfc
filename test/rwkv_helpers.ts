/**
 * Shared checks for the RWKV model tests: seeded random models, step decoding against the
 * full forward, continuation from a state, the state's footprint over long inputs, and
 * whole-model gradients against finite differences in float64.
 */
import type { Backend } from "../src/backend/backend.js";
import { fromArray, toArraySync } from "../src/backend/alloc.js";
import { backward, noGrad } from "../src/autograd/tape.js";
import { tidy } from "../src/tensor/scope.js";
import { RawConfig } from "../src/io/config.js";
import { ModuleContext } from "../src/nn/module.js";
import { buildModel } from "../src/models/registry.js";
import type { CausalLM } from "../src/models/causal_lm.js";
import type { InferenceState } from "../src/nn/state.js";
import { shiftedTargets } from "../src/cli/verify.js";
import * as ops from "../src/ops/index.js";
import { Rng } from "../src/util/rng.js";
import { relErr } from "./helpers.js";

/** A model of `config` with seeded weights, every parameter perturbed (no zero-initialised matrix stays zero). */
export function randomModel(config: Record<string, unknown>, be: Backend, seed: number): CausalLM {
  const model = buildModel(new RawConfig("test config", config), ModuleContext.seeded(be, seed));
  const rng = new Rng(seed + 1);
  for (const [, p] of model.namedParameters()) {
    const data = p.handle as Float32Array | Float64Array;
    let mean = 0;
    for (const x of data) mean += x / data.length;
    let sd = 0;
    for (const x of data) sd += (x - mean) ** 2 / data.length;
    const scale = 0.3 * (Math.sqrt(sd) > 0.05 ? Math.sqrt(sd) : 0.25);
    for (let i = 0; i < data.length; i++) data[i] += rng.normal() * scale;
  }
  return model;
}

export function randomIds(rng: Rng, n: number, V: number): number[] {
  return Array.from({ length: n }, () => rng.int(0, V));
}

/** Logits (B, T, V) as numbers, optionally continuing `state`. */
export function logits(model: CausalLM, ids: number[], B: number, T: number, state?: InferenceState): Float64Array {
  return noGrad(() => tidy(() => Float64Array.from(toArraySync(model.forward(model.tokens(ids, B, T), { state }).logits))));
}

/** Rows [t0, t1) of every sequence of a (B, T, V) array. */
function timeRange(x: Float64Array, B: number, T: number, V: number, t0: number, t1: number): Float64Array {
  const out = new Float64Array(B * (t1 - t0) * V);
  for (let b = 0; b < B; b++) out.set(x.subarray((b * T + t0) * V, (b * T + t1) * V), b * (t1 - t0) * V);
  return out;
}

function column(ids: number[], B: number, T: number, t0: number, t1: number): number[] {
  const out: number[] = [];
  for (let b = 0; b < B; b++) out.push(...ids.slice(b * T + t0, b * T + t1));
  return out;
}

/** Worst relative error over positions between one-token decoding and the full forward. */
export function stepDecodingError(model: CausalLM, ids: number[], B: number, T: number): number {
  const V = model.config.V;
  const full = logits(model, ids, B, T);
  const state = model.allocateState(B);
  let worst = 0;
  try {
    for (let t = 0; t < T; t++) {
      const step = logits(model, column(ids, B, T, t, t + 1), B, 1, state);
      worst = Math.max(worst, relErr(step, timeRange(full, B, T, V, t, t + 1)));
    }
  } finally {
    state.dispose();
  }
  return worst;
}

/** Relative error of forward(rest | state after prefix) against the tail of forward(whole). */
export function continuationError(model: CausalLM, ids: number[], B: number, T: number, split: number): number {
  const V = model.config.V;
  const full = logits(model, ids, B, T);
  const state = model.allocateState(B);
  try {
    const head = logits(model, column(ids, B, T, 0, split), B, split, state);
    const tail = logits(model, column(ids, B, T, split, T), B, T - split, state);
    return Math.max(relErr(head, timeRange(full, B, T, V, 0, split)), relErr(tail, timeRange(full, B, T, V, split, T)));
  } finally {
    state.dispose();
  }
}

/** The state's bytes and the backend's live bytes after a run of `n` tokens (prefill then 3 decoded). */
export function footprintAfter(model: CausalLM, n: number, rng: Rng): { state: number; live: number; kv: number } {
  const state = model.allocateState(1);
  try {
    const ids = randomIds(rng, n, model.config.V);
    logits(model, ids.slice(0, n - 3), 1, n - 3, state);
    for (const id of ids.slice(n - 3)) logits(model, [id], 1, 1, state);
    const bytes = state.bytes();
    return { state: bytes.recurrent, kv: bytes.kvCacheAllocated, live: model.backend.memory().bytesInUse };
  } finally {
    state.dispose();
  }
}

/**
 * Mean next-token cross-entropy gradients against central differences for `perParam` random
 * entries of every parameter (float64 models). Returns the relative error over all samples.
 */
export function fdGradientError(model: CausalLM, ids: number[], B: number, T: number, perParam: number, rng: Rng): number {
  const targets = shiftedTargets(Int32Array.from(ids), B, T);
  const loss = () => {
    const t = fromArray(model.backend, targets, [B * T], "i32");
    return ops.crossEntropy(model.forward(model.tokens(ids, B, T)).logits, t);
  };
  const params = model.namedParameters();
  for (const [, p] of params) p.grad = null;
  tidy(() => backward(loss()));
  const analytic: number[] = [];
  const numeric: number[] = [];
  const eps = 1e-5;
  const value = () => noGrad(() => tidy(() => toArraySync(loss())[0]));
  for (const [, p] of params) {
    const data = p.handle as Float64Array;
    const grad = toArraySync(p.grad!);
    for (let s = 0; s < perParam; s++) {
      const i = rng.int(0, p.size);
      const orig = data[i];
      data[i] = orig + eps;
      const up = value();
      data[i] = orig - eps;
      const down = value();
      data[i] = orig;
      analytic.push(grad[i]);
      numeric.push((up - down) / (2 * eps));
    }
    p.grad?.dispose();
    p.grad = null;
  }
  return relErr(analytic, numeric);
}
