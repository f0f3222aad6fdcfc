/**
 * WGSL mixture-of-experts kernels (semantics of backend/ref/moe.ts).
 *
 * Router: one thread per token: the softmax, then torch's CPU top-k order (moe_topk.ts) on the
 * stored probabilities. Grouping is a stable counting sort without atomics: counts per (block of
 * 256 assignments, expert), one workgroup turning them into offsets and per-block bases, then
 * each assignment's row = its block's base + the earlier assignments of its block to its expert.
 * Grouped matmuls find a row's expert by binary search in the offsets; weight gradients are one
 * thread per weight summing its expert's rows in order. Everything is deterministic.
 */
import type { MoeKernels } from "../kernels_moe.js";
import type { GpuContext } from "./context.js";
import { grid1d } from "./context.js";
import { LINEAR_INDEX, MATH } from "./wgsl.js";
import { flags, launch, segmentSum, Temps, type S } from "./kit.js";
import { TORCH_TOPK } from "./moe_topk.js";

const WG = 256;
/** assignments per block of the counting sort */
const BLOCK = 256;

/** A one-thread-per-index kernel over `n` (uniform u.n) with the given statement. */
function map(ctx: GpuContext, key: string, bindings: [string, "read" | "write", string][], uniforms: [string, "u32" | "f32"][], stmt: string, bufs: (S | GPUBuffer)[], values: number[], n: number, lib = ""): void {
  if (n === 0) return;
  launch(
    ctx,
    key,
    () => ({
      label: key,
      uniforms: [["n", "u32"], ...uniforms],
      bindings,
      body: `${LINEAR_INDEX(WG)}${lib}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = linearIndex(gid, nwg);
  if (i >= u.n) { return; }
  ${stmt}
}`,
    }),
    bufs,
    [n, ...values],
    grid1d(n, WG),
  );
}

/** expertOf(r): the expert whose rows [offsets[e], offsets[e + 1]) hold r (binary search). */
const EXPERT_OF = /* wgsl */ `
fn expertOf(r: i32) -> u32 {
  var lo = 0u;
  var hi = u.E;
  while (hi - lo > 1u) {
    let mid = (lo + hi) / 2u;
    if (offsets[mid] <= r) { lo = mid; } else { hi = mid; }
  }
  return lo;
}
`;

export function moeKernels(ctx: GpuContext): MoeKernels<S> {
  return {
    moeRouterForward(weights, indices, probs, logits, N, E, k, normalize) {
      const temps = new Temps(ctx);
      const sv = temps.get(N * E);
      const si = temps.get(N * E);
      map(
        ctx,
        "moe:router",
        [["weights", "write", "array<f32>"], ["indices", "write", "array<i32>"], ["probs", "write", "array<f32>"], ["sv", "write", "array<f32>"], ["si", "write", "array<u32>"], ["logits", "read", "array<f32>"]],
        [["E", "u32"], ["k", "u32"], ["normalize", "u32"]],
        `let E = u.E;
  let base = i * E;
  var mx = logits[base];
  for (var e = 1u; e < E; e++) { mx = max(mx, logits[base + e]); }
  var z = 0.0;
  for (var e = 0u; e < E; e++) { z += exp_(logits[base + e] - mx); }
  for (var e = 0u; e < E; e++) {
    let p = exp_(logits[base + e] - mx) / z;
    probs[base + e] = p;
    sv[base + e] = p;
    si[base + e] = e;
  }
  row0 = base;
  torchTopk(i32(E), i32(u.k));
  var sum = 0.0;
  for (var s = 0u; s < u.k; s++) { sum += sv[base + s]; }
  for (var s = 0u; s < u.k; s++) {
    indices[i * u.k + s] = i32(si[base + s]);
    weights[i * u.k + s] = select(sv[base + s], sv[base + s] / sum, u.normalize != 0u);
  }`,
        [weights, indices, probs, sv, si, logits],
        [E, k, normalize ? 1 : 0],
        N,
        MATH + TORCH_TOPK,
      );
      temps.release();
    },

    moeRouterBackward(dlogits, dweights, dprobs, probs, indices, N, E, k, normalize) {
      const temps = new Temps(ctx);
      const f = flags({ HAS_DW: !!dweights, HAS_DP: !!dprobs });
      map(
        ctx,
        `moe:routerBwd:${f.key}`,
        [["dlogits", "write", "array<f32>"], ["dweights", "read", "array<f32>"], ["dprobs", "read", "array<f32>"], ["probs", "read", "array<f32>"], ["indices", "read", "array<i32>"]],
        [["E", "u32"], ["k", "u32"], ["normalize", "u32"]],
        `let E = u.E;
  let base = i * E;
  var Z = 0.0;
  var dot = 0.0;
  if (HAS_DW) {
    for (var s = 0u; s < u.k; s++) {
      let p = probs[base + u32(indices[i * u.k + s])];
      Z += p;
      dot += dweights[i * u.k + s] * p;
    }
  }
  // dp_e = dprobs_e + the routing weights' share; pdp = sum_e p_e dp_e
  var pdp = 0.0;
  for (var e = 0u; e < E; e++) { pdp += probs[base + e] * dpOf(i, e, Z, dot); }
  for (var e = 0u; e < E; e++) { dlogits[base + e] = probs[base + e] * (dpOf(i, e, Z, dot) - pdp); }`,
        [dlogits, temps.or(dweights), temps.or(dprobs), probs, indices],
        [E, k, normalize ? 1 : 0],
        N,
        `${f.wgsl}
fn dpOf(n: u32, e: u32, Z: f32, dot: f32) -> f32 {
  var dp = 0.0;
  if (HAS_DP) { dp = dprobs[n * u.E + e]; }
  if (HAS_DW) {
    for (var s = 0u; s < u.k; s++) {
      if (u32(indices[n * u.k + s]) == e) {
        let w = dweights[n * u.k + s];
        dp += select(w, w / Z - dot / (Z * Z), u.normalize != 0u);
      }
    }
  }
  return dp;
}
`,
      );
      temps.release();
    },

    moeGroup(pos, offsets, indices, N, E, k) {
      const temps = new Temps(ctx);
      const A = N * k;
      const blocks = Math.max(1, Math.ceil(A / BLOCK));
      const counts = temps.get(blocks * E);
      const uni: [string, "u32"][] = [["A", "u32"], ["E", "u32"], ["blocks", "u32"]];
      // counts[blk, e]: assignments of block blk routed to e
      map(
        ctx,
        "moe:count",
        [["counts", "write", "array<u32>"], ["indices", "read", "array<i32>"]],
        uni,
        `let blk = i / u.E;
  let e = i32(i % u.E);
  var c = 0u;
  for (var a = blk * ${BLOCK}u; a < min(u.A, (blk + 1u) * ${BLOCK}u); a++) { if (indices[a] == e) { c++; } }
  counts[i] = c;`,
        [counts, indices],
        [A, E, blocks],
        blocks * E,
      );
      // offsets, and counts[blk, e] turned into the first row of block blk's assignments to e
      launch(
        ctx,
        "moe:offsets",
        () => ({
          label: "moe:offsets",
          uniforms: uni,
          bindings: [["offsets", "write", "array<i32>"], ["counts", "write", "array<u32>"]],
          body: `
@compute @workgroup_size(${WG})
fn main(@builtin(local_invocation_index) lid: u32) {
  if (lid == 0u) {
    var run = 0u;
    offsets[0] = 0;
    for (var e = 0u; e < u.E; e++) {
      for (var blk = 0u; blk < u.blocks; blk++) { run += counts[blk * u.E + e]; }
      offsets[e + 1u] = i32(run);
    }
  }
  storageBarrier();
  workgroupBarrier();
  for (var e = lid; e < u.E; e += ${WG}u) {
    var base = u32(offsets[e]);
    for (var blk = 0u; blk < u.blocks; blk++) {
      let c = counts[blk * u.E + e];
      counts[blk * u.E + e] = base;
      base += c;
    }
  }
}`,
        }),
        [offsets, counts],
        [A, E, blocks],
        [1],
      );
      map(
        ctx,
        "moe:pos",
        [["pos", "write", "array<i32>"], ["counts", "read", "array<u32>"], ["indices", "read", "array<i32>"]],
        uni,
        `let blk = i / ${BLOCK}u;
  let e = indices[i];
  var r = counts[blk * u.E + u32(e)];
  for (var a = blk * ${BLOCK}u; a < i; a++) { if (indices[a] == e) { r++; } }
  pos[i] = i32(r);`,
        [pos, counts, indices],
        [A, E, blocks],
        A,
      );
      temps.release();
    },

    moeGatherForward(xs, x, pos, N, k, C) {
      map(
        ctx,
        "moe:gather",
        [["xs", "write", "array<f32>"], ["x", "read", "array<f32>"], ["pos", "read", "array<i32>"]],
        [["k", "u32"], ["C", "u32"]],
        `let a = i / u.C;
  let c = i % u.C;
  xs[u32(pos[a]) * u.C + c] = x[(a / u.k) * u.C + c];`,
        [xs, x, pos],
        [k, C],
        N * k * C,
      );
    },

    moeGatherBackward(dx, dxs, pos, N, k, C) {
      map(
        ctx,
        "moe:gatherBwd",
        [["dx", "write", "array<f32>"], ["dxs", "read", "array<f32>"], ["pos", "read", "array<i32>"]],
        [["k", "u32"], ["C", "u32"]],
        `let n = i / u.C;
  let c = i % u.C;
  var s = 0.0;
  for (var j = 0u; j < u.k; j++) { s += dxs[u32(pos[n * u.k + j]) * u.C + c]; }
  dx[i] = s;`,
        [dx, dxs, pos],
        [k, C],
        N * C,
      );
    },

    moeGroupedMatmulForward(out, x, w, offsets, d) {
      map(
        ctx,
        "moe:gmm",
        [["out", "write", "array<f32>"], ["x", "read", "array<f32>"], ["w", "read", "array<f32>"], ["offsets", "read", "array<i32>"]],
        [["E", "u32"], ["N", "u32"], ["K", "u32"]],
        `let r = i / u.N;
  let j = i % u.N;
  let e = expertOf(i32(r));
  var s = 0.0;
  for (var q = 0u; q < u.K; q++) { s += x[r * u.K + q] * w[(e * u.N + j) * u.K + q]; }
  out[i] = s;`,
        [out, x, w, offsets],
        [d.E, d.N, d.K],
        d.M * d.N,
        EXPERT_OF,
      );
    },

    moeGroupedMatmulBackward(dx, dw, dy, x, w, offsets, d) {
      if (dx) {
        map(
          ctx,
          "moe:gmmDx",
          [["dx", "write", "array<f32>"], ["dy", "read", "array<f32>"], ["w", "read", "array<f32>"], ["offsets", "read", "array<i32>"]],
          [["E", "u32"], ["N", "u32"], ["K", "u32"]],
          `let r = i / u.K;
  let q = i % u.K;
  let e = expertOf(i32(r));
  var s = 0.0;
  for (var j = 0u; j < u.N; j++) { s += dy[r * u.N + j] * w[(e * u.N + j) * u.K + q]; }
  dx[i] = s;`,
          [dx, dy, w, offsets],
          [d.E, d.N, d.K],
          d.M * d.K,
          EXPERT_OF,
        );
      }
      if (dw) {
        map(
          ctx,
          "moe:gmmDw",
          [["dw", "write", "array<f32>"], ["dy", "read", "array<f32>"], ["x", "read", "array<f32>"], ["offsets", "read", "array<i32>"]],
          [["E", "u32"], ["N", "u32"], ["K", "u32"]],
          `let q = i % u.K;
  let j = (i / u.K) % u.N;
  let e = i / (u.K * u.N);
  var s = 0.0;
  for (var r = u32(offsets[e]); r < u32(offsets[e + 1u]); r++) { s += dy[r * u.N + j] * x[r * u.K + q]; }
  dw[i] = s;`,
          [dw, dy, x, offsets],
          [d.E, d.N, d.K],
          d.E * d.N * d.K,
        );
      }
    },

    moeCombineForward(out, ys, weights, pos, N, k, C) {
      map(
        ctx,
        "moe:combine",
        [["out", "write", "array<f32>"], ["ys", "read", "array<f32>"], ["weights", "read", "array<f32>"], ["pos", "read", "array<i32>"]],
        [["k", "u32"], ["C", "u32"]],
        `let n = i / u.C;
  let c = i % u.C;
  var s = 0.0;
  for (var j = 0u; j < u.k; j++) { s += weights[n * u.k + j] * ys[u32(pos[n * u.k + j]) * u.C + c]; }
  out[i] = s;`,
        [out, ys, weights, pos],
        [k, C],
        N * C,
      );
    },

    moeCombineBackward(dys, dweights, dout, ys, weights, pos, N, k, C) {
      if (dys) {
        map(
          ctx,
          "moe:combineDys",
          [["dys", "write", "array<f32>"], ["dout", "read", "array<f32>"], ["weights", "read", "array<f32>"], ["pos", "read", "array<i32>"]],
          [["k", "u32"], ["C", "u32"]],
          `let a = i / u.C;
  let c = i % u.C;
  dys[u32(pos[a]) * u.C + c] = weights[a] * dout[(a / u.k) * u.C + c];`,
          [dys, dout, weights, pos],
          [k, C],
          N * k * C,
        );
      }
      if (dweights) {
        map(
          ctx,
          "moe:combineDw",
          [["dweights", "write", "array<f32>"], ["dout", "read", "array<f32>"], ["ys", "read", "array<f32>"], ["pos", "read", "array<i32>"]],
          [["k", "u32"], ["C", "u32"]],
          `let row = u32(pos[i]) * u.C;
  let n = i / u.k;
  var s = 0.0;
  for (var c = 0u; c < u.C; c++) { s += dout[n * u.C + c] * ys[row + c]; }
  dweights[i] = s;`,
          [dweights, dout, ys, pos],
          [k, C],
          N * k,
        );
      }
    },

    rowScaleForward(out, x, s, rows, C) {
      map(
        ctx,
        "moe:rowScale",
        [["out", "write", "array<f32>"], ["x", "read", "array<f32>"], ["s", "read", "array<f32>"]],
        [["C", "u32"]],
        `out[i] = s[i / u.C] * x[i];`,
        [out, x, s],
        [C],
        rows * C,
      );
    },

    rowScaleBackward(dx, ds, dy, x, s, rows, C) {
      if (dx) {
        map(ctx, "moe:rowScaleDx", [["dx", "write", "array<f32>"], ["dy", "read", "array<f32>"], ["s", "read", "array<f32>"]], [["C", "u32"]], `dx[i] = s[i / u.C] * dy[i];`, [dx, dy, s], [C], rows * C);
      }
      if (ds) {
        map(
          ctx,
          "moe:rowScaleDs",
          [["ds", "write", "array<f32>"], ["dy", "read", "array<f32>"], ["x", "read", "array<f32>"]],
          [["C", "u32"]],
          `var t = 0.0;
  for (var c = 0u; c < u.C; c++) { t += dy[i * u.C + c] * x[i * u.C + c]; }
  ds[i] = t;`,
          [ds, dy, x],
          [C],
          rows,
        );
      }
    },

    moeLoadBalancingForward(loss, probs, indices, R, E, k) {
      launch(
        ctx,
        "moe:lb",
        () => ({
          label: "moe:lb",
          uniforms: [["R", "u32"], ["E", "u32"], ["k", "u32"]],
          bindings: [["loss", "write", "array<f32>"], ["probs", "read", "array<f32>"], ["indices", "read", "array<i32>"]],
          body: `${segmentSum("wsum", WG, "f32")}
@compute @workgroup_size(${WG})
fn main(@builtin(local_invocation_index) lid: u32) {
  let Rf = f32(u.R);
  var total = 0.0;
  for (var e = lid; e < u.E; e += ${WG}u) {
    var count = 0.0;
    for (var a = 0u; a < u.R * u.k; a++) { if (u32(indices[a]) == e) { count += 1.0; } }
    var p = 0.0;
    for (var r = 0u; r < u.R; r++) { p += probs[r * u.E + e]; }
    total += (count / Rf) * (p / Rf);
  }
  let t = wsum(total, lid, ${WG}u);
  if (lid == 0u) { loss[0] = f32(u.E) * t; }
}`,
        }),
        [loss, probs, indices],
        [R, E, k],
        [1],
      );
    },

    moeLoadBalancingBackward(dprobs, dloss, indices, R, E, k) {
      const temps = new Temps(ctx);
      const counts = temps.get(E);
      map(
        ctx,
        "moe:lbCount",
        [["counts", "write", "array<f32>"], ["indices", "read", "array<i32>"]],
        [["A", "u32"]],
        `var c = 0.0;
  for (var a = 0u; a < u.A; a++) { if (u32(indices[a]) == i) { c += 1.0; } }
  counts[i] = c;`,
        [counts, indices],
        [R * k],
        E,
      );
      map(
        ctx,
        "moe:lbBwd",
        [["dprobs", "write", "array<f32>"], ["dloss", "read", "array<f32>"], ["counts", "read", "array<f32>"]],
        [["R", "u32"], ["E", "u32"]],
        `let Rf = f32(u.R);
  dprobs[i] = dloss[0] * f32(u.E) * counts[i % u.E] / (Rf * Rf);`,
        [dprobs, dloss, counts],
        [R, E],
        R * E,
      );
      temps.release();
    },
  };
}
