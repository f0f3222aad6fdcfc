/**
 * Invariants every recurrent (fixed-state) language model must satisfy, shared by the Mamba and
 * Mamba-2 tests: decoding one token at a time through the state reproduces the full forward,
 * prefill continues from a state, the state does not grow, and inference memory is linear in T.
 */
import type { CausalLM } from "../src/models/causal_lm.js";
import { tidy } from "../src/tensor/scope.js";
import { noGrad } from "../src/autograd/tape.js";
import { toArraySync } from "../src/backend/alloc.js";
import { runChecks, formatCheck } from "../src/cli/verify.js";
import { loadModel } from "../src/models/load.js";
import { SafetensorsFile } from "../src/io/safetensors.js";
import { ref32, relErr } from "./helpers.js";
import { Rng } from "../src/util/rng.js";
import * as path from "node:path";

export function randomIds(V: number, n: number, seed: number): number[] {
  const rng = new Rng(seed);
  return Array.from({ length: n }, () => rng.int(0, V));
}

function logitsOf(model: CausalLM, ids: number[], B: number, T: number, state?: ReturnType<CausalLM["allocateState"]>): Float64Array {
  return tidy(() => Float64Array.from(toArraySync(model.forward(model.tokens(ids, B, T), { state }).logits)));
}

/** Rows [t0, t1) of (B, T, R) data. */
function rowsOf(data: ArrayLike<number>, B: number, T: number, R: number, t0: number, t1: number): Float64Array {
  const out = new Float64Array(B * (t1 - t0) * R);
  for (let b = 0; b < B; b++) for (let t = t0; t < t1; t++) for (let r = 0; r < R; r++) out[(b * (t1 - t0) + t - t0) * R + r] = data[(b * T + t) * R + r];
  return out;
}

function idsSlice(ids: number[], B: number, T: number, t0: number, t1: number): number[] {
  return Array.from(rowsOf(ids, B, T, 1, t0, t1));
}

/**
 * Worst relative error over positions between the full forward's logits and (a) one-token
 * decoding through the state, (b) a prefill of `prefix` tokens followed by a forward of the rest.
 */
export function decodeErrors(model: CausalLM, B: number, T: number, prefix: number, seed: number): { step: number; resume: number } {
  return noGrad(() => {
    const V = model.config.V;
    const ids = randomIds(V, B * T, seed);
    const full = logitsOf(model, ids, B, T);
    const state = model.allocateState(B);
    let step = 0;
    for (let t = 0; t < T; t++) {
      const got = logitsOf(model, idsSlice(ids, B, T, t, t + 1), B, 1, state);
      step = Math.max(step, relErr(got, rowsOf(full, B, T, V, t, t + 1)));
    }
    state.dispose();
    const resumeState = model.allocateState(B);
    logitsOf(model, idsSlice(ids, B, T, 0, prefix), B, prefix, resumeState);
    const rest = logitsOf(model, idsSlice(ids, B, T, prefix, T), B, T - prefix, resumeState);
    resumeState.dispose();
    return { step, resume: relErr(rest, rowsOf(full, B, T, V, prefix, T)) };
  });
}

/** Recurrent state bytes and live backend bytes after `n` decoded tokens (batch 1). */
export function stateAfter(model: CausalLM, n: number): { stateBytes: number; liveBytes: number } {
  return noGrad(() => {
    const state = model.allocateState(1);
    const ids = randomIds(model.config.V, n, 5);
    for (let i = 0; i < n; i++) tidy(() => void model.forward(model.tokens([ids[i]], 1, 1), { state }));
    const out = { stateBytes: state.bytes().recurrent, liveBytes: model.backend.memory().bytesInUse };
    state.dispose();
    return out;
  });
}

/** Peak bytes above the baseline during an inference forward of (1, T) tokens, per token. */
export function peakBytesPerToken(model: CausalLM, T: number): number {
  const be = model.backend;
  return noGrad(() => {
    const ids = randomIds(model.config.V, T, 3);
    const base = be.memory().bytesInUse;
    be.resetPeak();
    tidy(() => void model.forward(model.tokens(ids, 1, T)));
    return (be.memory().peakBytes - base) / T;
  });
}

/** runChecks on a fixture directory; returns the failing checks, formatted. */
export async function fixtureFailures(dir: string): Promise<string[]> {
  const model = loadModel(dir, ref32);
  const ref = SafetensorsFile.open(path.join(dir, "reference.safetensors"));
  try {
    const checks = await runChecks(model, ref);
    if (checks.length === 0) return ["no checks ran"];
    return checks.filter((c) => !c.ok).map(formatCheck);
  } finally {
    ref.close();
  }
}
