/**
 * Mixture of experts: torch.topk's CPU tie-breaking, float64 gradient checks of the router,
 * the grouped expert path and the shared-expert gate, routing edge cases (idle experts, ties,
 * top-k = E, one token), the expert output against a dense per-token computation, the
 * load-balancing loss against a hand computation, and checkpoint name conversion.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as path from "node:path";
import * as ops from "../src/ops/index.js";
import { fromArray, toArraySync } from "../src/backend/alloc.js";
import { tidy } from "../src/tensor/scope.js";
import { noGrad, backward } from "../src/autograd/tape.js";
import { Rng } from "../src/util/rng.js";
import { torchTopkCpu } from "../src/backend/ref/torch_topk.js";
import { Experts, FusedGatedMLP, TopKRouter, sparseMoe, RouterLog, type MoeConfig } from "../src/nn/moe.js";
import { GatedMLP } from "../src/nn/mlp.js";
import { ModuleContext } from "../src/nn/module.js";
import { SafetensorsFile } from "../src/io/safetensors.js";
import {
  checkpointNames,
  safetensorsReader,
  GRANITE_MOE_NAMES,
  JAMBA_NAMES,
  QWEN2_MOE_NAMES,
  type TensorReader,
} from "../src/models/checkpoint_names.js";
import { SeqlabError } from "../src/util/errors.js";
import { gradcheck, randn, ref32, ref64, values, HF_FIXTURES, NEEDS_SHARED, maxAbsDiff } from "./helpers.js";

const TOL = 1e-6;
const rng = new Rng(17);

test("top-k picks what torch.topk picks on CPU, ties included", () => {
  // without ties: the k largest, largest first; NaN counts as largest
  assert.deepEqual(torchTopkCpu([0.1, 0.7, 0.3, 0.9], 2), [3, 1]);
  assert.deepEqual(torchTopkCpu([0.1, NaN, 0.3], 2), [1, 2]);
  // pytorch/pytorch#88184 (CPU): topk([-1, -1, -1, -1], 1) returns index 2
  assert.deepEqual(torchTopkCpu([-1, -1, -1, -1], 1), [2]);
  // pytorch/pytorch#133542 (CPU, torch 2.4): float32 values, k = 1 returns index 1
  const f32 = Array.from(Float32Array.from([-0.1944, -0.1944, -0.1945, -0.1945, -0.1945]));
  assert.deepEqual(torchTopkCpu(f32, 1), [1]);
  // a zero-initialised router: every probability equal
  assert.deepEqual(torchTopkCpu([0.25, 0.25, 0.25, 0.25], 2), [2, 3]);
  // both code paths (nth_element + sort, and partial_sort when k * 64 <= n) return a valid top-k
  for (const [n, k] of [
    [7, 3],
    [40, 17],
    [130, 2],
    [300, 4],
  ]) {
    const v = Array.from({ length: n }, () => rng.int(0, 5));
    const top = torchTopkCpu(v, k);
    assert.equal(new Set(top).size, k);
    for (let i = 1; i < k; i++) assert.ok(v[top[i - 1]] >= v[top[i]], `sorted, n=${n} k=${k}`);
    const rest = v.filter((_, i) => !top.includes(i));
    assert.ok(rest.every((x) => x <= v[top[k - 1]]), `the largest, n=${n} k=${k}`);
  }
});

test("router: softmax, top-k and (optional) renormalisation, gradients through weights and probs", () => {
  for (const normalize of [true, false]) {
    const logits = randn(ref64, [5, 4], rng, 1.5, true);
    const err = gradcheck(([l]) => {
      const r = ops.routeTopK(l, 2, normalize);
      return ops.concat([r.weights, r.probs]);
    }, [logits]);
    assert.ok(err < TOL, `normalize=${normalize}: ${err}`);
  }
  const r = noGrad(() => ops.routeTopK(fromArray(ref64, [0, 1, 2, 3, 3, 2, 1, 0], [2, 4]), 2, true));
  assert.deepEqual(Array.from(toArraySync(r.indices)), [3, 2, 0, 1]);
  const w = values(r.weights);
  assert.ok(Math.abs(w[0] + w[1] - 1) < 1e-12 && w[0] > w[1]);
});

test("router ties: a zero router sends every token to the experts torch picks, with equal weights", () => {
  const r = noGrad(() => ops.routeTopK(fromArray(ref64, new Float64Array(3 * 4), [3, 4]), 2, false));
  assert.deepEqual(Array.from(toArraySync(r.indices)), [2, 3, 2, 3, 2, 3]);
  assert.deepEqual(Array.from(values(r.weights)), new Array(6).fill(0.25));
});

/** out[n] = sum_s w[n, s] * down_e(silu(gate_e x) * up_e x), token by token, every expert dense. */
function denseReference(x: Float64Array, gu: Float64Array, down: Float64Array, idx: ArrayLike<number>, w: Float64Array, cfg: MoeConfig, N: number): Float64Array {
  const { C, F, k } = cfg;
  const out = new Float64Array(N * C);
  for (let n = 0; n < N; n++) {
    for (let s = 0; s < k; s++) {
      const e = idx[n * k + s];
      const h = new Float64Array(F);
      for (let f = 0; f < F; f++) {
        let g = 0;
        let u = 0;
        for (let c = 0; c < C; c++) {
          g += gu[(e * 2 * F + f) * C + c] * x[n * C + c];
          u += gu[(e * 2 * F + F + f) * C + c] * x[n * C + c];
        }
        h[f] = (g / (1 + Math.exp(-g))) * u;
      }
      for (let c = 0; c < C; c++) {
        let y = 0;
        for (let f = 0; f < F; f++) y += down[(e * C + c) * F + f] * h[f];
        out[n * C + c] += w[n * k + s] * y;
      }
    }
  }
  return out;
}

function moeSetup(cfg: MoeConfig, N: number, logits?: number[]) {
  const ctx = ModuleContext.seeded(ref64, 5);
  const router = new TopKRouter(ctx, cfg);
  const experts = new Experts(ctx, cfg);
  const x = randn(ref64, [N, cfg.C], rng, 1, true);
  const routing = () => (logits ? ops.routeTopK(fromArray(ref64, logits, [N, cfg.E]), cfg.k, cfg.normalize) : router.forward(x));
  return { router, experts, x, routing };
}

const baseCfg: MoeConfig = { C: 5, E: 4, F: 3, k: 2, normalize: true, act: "silu", initStd: 0.5 };

test("experts run on their tokens only and equal a dense per-token computation", () => {
  for (const cfg of [baseCfg, { ...baseCfg, k: 4, normalize: false }, { ...baseCfg, k: 1 }]) {
    const N = 6;
    const { experts, x, routing } = moeSetup(cfg, N);
    noGrad(() =>
      tidy(() => {
        const r = routing();
        const groups = ops.groupByExpert(r.indices, cfg.E);
        const offsets = Array.from(toArraySync(groups.offsets));
        assert.equal(offsets[cfg.E], N * cfg.k, "grouped rows are the N * k assignments, not N * E");
        const got = values(experts.forward(x, r));
        const want = denseReference(values(x), values(experts.gate_up_proj), values(experts.down_proj), toArraySync(r.indices), values(r.weights), cfg, N);
        assert.ok(maxAbsDiff(got, want) < 1e-12, `k=${cfg.k}`);
      }),
    );
  }
});

test("gradcheck: router + top-k + grouped experts, end to end (normalised and not, k = E, one token)", () => {
  for (const [cfg, N] of [
    [baseCfg, 4],
    [{ ...baseCfg, normalize: false }, 4],
    [{ ...baseCfg, E: 3, k: 3 }, 3],
    [baseCfg, 1],
  ] as [MoeConfig, number][]) {
    const { router, experts, x } = moeSetup(cfg, N);
    // gradcheck perturbs the parameters in place, so the closure only needs x
    const err = gradcheck(([x]) => experts.forward(x, router.forward(x)), [x, router.weight, experts.gate_up_proj, experts.down_proj]);
    assert.ok(err < TOL, `E=${cfg.E} k=${cfg.k} N=${N} normalize=${cfg.normalize}: ${err}`);
  }
});

test("experts that receive no token: zero gradient, and the others still check", () => {
  // logits route every token to experts 0 and 2; experts 1 and 3 stay idle
  const N = 3;
  const logits = [3, -2, 2, -3, 1, -4, 2, -5, 2, -3, 4, -1];
  const { experts, x, routing } = moeSetup(baseCfg, N, logits);
  const idx = noGrad(() => Array.from(toArraySync(routing().indices)));
  assert.ok(idx.every((e) => e === 0 || e === 2));
  const err = gradcheck(([x]) => experts.forward(x, routing()), [x, experts.gate_up_proj, experts.down_proj]);
  assert.ok(err < TOL, `${err}`);
  const gu = values(experts.gate_up_proj.grad!);
  const per = 2 * baseCfg.F * baseCfg.C;
  for (const e of [1, 3]) assert.ok(gu.subarray(e * per, (e + 1) * per).every((v) => v === 0), `expert ${e} idle`);
  assert.ok(gu.subarray(0, per).some((v) => v !== 0));
});

test("grouped pieces one by one: gather, grouped linear, combine, row scale (the shared-expert gate)", () => {
  const N = 5;
  const E = 3;
  const k = 2;
  const indices = fromArray(ref64, [0, 2, 2, 0, 1, 0, 2, 1, 0, 2], [N, k], "i32");
  const groups = ops.groupByExpert(indices, E);
  assert.deepEqual(Array.from(toArraySync(groups.offsets)), [0, 4, 6, 10]);
  const x = randn(ref64, [N, 4], rng, 1, true);
  const w = randn(ref64, [E, 3, 4], rng, 1, true);
  const rw = randn(ref64, [N, k], rng, 1, true);
  assert.ok(gradcheck(([x]) => ops.gatherToExperts(x, groups), [x]) < TOL);
  assert.ok(gradcheck(([x, w]) => ops.groupedLinear(ops.gatherToExperts(x, groups), w, groups), [x, w]) < TOL);
  const ys = randn(ref64, [N * k, 4], rng, 1, true);
  assert.ok(gradcheck(([ys, rw]) => ops.combineFromExperts(ys, rw, groups), [ys, rw]) < TOL);
  const s = randn(ref64, [N, 1], rng, 1, true);
  assert.ok(gradcheck(([x, s]) => ops.scaleRows(x, ops.sigmoid(s)), [x, s]) < TOL);
});

test("Granite's fused shared MLP equals the gated MLP with its projection split (gate rows first)", () => {
  const ctx = ModuleContext.seeded(ref64, 8);
  const fused = new FusedGatedMLP(ctx, 4, 3, "silu", 0.5);
  const plain = new GatedMLP(ctx, 4, 3, false, "silu", 0.5);
  const w = values(fused.input_linear.weight);
  (plain.gate_proj.weight.handle as Float64Array).set(w.subarray(0, 12));
  (plain.up_proj.weight.handle as Float64Array).set(w.subarray(12));
  (plain.down_proj.weight.handle as Float64Array).set(values(fused.output_linear.weight));
  const x = randn(ref64, [2, 4], rng, 1, true);
  noGrad(() => assert.ok(maxAbsDiff(values(fused.forward(x)), values(plain.forward(x))) < 1e-14));
  assert.ok(gradcheck(([x]) => fused.forward(x), [x, fused.input_linear.weight]) < TOL);
});

test("sparseMoe logs each layer's routing; load-balancing loss gradcheck", () => {
  const cfg = { ...baseCfg, C: 4 };
  const { router, experts } = moeSetup(cfg, 2);
  const log = new RouterLog();
  const x = randn(ref64, [2, 3, cfg.C], rng, 1);
  noGrad(() => sparseMoe(x, router, experts, log));
  assert.equal(log.routings.length, 1);
  assert.deepEqual(log.routings[0].probs.shape, [6, cfg.E]);
  const p1 = randn(ref64, [3, 4], rng, 1, true);
  const p2 = randn(ref64, [2, 4], rng, 1, true);
  const i1 = fromArray(ref64, [0, 1, 3, 1, 2, 0], [3, 2], "i32");
  const i2 = fromArray(ref64, [1, 3, 3, 0], [2, 2], "i32");
  assert.ok(gradcheck(([a, b]) => ops.loadBalancingLoss([a, b], [i1, i2]), [p1, p2]) < TOL);
});

test("load-balancing loss equals a hand computation (HF load_balancing_loss_func, layers stacked)", () => {
  const probs = [
    fromArray(ref64, Float64Array.from([0.5, 0.3, 0.2, 0.1, 0.6, 0.3]), [2, 3]),
    fromArray(ref64, Float64Array.from([0.2, 0.2, 0.6, 0.7, 0.2, 0.1]), [2, 3]),
  ];
  const indices = [fromArray(ref64, [0, 1, 1, 2], [2, 2], "i32"), fromArray(ref64, [2, 0, 0, 1], [2, 2], "i32")];
  // R = 4 rows, k = 2: counts (3, 3, 2) / 4, probability sums (1.5, 1.3, 1.2) / 4, times E = 3
  const hand = 3 * ((3 / 4) * (1.5 / 4) + (3 / 4) * (1.3 / 4) + (2 / 4) * (1.2 / 4));
  assert.ok(Math.abs(hand - 2.025) < 1e-12);
  const got = noGrad(() => values(ops.loadBalancingLoss(probs, indices))[0]);
  assert.ok(Math.abs(got - hand) < 1e-12, `${got} vs ${hand}`);
  // perfectly balanced uniform routing gives k (the loss's minimum for uniform probabilities)
  const uniform = fromArray(ref64, new Float64Array(4 * 4).fill(0.25), [4, 4]);
  const spread = fromArray(ref64, [0, 1, 2, 3, 0, 1, 2, 3], [4, 2], "i32");
  assert.ok(Math.abs(noGrad(() => values(ops.loadBalancingLoss([uniform], [spread]))[0]) - 2) < 1e-12);
});

test("float32 MoE block: backward leaves no tensors behind", () => {
  const cfg = { ...baseCfg, C: 6 };
  const ctx = ModuleContext.seeded(ref32, 3);
  const router = new TopKRouter(ctx, cfg);
  const experts = new Experts(ctx, cfg);
  const before = ref32.memory().bytesInUse;
  tidy(() => {
    const x = randn(ref32, [1, 4, cfg.C], rng, 1);
    const log = new RouterLog();
    const y = sparseMoe(x, router, experts, log);
    backward(y, fromArray(ref32, new Float32Array(y.size).fill(1), y.shape));
    backward(log.loadBalancingLoss()!);
  });
  for (const p of [router.weight, experts.gate_up_proj, experts.down_proj]) {
    assert.ok(p.grad);
    p.grad.dispose();
    p.grad = null;
  }
  assert.equal(ref32.memory().bytesInUse, before);
});

/** An in-memory TensorReader. */
function memoryReader(tensors: Record<string, [number[], number[]]>): TensorReader {
  return {
    path: "memory",
    names: () => Object.keys(tensors),
    has: (n) => n in tensors,
    shape: (n) => tensors[n][0],
    readF32: (n) => Float32Array.from(tensors[n][1]),
  };
}

test("checkpoint names: per-expert files stacked as HF converts them, and back", () => {
  const names = checkpointNames(QWEN2_MOE_NAMES);
  const p = "model.layers.3.mlp.experts";
  // 2 experts, F = 1, C = 2: gate rows then up rows per expert
  const file = memoryReader({
    [`${p}.0.gate_proj.weight`]: [[1, 2], [1, 2]],
    [`${p}.0.up_proj.weight`]: [[1, 2], [3, 4]],
    [`${p}.1.gate_proj.weight`]: [[1, 2], [5, 6]],
    [`${p}.1.up_proj.weight`]: [[1, 2], [7, 8]],
    [`${p}.0.down_proj.weight`]: [[2, 1], [9, 10]],
    [`${p}.1.down_proj.weight`]: [[2, 1], [11, 12]],
    "model.norm.weight": [[2], [13, 14]],
  });
  const r = names.fromCheckpoint(file);
  assert.deepEqual(r.shape(`${p}.gate_up_proj`), [2, 2, 2]);
  assert.deepEqual(Array.from(r.readF32(`${p}.gate_up_proj`)), [1, 2, 3, 4, 5, 6, 7, 8]);
  assert.deepEqual(r.shape(`${p}.down_proj`), [2, 2, 1]);
  assert.deepEqual(Array.from(r.readF32(`${p}.down_proj`)), [9, 10, 11, 12]);
  assert.deepEqual(Array.from(r.readF32("model.norm.weight")), [13, 14]);
  assert.deepEqual(r.names().sort(), [`${p}.down_proj`, `${p}.gate_up_proj`, "model.norm.weight"]);
  const back = names.toCheckpoint(`${p}.gate_up_proj`, [2, 2, 2], r.readF32(`${p}.gate_up_proj`));
  assert.deepEqual(
    back.map((t) => [t.name, Array.from(t.data)]),
    [
      [`${p}.0.gate_proj.weight`, [1, 2]],
      [`${p}.0.up_proj.weight`, [3, 4]],
      [`${p}.1.gate_proj.weight`, [5, 6]],
      [`${p}.1.up_proj.weight`, [7, 8]],
    ],
  );
  // an expert whose tensor has another width is reported by name
  const bad = names.fromCheckpoint(memoryReader({ [`${p}.0.down_proj.weight`]: [[2, 1], [1, 2]], [`${p}.1.down_proj.weight`]: [[1, 2], [1, 2]] }));
  assert.throws(() => bad.readF32(`${p}.down_proj`), (e) => e instanceof SeqlabError && /\.1\.down_proj\.weight/.test(e.message));
});

test("checkpoint names: Jamba and Granite fixture files give every runtime expert tensor", { skip: NEEDS_SHARED }, () => {
  for (const [arch, rules] of [
    ["jamba", JAMBA_NAMES],
    ["granitemoehybrid", GRANITE_MOE_NAMES],
  ] as const) {
    const st = SafetensorsFile.open(path.join(HF_FIXTURES, arch, "model.safetensors"));
    const ref = SafetensorsFile.open(path.join(HF_FIXTURES, arch, "reference.safetensors"));
    const r = checkpointNames([...rules]).fromCheckpoint(safetensorsReader(st));
    const wanted = ref.names().filter((n) => n.startsWith("grad.")).map((n) => n.slice(5));
    for (const n of wanted) {
      assert.ok(r.has(n), `${arch}: ${n}`);
      assert.deepEqual(r.shape(n), ref.info("grad." + n).shape, `${arch}: ${n}`);
    }
    const expertName = wanted.find((n) => n.endsWith("experts.gate_up_proj"))!;
    const back = checkpointNames([...rules]).toCheckpoint(expertName, r.shape(expertName), r.readF32(expertName));
    for (const t of back) assert.ok(maxAbsDiff(t.data, st.readF32(t.name)) === 0, t.name);
    st.close();
    ref.close();
  }
});
