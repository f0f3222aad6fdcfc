/**
 * Invariants of models that mix KV-cached attention with recurrent layers: the same tokens fed
 * through one inference state in pieces (a piece of 1 is a decoding step; a small capacity makes
 * the KV caches grow on the way) give the full forward's logits; state bytes split into a KV part
 * that grows with every token and a recurrent part that does not.
 */
import assert from "node:assert/strict";
import type { CausalLM } from "../src/models/causal_lm.js";
import { RawConfig } from "../src/io/config.js";
import { buildModel } from "../src/models/registry.js";
import { ModuleContext } from "../src/nn/module.js";
import { noGrad } from "../src/autograd/tape.js";
import { tidy } from "../src/tensor/scope.js";
import { toArraySync } from "../src/backend/alloc.js";
import { Rng } from "../src/util/rng.js";
import { maxAbsDiff, ref32 } from "./helpers.js";

export function randomModel(json: Record<string, unknown>, seed: number): CausalLM {
  return buildModel(new RawConfig("test config", json), ModuleContext.seeded(ref32, seed));
}

/** Worst |logit difference| between the full forward and the pieces, batch of 2. */
export function piecesVsFull(model: CausalLM, pieces: number[], capacity: number, seed = 3): number {
  const rng = new Rng(seed);
  const T = pieces.reduce((a, b) => a + b, 0);
  const ids = Array.from({ length: 2 * T }, () => rng.int(0, model.config.V));
  return noGrad(() =>
    tidy(() => {
      const V = model.config.V;
      const full = toArraySync(model.forward(model.tokens(ids, 2, T)).logits);
      const state = model.allocateState(2, capacity);
      let worst = 0;
      let t0 = 0;
      for (const n of pieces) {
        const rows = [...ids.slice(t0, t0 + n), ...ids.slice(T + t0, T + t0 + n)];
        const got = toArraySync(model.forward(model.tokens(rows, 2, n, t0), { state }).logits);
        for (let b = 0; b < 2; b++) {
          worst = Math.max(worst, maxAbsDiff(got.subarray(b * n * V, (b + 1) * n * V), full.subarray((b * T + t0) * V, (b * T + t0 + n) * V)));
        }
        t0 += n;
      }
      assert.equal(state.position, T);
      state.dispose();
      return worst;
    }),
  );
}

export const steps = (n: number) => new Array<number>(n).fill(1);

/** Decoding piece patterns: one token at a time; a prefill then steps; ragged prefills. */
export const PIECES = [steps(15), [5, ...steps(8)], [4, 6, 1, 2, 1, 3]];

/**
 * Decode `n` tokens one at a time (batch 1) and return, after each, the state's KV-cache and
 * recurrent bytes.
 */
export function bytesWhileDecoding(model: CausalLM, n: number): { kvCache: number; recurrent: number }[] {
  const state = model.allocateState(1, 2);
  const out: { kvCache: number; recurrent: number }[] = [];
  noGrad(() =>
    tidy(() => {
      for (let t = 0; t < n; t++) {
        model.forward(model.tokens([(t * 7) % model.config.V], 1, 1, t), { state });
        const b = state.bytes();
        out.push({ kvCache: b.kvCache, recurrent: b.recurrent });
      }
    }),
  );
  state.dispose();
  return out;
}
