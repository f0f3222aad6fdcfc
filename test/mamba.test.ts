/**
 * Mamba: HF parity on every fixture, decoding through the fixed-size state, prefill from a
 * state, constant state size, linear inference memory, module gradchecks, config errors, and
 * the time-invariant (selective: false) ablation.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { RawConfig } from "../src/io/config.js";
import { ModuleContext } from "../src/nn/module.js";
import { MambaMixer, type MambaMixerConfig } from "../src/nn/mamba.js";
import { MambaForCausalLM, parseMambaConfig } from "../src/models/mamba.js";
import { buildModel } from "../src/models/registry.js";
import type { MambaState } from "../src/nn/state.js";
import * as ops from "../src/ops/index.js";
import { fromArray, kernelsOf, toArraySync } from "../src/backend/alloc.js";
import { backward } from "../src/autograd/tape.js";
import { tidy } from "../src/tensor/scope.js";
import { SeqlabError } from "../src/util/errors.js";
import { Rng } from "../src/util/rng.js";
import { fixtureDirs, gradcheck, randn, ref32, ref64 } from "./helpers.js";
import { decodeErrors, fixtureFailures, peakBytesPerToken, stateAfter } from "./ssm_helpers.js";

function config(json: Record<string, unknown>) {
  return parseMambaConfig(new RawConfig("test mamba config", { model_type: "mamba", ...json }));
}

const TINY = { vocab_size: 16, hidden_size: 8, state_size: 4, num_hidden_layers: 1, expand: 2, conv_kernel: 4 };

test("every Mamba fixture passes verify's checks (logits, hidden states, loss, gradients, generation)", async () => {
  const dirs = fixtureDirs("mamba");
  assert.ok(dirs.length > 0, "no Mamba fixtures found");
  for (const dir of dirs) assert.deepEqual(await fixtureFailures(dir), [], dir);
});

test("seeded models of other shapes: one-token decoding and prefill from a state reproduce the full forward", () => {
  const shapes = [
    { vocab_size: 37, hidden_size: 24, state_size: 5, num_hidden_layers: 2, expand: 2, conv_kernel: 3, time_step_rank: "auto", use_bias: true, tie_word_embeddings: false },
    { vocab_size: 20, hidden_size: 16, state_size: 3, num_hidden_layers: 3, expand: 3, conv_kernel: 2, time_step_rank: 3, use_conv_bias: false },
    { vocab_size: 11, hidden_size: 12, state_size: 7, num_hidden_layers: 1, expand: 1, conv_kernel: 1, hidden_act: "gelu" },
  ];
  shapes.forEach((shape, i) => {
    const model = new MambaForCausalLM(ModuleContext.seeded(ref32, 100 + i), config(shape));
    const { step, resume } = decodeErrors(model, 2, 13, 5, i);
    assert.ok(step < 1e-5, `shape ${i}: step-by-step logits differ by ${step}`);
    assert.ok(resume < 1e-5, `shape ${i}: prefill-from-state logits differ by ${resume}`);
  });
});

test("the recurrent state has the same size after 10 and after 10,000 tokens, and nothing leaks", () => {
  const model = new MambaForCausalLM(ModuleContext.seeded(ref32, 3), config(TINY));
  const short = stateAfter(model, 10);
  const long = stateAfter(model, 10_000);
  assert.ok(short.stateBytes > 0);
  assert.equal(long.stateBytes, short.stateBytes);
  assert.equal(long.liveBytes, short.liveBytes);
});

test("inference peak memory per token is constant from T = 1k to 16k", () => {
  const model = new MambaForCausalLM(ModuleContext.seeded(ref32, 4), config(TINY));
  const perToken = [1024, 4096, 16384].map((T) => peakBytesPerToken(model, T));
  const ratio = Math.max(...perToken) / Math.min(...perToken);
  assert.ok(ratio < 1.05, `peak bytes per token ${perToken.map((b) => b.toFixed(0)).join(", ")} vary by ${ratio}`);
});

function mixerConfig(over: Partial<MambaMixerConfig> = {}): MambaMixerConfig {
  return {
    C: 4,
    D: 6,
    N: 3,
    R: 2,
    W: 3,
    useBias: true,
    useConvBias: true,
    act: "silu",
    selective: true,
    initStd: 0.5,
    dtInit: { min: 0.01, max: 0.5, floor: 1e-4, scale: 1, scheme: "random" },
    ...over,
  };
}

/** Gradcheck of a mixer's forward w.r.t. its input and every parameter, from a fresh copy of `s0`. */
function mixerGradError(mixer: MambaMixer, s0?: MambaState): number {
  const rng = new Rng(21);
  const x = randn(ref64, [2, 5, mixer.cfg.C], rng, 1, true);
  return gradcheck(() => {
    const state = s0 && { kind: "mamba" as const, conv: ops.copy(s0.conv), ssm: ops.copy(s0.ssm) };
    return mixer.forward(x, state);
  }, [x, ...mixer.parameters()]);
}

test("MambaMixer gradcheck (float64): fused silu gate, unfused gelu gate, from an initial state", () => {
  const rng = new Rng(8);
  for (const act of ["silu", "gelu"] as const) {
    const mixer = new MambaMixer(ModuleContext.seeded(ref64, 5), mixerConfig({ act }));
    assert.ok(mixerGradError(mixer) < 1e-6, act);
  }
  const mixer = new MambaMixer(ModuleContext.seeded(ref64, 6), mixerConfig());
  const s0: MambaState = { kind: "mamba", conv: randn(ref64, [2, 2, 6], rng), ssm: randn(ref64, [2, 6, 3], rng) };
  assert.ok(mixerGradError(mixer, s0) < 1e-6, "with state");
});

test("selective: false builds a time-invariant SSM (dt, B, C are parameters), gradchecks and trains", () => {
  const mixer = new MambaMixer(ModuleContext.seeded(ref64, 7), mixerConfig({ selective: false }));
  const names = mixer.namedParameters().map(([n]) => n);
  assert.ok(names.includes("dt_bias") && names.includes("B") && names.includes("C"), names.join(", "));
  assert.ok(!names.some((n) => n.startsWith("x_proj") || n.startsWith("dt_proj")), names.join(", "));
  assert.ok(mixerGradError(mixer) < 1e-6, "gradcheck");

  // a tiny LM with the ablation learns a fixed periodic sequence by plain gradient descent
  const cfg = config({ ...TINY, num_hidden_layers: 2, selective: false });
  assert.equal(cfg.mixer.selective, false);
  const model = new MambaForCausalLM(ModuleContext.seeded(ref32, 9), cfg);
  const T = 24;
  const ids = Array.from({ length: T }, (_, t) => (t * 5) % 7);
  const targets = Int32Array.from(ids.slice(1).concat([-100]));
  const lossAt = (train: boolean): number =>
    tidy(() => {
      const { logits } = model.forward(model.tokens(ids, 1, T));
      const loss = ops.crossEntropy(logits, fromArray(ref32, targets, [T], "i32"));
      const value = toArraySync(loss)[0];
      if (train) {
        backward(loss);
        for (const p of model.parameters()) {
          kernelsOf(p).axpby(p.handle, 1, p.handle, -0.1, p.grad!.handle, p.size);
          p.grad!.dispose();
          p.grad = null;
        }
      }
      return value;
    });
  const before = lossAt(false);
  for (let i = 0; i < 60; i++) lossAt(true);
  const after = lossAt(false);
  assert.ok(after < 0.5 * before, `loss ${before} -> ${after}`);
});

test("Mamba config: HF defaults, dt rank auto, and one-line errors for invalid values", () => {
  const c = config({ hidden_size: 40 });
  assert.equal(c.mixer.R, 3); // ceil(40 / 16)
  assert.equal(c.mixer.D, 80);
  assert.equal(c.tieWordEmbeddings, true);
  assert.equal(c.mixer.useBias, false); // MambaConfig.use_bias defaults to False in transformers 5.17
  assert.equal(config({ hidden_size: 40, intermediate_size: 64 }).mixer.D, 64);
  const bad: [Record<string, unknown>, RegExp][] = [
    [{ time_step_rank: "big" }, /time_step_rank.*integer/],
    [{ hidden_act: "swishy" }, /hidden_act.*must be one of/],
    [{ expand: 0 }, /expand 0 must be positive/],
    [{ state_size: 0 }, /state_size.*at least 1/],
    [{ conv_kernel: 2.5 }, /conv_kernel.*integer/],
    [{ time_step_min: 0.5, time_step_max: 0.1 }, /time_step_min/],
  ];
  for (const [json, re] of bad) {
    assert.throws(() => config(json), (e: unknown) => e instanceof SeqlabError && re.test(e.message) && !e.message.includes("\n"), JSON.stringify(json));
  }
  const model = buildModel(new RawConfig("cfg", { model_type: "mamba", ...TINY }), ModuleContext.seeded(ref32, 1));
  assert.ok(model instanceof MambaForCausalLM);
  assert.equal(model.namedParameters().filter(([n]) => n === "lm_head.weight").length, 0, "tied lm_head is listed once, as the embeddings");
});
