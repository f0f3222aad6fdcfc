/**
 * WGSL embeddings, RMSNorm, LayerNorm and rotary embedding (semantics of backend/ref/norm.ts).
 *
 * Norms: one workgroup per row with a tree reduction in workgroup memory. The weight gradients
 * are sums over rows, computed without atomics by a second kernel: one thread per column sums a
 * chunk of rows, and the per-chunk partials are summed by columnSum.
 *
 * Embedding backward (dtable[ids[i]] += dout[i]) has no float atomics to lean on in WGSL, and
 * must be deterministic anyway: a first kernel links each token to the next token with the same
 * id (and marks the first of each id); a second, one thread per (first token, column), walks its
 * chain in token order and adds the sum to the table row.
 */
import type { CoreKernels, RopeDims } from "../kernels.js";
import { embeddingHalf } from "./matmul_half.js";
import type { GpuContext, KernelDef } from "./context.js";
import { grid1d } from "./context.js";
import { columnSum, COLSUM_CHUNK } from "./elementwise.js";
import type { GpuTensorBuffer } from "./pool.js";
import { LINEAR_INDEX, SINCOS } from "./wgsl.js";

type S = GpuTensorBuffer;
const WG = 256;
/** threads per row in the norm kernels */
const ROW_WG = 128;

/** Workgroup tree sums over ROW_WG threads (scalar and vec2). */
const REDUCE = /* wgsl */ `
var<workgroup> red: array<vec2<f32>, ${ROW_WG}>;
fn reduce2(v: vec2<f32>, lid: u32) -> vec2<f32> {
  red[lid] = v;
  workgroupBarrier();
  for (var s = ${ROW_WG / 2}u; s > 0u; s = s >> 1u) {
    if (lid < s) { red[lid] = red[lid] + red[lid + s]; }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}
fn reduce1(v: f32, lid: u32) -> f32 { return reduce2(vec2<f32>(v, 0.0), lid).x; }
`;

/** A kernel with one workgroup per row (2-D grid past 65535 rows); `body` sees row, lid, C. */
function rowKernel(label: string, bindings: KernelDef["bindings"], uniforms: KernelDef["uniforms"], body: string): KernelDef {
  return {
    label,
    uniforms: [["rows", "u32"], ["C", "u32"], ...uniforms],
    bindings,
    body: `${REDUCE}
@compute @workgroup_size(${ROW_WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row = wid.y * nwg.x + wid.x;
  if (row >= u.rows) { return; }
  let C = u.C;
  let base = row * C;
  ${body}
}`,
  };
}

/**
 * out[c] (+)= sum over rows r of `term` (an expression in r and c), by chunks of rows and
 * columnSum over the chunk partials.
 */
function rowSumKernel(label: string, bindings: KernelDef["bindings"], term: string): KernelDef {
  return {
    label,
    uniforms: [["rows", "u32"], ["C", "u32"], ["accumulate", "u32"]],
    bindings: [["out", "write", "array<f32>"], ...bindings],
    body: `
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let c = gid.x;
  let C = u.C;
  if (c >= C) { return; }
  let r0 = gid.y * ${COLSUM_CHUNK}u;
  let r1 = min(u.rows, r0 + ${COLSUM_CHUNK}u);
  var s = 0.0;
  for (var r = r0; r < r1; r++) { s += ${term}; }
  let o = gid.y * C + c;
  if (u.accumulate != 0u) { s += out[o]; }
  out[o] = s;
}`,
  };
}

export function normKernels(
  ctx: GpuContext,
): Pick<
  CoreKernels<S>,
  "embeddingForward" | "embeddingBackward" | "rmsnormForward" | "rmsnormBackward" | "layernormForward" | "layernormBackward" | "ropeForward"
> {
  const rowGrid = (rows: number) => grid1d(rows, 1);

  /** Run a rowSumKernel into `out` with accumulation (through partials when rows span chunks). */
  const sumOverRows = (key: string, make: () => KernelDef, out: S, inputs: S[], rows: number, C: number) => {
    const p = ctx.pipeline(key, make);
    const chunks = Math.ceil(rows / COLSUM_CHUNK);
    const gx = Math.ceil(C / 64);
    if (chunks <= 1) {
      ctx.dispatch(p, [out, ...inputs], [rows, C, 1], [gx, 1]);
      return;
    }
    const partial = ctx.pool.acquire(chunks * C * 4);
    ctx.dispatch(p, [partial, ...inputs], [rows, C, 0], [gx, chunks]);
    columnSum(ctx, out, partial, chunks, C, true);
    ctx.pool.release(partial);
  };

  return {
    embeddingForward(out, ids, table, n, C, tableDtype?: string) {
      if (tableDtype === "f16" || tableDtype === "bf16") return embeddingHalf(ctx, out, ids, table, n, C, tableDtype);
      if (n * C === 0) return;
      const p = ctx.pipeline("embedding", () => ({
        label: "embedding",
        uniforms: [["n", "u32"], ["C", "u32"]],
        bindings: [["out", "write", "array<f32>"], ["ids", "read", "array<i32>"], ["table", "read", "array<f32>"]],
        body: `${LINEAR_INDEX(WG)}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = linearIndex(gid, nwg);
  if (i >= u.n * u.C) { return; }
  let t = i / u.C;
  out[i] = table[u32(ids[t]) * u.C + (i - t * u.C)];
}`,
      }));
      ctx.dispatch(p, [out, ids, table], [n, C], grid1d(n * C, WG));
    },

    embeddingBackward(dtable, dout, ids, n, C) {
      if (n * C === 0) return;
      const links = ctx.pool.acquire(n * 4);
      const pl = ctx.pipeline("embeddingLinks", () => ({
        label: "embeddingLinks",
        uniforms: [["n", "u32"]],
        bindings: [["links", "write", "array<u32>"], ["ids", "read", "array<i32>"]],
        body: `${LINEAR_INDEX(WG)}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = linearIndex(gid, nwg);
  if (i >= u.n) { return; }
  let id = ids[i];
  var first = true;
  for (var j = 0u; j < i; j++) { if (ids[j] == id) { first = false; break; } }
  var next = u.n;
  for (var j = i + 1u; j < u.n; j++) { if (ids[j] == id) { next = j; break; } }
  links[i] = next | select(0u, 0x80000000u, first);
}`,
      }));
      ctx.dispatch(pl, [links, ids], [n], grid1d(n, WG));
      const pa = ctx.pipeline("embeddingAccumulate", () => ({
        label: "embeddingAccumulate",
        uniforms: [["n", "u32"], ["C", "u32"]],
        bindings: [["dtable", "write", "array<f32>"], ["dout", "read", "array<f32>"], ["ids", "read", "array<i32>"], ["links", "read", "array<u32>"]],
        body: `${LINEAR_INDEX(WG)}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = linearIndex(gid, nwg);
  if (i >= u.n * u.C) { return; }
  let t = i / u.C;
  let c = i - t * u.C;
  if ((links[t] & 0x80000000u) == 0u) { return; }
  var s = 0.0;
  var j = t;
  loop {
    s += dout[j * u.C + c];
    j = links[j] & 0x7fffffffu;
    if (j >= u.n) { break; }
  }
  let o = u32(ids[t]) * u.C + c;
  dtable[o] = dtable[o] + s;
}`,
      }));
      ctx.dispatch(pa, [dtable, dout, ids, links], [n, C], grid1d(n * C, WG));
      ctx.pool.release(links);
    },

    rmsnormForward(out, rstd, x, w, rows, C, eps, offset) {
      if (rows === 0) return;
      const p = ctx.pipeline("rmsnorm", () =>
        rowKernel(
          "rmsnorm",
          [["out", "write", "array<f32>"], ["rstd", "write", "array<f32>"], ["x", "read", "array<f32>"], ["w", "read", "array<f32>"]],
          [["eps", "f32"], ["offset", "f32"]],
          `var ss = 0.0;
  for (var c = lid; c < C; c += ${ROW_WG}u) { let v = x[base + c]; ss += v * v; }
  let s = 1.0 / sqrt(reduce1(ss, lid) / f32(C) + u.eps);
  if (lid == 0u) { rstd[row] = s; }
  for (var c = lid; c < C; c += ${ROW_WG}u) { out[base + c] = x[base + c] * s * (w[c] + u.offset); }`,
        ),
      );
      ctx.dispatch(p, [out, rstd, x, w], [rows, C, eps, offset], rowGrid(rows));
    },

    rmsnormBackward(dx, dw, dy, x, w, rstd, rows, C, offset) {
      if (rows === 0) return;
      const p = ctx.pipeline("rmsnormBackward", () =>
        rowKernel(
          "rmsnormBackward",
          [["dx", "write", "array<f32>"], ["dy", "read", "array<f32>"], ["x", "read", "array<f32>"], ["w", "read", "array<f32>"], ["rstd", "read", "array<f32>"]],
          [["offset", "f32"]],
          `let s = rstd[row];
  var dot = 0.0;
  for (var c = lid; c < C; c += ${ROW_WG}u) { dot += dy[base + c] * (w[c] + u.offset) * x[base + c] * s; }
  let m = reduce1(dot, lid) / f32(C);
  for (var c = lid; c < C; c += ${ROW_WG}u) {
    let xhat = x[base + c] * s;
    dx[base + c] = s * (dy[base + c] * (w[c] + u.offset) - xhat * m);
  }`,
        ),
      );
      ctx.dispatch(p, [dx, dy, x, w, rstd], [rows, C, offset], rowGrid(rows));
      sumOverRows(
        "rmsnormDw",
        () =>
          rowSumKernel(
            "rmsnormDw",
            [["dy", "read", "array<f32>"], ["x", "read", "array<f32>"], ["rstd", "read", "array<f32>"]],
            "dy[r * C + c] * x[r * C + c] * rstd[r]",
          ),
        dw,
        [dy, x, rstd],
        rows,
        C,
      );
    },

    layernormForward(out, mean, rstd, x, w, b, rows, C, eps) {
      if (rows === 0) return;
      const bias = b !== null;
      const p = ctx.pipeline(`layernorm:${bias}`, () =>
        rowKernel(
          "layernorm",
          [
            ["out", "write", "array<f32>"],
            ["mean", "write", "array<f32>"],
            ["rstd", "write", "array<f32>"],
            ["x", "read", "array<f32>"],
            ["w", "read", "array<f32>"],
            ...(bias ? ([["b", "read", "array<f32>"]] as KernelDef["bindings"]) : []),
          ],
          [["eps", "f32"]],
          `var sum = 0.0;
  for (var c = lid; c < C; c += ${ROW_WG}u) { sum += x[base + c]; }
  let mu = reduce1(sum, lid) / f32(C);
  var sq = 0.0;
  for (var c = lid; c < C; c += ${ROW_WG}u) { let d = x[base + c] - mu; sq += d * d; }
  let s = 1.0 / sqrt(reduce1(sq, lid) / f32(C) + u.eps);
  if (lid == 0u) { mean[row] = mu; rstd[row] = s; }
  for (var c = lid; c < C; c += ${ROW_WG}u) { out[base + c] = (x[base + c] - mu) * s * w[c]${bias ? " + b[c]" : ""}; }`,
        ),
      );
      ctx.dispatch(p, bias ? [out, mean, rstd, x, w, b] : [out, mean, rstd, x, w], [rows, C, eps], rowGrid(rows));
    },

    layernormBackward(dx, dw, db, dy, x, w, mean, rstd, rows, C) {
      if (rows === 0) return;
      const p = ctx.pipeline("layernormBackward", () =>
        rowKernel(
          "layernormBackward",
          [
            ["dx", "write", "array<f32>"],
            ["dy", "read", "array<f32>"],
            ["x", "read", "array<f32>"],
            ["w", "read", "array<f32>"],
            ["mean", "read", "array<f32>"],
            ["rstd", "read", "array<f32>"],
          ],
          [],
          `let mu = mean[row];
  let s = rstd[row];
  var acc = vec2<f32>(0.0);
  for (var c = lid; c < C; c += ${ROW_WG}u) {
    let xhat = (x[base + c] - mu) * s;
    let g = dy[base + c] * w[c];
    acc += vec2<f32>(g, g * xhat);
  }
  let means = reduce2(acc, lid) / f32(C);
  for (var c = lid; c < C; c += ${ROW_WG}u) {
    let xhat = (x[base + c] - mu) * s;
    dx[base + c] = s * (dy[base + c] * w[c] - means.x - xhat * means.y);
  }`,
        ),
      );
      ctx.dispatch(p, [dx, dy, x, w, mean, rstd], [rows, C], rowGrid(rows));
      sumOverRows(
        "layernormDw",
        () =>
          rowSumKernel(
            "layernormDw",
            [["dy", "read", "array<f32>"], ["x", "read", "array<f32>"], ["mean", "read", "array<f32>"], ["rstd", "read", "array<f32>"]],
            "dy[r * C + c] * (x[r * C + c] - mean[r]) * rstd[r]",
          ),
        dw,
        [dy, x, mean, rstd],
        rows,
        C,
      );
      if (db) columnSum(ctx, db, dy, rows, C, true);
    },

    ropeForward(out, x, invFreq, d: RopeDims) {
      const rows = d.B * d.T * d.H;
      const half = d.rotDim / 2;
      const perRow = half + (d.K - d.rotDim);
      if (rows * perRow === 0) return;
      const p = ctx.pipeline("rope", () => ({
        label: "rope",
        uniforms: [
          ["n", "u32"],
          ["perRow", "u32"],
          ["T", "u32"],
          ["H", "u32"],
          ["K", "u32"],
          ["half", "u32"],
          ["pos0", "u32"],
          ["scaling", "f32"],
          ["sign", "f32"],
        ],
        bindings: [["out", "write", "array<f32>"], ["x", "read", "array<f32>"], ["invFreq", "read", "array<f32>"]],
        body: `${LINEAR_INDEX(WG)}${SINCOS}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let idx = linearIndex(gid, nwg);
  if (idx >= u.n) { return; }
  let row = idx / u.perRow;
  let i = idx - row * u.perRow;
  let base = row * u.K;
  if (i >= u.half) {
    // dims past rotDim pass through
    let c = u.half + i;
    out[base + c] = x[base + c];
    return;
  }
  let t = (row / u.H) % u.T;
  let angle = f32(u.pos0 + t) * invFreq[i];
  let sc = sincos_(angle);
  let cs = sc.y * u.scaling;
  let sn = sc.x * u.scaling * u.sign;
  let x1 = x[base + i];
  let x2 = x[base + i + u.half];
  out[base + i] = x1 * cs - x2 * sn;
  out[base + i + u.half] = x2 * cs + x1 * sn;
}`,
      }));
      ctx.dispatch(p, [out, x, invFreq], [rows * perRow, perRow, d.T, d.H, d.K, half, d.pos0, d.attnScaling, d.inverse ? -1 : 1], grid1d(rows * perRow, WG));
    },
  };
}
