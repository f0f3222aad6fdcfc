/**
 * Peak memory of RWKV-4 and RWKV-7 against sequence length (DESIGN.md claim 3: training and
 * prefill of RNN-style models are O(T)). For each length the peak of live tensor bytes above
 * the weights is measured with backend.memory() after resetPeak():
 *   - inference: one forward of a (1, T) sequence inside tidy, no gradient;
 *   - training: forward, mean next-token cross-entropy and backward (shorter lengths: the
 *     reference backend is slow).
 * Small widths, so the numbers show the growth, not a realistic model's absolute size.
 * Usage: node --import tsx scripts/rwkv-memory.ts [--lengths 8192,16384,32768,65536] [--train-lengths 512,1024,2048,4096]
 */
import { parseArgs } from "node:util";
import { RefBackend } from "../src/backend/ref/index.js";
import { fromArray } from "../src/backend/alloc.js";
import { backward, noGrad } from "../src/autograd/tape.js";
import { tidy } from "../src/tensor/scope.js";
import { RawConfig } from "../src/io/config.js";
import { ModuleContext } from "../src/nn/module.js";
import { buildModel } from "../src/models/registry.js";
import type { CausalLM } from "../src/models/causal_lm.js";
import * as ops from "../src/ops/index.js";
import { Rng } from "../src/util/rng.js";

const MODELS: Record<string, Record<string, unknown>> = {
  "rwkv4 C=32 L=2 V=64": { model_type: "rwkv", vocab_size: 64, hidden_size: 32, num_hidden_layers: 2, rescale_every: 0 },
  "rwkv7 C=32 H=2 N=16 L=2 V=64": {
    model_type: "rwkv7",
    vocab_size: 64,
    hidden_size: 32,
    num_hidden_layers: 2,
    head_size: 16,
    decay_low_rank_dim: 8,
    a_low_rank_dim: 8,
    v_low_rank_dim: 8,
    gate_low_rank_dim: 8,
  },
};

const { values } = parseArgs({
  options: {
    lengths: { type: "string", default: "8192,16384,32768,65536" },
    "train-lengths": { type: "string", default: "512,1024,2048,4096" },
  },
});
const list = (s: string) => s.split(",").map((x) => parseInt(x, 10));

const be = new RefBackend();
const rng = new Rng(1);

/** Peak bytes above what was live before `fn` ran. */
function peakOf(fn: () => void): number {
  const base = be.memory().bytesInUse;
  be.resetPeak();
  fn();
  return be.memory().peakBytes - base;
}

function measure(model: CausalLM, T: number, train: boolean): { peak: number; seconds: number } {
  const ids = Array.from({ length: T }, () => rng.int(0, model.config.V));
  const targets = Int32Array.from({ length: T }, (_, t) => (t + 1 < T ? ids[t + 1] : -100));
  const t0 = performance.now();
  const peak = peakOf(() =>
    tidy(() => {
      const x = model.tokens(ids, 1, T);
      if (!train) {
        noGrad(() => model.forward(x));
        return;
      }
      const loss = ops.crossEntropy(model.forward(x).logits, fromArray(be, targets, [T], "i32"));
      backward(loss);
      for (const p of model.parameters()) {
        p.grad?.dispose();
        p.grad = null;
      }
    }),
  );
  return { peak, seconds: (performance.now() - t0) / 1000 };
}

function report(title: string, model: CausalLM, lengths: number[], train: boolean): void {
  console.log(`\n${title} (${model.parameterCount()} parameters, ${be.describe()})`);
  console.log("        T    peak bytes   bytes/token   x prev (T doubles)   seconds");
  let prev: number | null = null;
  for (const T of lengths) {
    const { peak, seconds } = measure(model, T, train);
    const ratio = prev === null ? "" : (peak / prev).toFixed(3);
    console.log(`${String(T).padStart(9)} ${String(peak).padStart(13)} ${(peak / T).toFixed(1).padStart(13)} ${ratio.padStart(20)} ${seconds.toFixed(2).padStart(9)}`);
    prev = peak;
  }
}

for (const [name, cfg] of Object.entries(MODELS)) {
  const model = buildModel(new RawConfig(name, cfg), ModuleContext.seeded(be, 7));
  report(`${name}: inference forward`, model, list(values.lengths!), false);
  report(`${name}: training step (forward + backward)`, model, list(values["train-lengths"]!), true);
}
