/**
 * Mamba-2: HF parity on every fixture, decoding through the fixed-size state, prefill from a
 * state, chunk-size invariance of the whole model (chunk 1 is the sequential recurrence),
 * constant state size, linear inference memory, module gradchecks and config errors.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { RawConfig } from "../src/io/config.js";
import { ModuleContext } from "../src/nn/module.js";
import { Mamba2Mixer, MambaRMSNormGated, type Mamba2MixerConfig } from "../src/nn/mamba2.js";
import { Mamba2ForCausalLM, parseMamba2Config } from "../src/models/mamba2.js";
import type { Mamba2State } from "../src/nn/state.js";
import * as ops from "../src/ops/index.js";
import { noGrad } from "../src/autograd/tape.js";
import { toArraySync } from "../src/backend/alloc.js";
import { tidy } from "../src/tensor/scope.js";
import { SeqlabError } from "../src/util/errors.js";
import { Rng } from "../src/util/rng.js";
import { fixtureDirs, gradcheck, randn, ref32, ref64, relErr } from "./helpers.js";
import { decodeErrors, fixtureFailures, peakBytesPerToken, randomIds, stateAfter } from "./ssm_helpers.js";

function config(json: Record<string, unknown>) {
  return parseMamba2Config(new RawConfig("test mamba2 config", { model_type: "mamba2", ...json }));
}

const TINY = { vocab_size: 16, hidden_size: 8, state_size: 4, num_hidden_layers: 1, expand: 2, num_heads: 4, head_dim: 4, n_groups: 1, chunk_size: 64 };

test("every Mamba-2 fixture passes verify's checks (logits, hidden states, loss, gradients, generation)", async () => {
  const dirs = fixtureDirs("mamba2");
  assert.ok(dirs.length > 0, "no Mamba-2 fixtures found");
  for (const dir of dirs) assert.deepEqual(await fixtureFailures(dir), [], dir);
});

const SHAPES = [
  { vocab_size: 29, hidden_size: 12, state_size: 6, num_hidden_layers: 2, expand: 2, num_heads: 6, head_dim: 4, n_groups: 3, chunk_size: 5, conv_kernel: 3, use_bias: true },
  { vocab_size: 19, hidden_size: 16, state_size: 5, num_hidden_layers: 1, expand: 1, num_heads: 2, head_dim: 8, n_groups: 2, chunk_size: 4, time_step_limit: [0.05, 0.3], tie_word_embeddings: true },
  { vocab_size: 23, hidden_size: 8, state_size: 3, num_hidden_layers: 3, expand: 3, num_heads: 3, head_dim: 8, n_groups: 1, chunk_size: 16, conv_kernel: 2, use_conv_bias: false },
];

test("seeded models of other shapes: one-token decoding and prefill from a state reproduce the full forward", () => {
  SHAPES.forEach((shape, i) => {
    const model = new Mamba2ForCausalLM(ModuleContext.seeded(ref32, 200 + i), config(shape));
    const { step, resume } = decodeErrors(model, 2, 13, 6, i);
    assert.ok(step < 1e-5, `shape ${i}: step-by-step logits differ by ${step}`);
    assert.ok(resume < 1e-5, `shape ${i}: prefill-from-state logits differ by ${resume}`);
  });
});

test("the whole model gives the same logits for every chunk size (chunk 1 is the sequential recurrence)", () => {
  const T = 23;
  const ids = randomIds(29, 2 * T, 9);
  const logits = [1, 4, 7, 23, 64].map((chunk) =>
    noGrad(() => {
      const model = new Mamba2ForCausalLM(ModuleContext.seeded(ref64, 300), config({ ...SHAPES[0], chunk_size: chunk }));
      return tidy(() => Float64Array.from(toArraySync(model.forward(model.tokens(ids, 2, T)).logits)));
    }),
  );
  for (const l of logits.slice(1)) assert.ok(relErr(l, logits[0]) < 1e-12, `chunked vs sequential: ${relErr(l, logits[0])}`);
});

test("the recurrent state has the same size after 10 and after 10,000 tokens, and nothing leaks", () => {
  const model = new Mamba2ForCausalLM(ModuleContext.seeded(ref32, 3), config(TINY));
  const short = stateAfter(model, 10);
  const long = stateAfter(model, 10_000);
  assert.ok(short.stateBytes > 0);
  assert.equal(long.stateBytes, short.stateBytes);
  assert.equal(long.liveBytes, short.liveBytes);
});

test("inference peak memory per token is constant from T = 1k to 16k", () => {
  const model = new Mamba2ForCausalLM(ModuleContext.seeded(ref32, 4), config(TINY));
  const perToken = [1024, 4096, 16384].map((T) => peakBytesPerToken(model, T));
  const ratio = Math.max(...perToken) / Math.min(...perToken);
  assert.ok(ratio < 1.05, `peak bytes per token ${perToken.map((b) => b.toFixed(0)).join(", ")} vary by ${ratio}`);
});

function mixerConfig(over: Partial<Mamba2MixerConfig> = {}): Mamba2MixerConfig {
  return {
    C: 4,
    D: 8,
    H: 4,
    P: 2,
    N: 3,
    G: 2,
    W: 3,
    chunk: 3,
    dtLimit: [0, Infinity],
    useBias: true,
    useConvBias: true,
    act: "silu",
    eps: 1e-5,
    normGroupSize: 8,
    initStd: 0.5,
    dtInit: { min: 0.05, max: 0.5, floor: 1e-4, scale: 1, scheme: "random" },
    ...over,
  };
}

test("Mamba2Mixer gradcheck (float64): groups, partial last chunk, dt clamp, from an initial state", () => {
  const rng = new Rng(31);
  const x = randn(ref64, [2, 7, 4], rng, 1, true);
  for (const [i, over] of [{}, { dtLimit: [0.02, 0.4] as const, useBias: false, useConvBias: false }].entries()) {
    const mixer = new Mamba2Mixer(ModuleContext.seeded(ref64, 40 + i), mixerConfig(over));
    const s0: Mamba2State = { kind: "mamba2", conv: randn(ref64, [2, 2, mixer.convDim], rng), ssm: randn(ref64, [2, 4, 2, 3], rng) };
    for (const withState of [false, true]) {
      const err = gradcheck(() => {
        const state = withState ? { kind: "mamba2" as const, conv: ops.copy(s0.conv), ssm: ops.copy(s0.ssm) } : undefined;
        return mixer.forward(x, state);
      }, [x, ...mixer.parameters()]);
      assert.ok(err < 1e-6, `config ${i} state=${withState}: ${err}`);
    }
  }
});

test("gated RMSNorm: HF's whole-width form, and the per-group form (mamba_ssm group_size) gradcheck", () => {
  const rng = new Rng(32);
  const y = randn(ref64, [3, 8], rng, 1, true);
  const z = randn(ref64, [3, 8], rng, 1, true);
  for (const group of [8, 4, 2]) {
    const norm = new MambaRMSNormGated(ModuleContext.seeded(ref64, group), 8, 1e-5, group);
    (norm.weight.handle as Float64Array).forEach((_, i, a) => (a[i] = 1 + 0.1 * i));
    assert.ok(gradcheck(([y, z]) => norm.forward(y, z), [y, z, norm.weight]) < 1e-6, `group ${group}`);
  }
  // whole-width form equals w * rmsnorm(y * silu(z)) computed by hand
  const norm = new MambaRMSNormGated(ModuleContext.seeded(ref64, 1), 8, 1e-5);
  const got = noGrad(() => toArraySync(norm.forward(y, z)));
  const yv = toArraySync(y);
  const zv = toArraySync(z);
  for (let r = 0; r < 3; r++) {
    const g = Array.from({ length: 8 }, (_, c) => yv[r * 8 + c] * (zv[r * 8 + c] / (1 + Math.exp(-zv[r * 8 + c]))));
    const rstd = 1 / Math.sqrt(g.reduce((s, v) => s + v * v, 0) / 8 + 1e-5);
    for (let c = 0; c < 8; c++) assert.ok(Math.abs(got[r * 8 + c] - g[c] * rstd) < 1e-12);
  }
});

test("Mamba-2 config: HF defaults, encoded infinities, and one-line errors for invalid values", () => {
  const c = config({ hidden_size: 64, num_heads: 8, head_dim: 16, time_step_limit: [0.0, { __float__: "Infinity" }] });
  assert.deepEqual(c.mixer.dtLimit, [0, Infinity]);
  assert.equal(c.mixer.D, 128);
  assert.equal(c.mixer.G, 8);
  assert.equal(c.mixer.chunk, 256);
  assert.equal(c.tieWordEmbeddings, false);
  const base = { hidden_size: 16, num_heads: 4, head_dim: 8, n_groups: 2 };
  const bad: [Record<string, unknown>, RegExp][] = [
    [{ ...base, head_dim: 6 }, /must equal num_heads \* head_dim/],
    [{ ...base, n_groups: 3 }, /n_groups 3 must divide num_heads 4/],
    [{ ...base, time_step_limit: [0.5, 0.1] }, /time_step_limit/],
    [{ ...base, time_step_limit: [0.1] }, /time_step_limit/],
    [{ ...base, time_step_limit: "wide" }, /time_step_limit.*list of numbers/],
    [{ ...base, chunk_size: 0 }, /chunk_size.*at least 1/],
  ];
  for (const [json, re] of bad) {
    assert.throws(() => config(json), (e: unknown) => e instanceof SeqlabError && re.test(e.message) && !e.message.includes("\n"), JSON.stringify(json));
  }
});
