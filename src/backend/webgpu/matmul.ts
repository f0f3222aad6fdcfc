/**
 * Tiled fp32 matrix multiply in WGSL, the classic SIMT SGEMM: a workgroup computes a BM x BN
 * tile of out stepping through K by BK; each thread owns a TM x TN register block, laid out as
 * (TM/4) x (TN/4) 4x4 sub-blocks spaced BM/(TM/4) rows and BN/(TN/4) columns apart, so that its
 * workgroup-memory reads are vec4s that a warp reads without bank conflicts.
 * Tiles of A (stored k-major, As[k][m]) and B (Bs[k][n]) are double-buffered: the next tile is
 * fetched from global memory into registers while the current one is multiplied, then stored
 * to the other buffer, with one barrier per step.
 *
 * Written for what Dawn's WGSL compiler (Tint) and the driver make of it (measured on an H200
 * through Vulkan; scripts/bench-gpu.ts --variants):
 * - workgroup tiles are nested arrays indexed by [buffer][k][thread + constant]: Tint's
 *   robustness transform clamps every array index it cannot prove in range, and it proves
 *   these (k is an unrolled constant, the thread index is derived from local_invocation_index),
 *   so the inner loop's loads keep constant address offsets; only the buffer index (t & 1) is
 *   clamped, once per step;
 * - the multiply-add is written `acc + b * a[i]` (vector times scalar), which the driver
 *   contracts to FFMA; the same loop with `fma(vec4(a[i]), b, acc)` ran 1.5x slower;
 * - each multiply-add reads 1/TM + 1/TN floats of workgroup memory, whose bandwidth is a quarter
 *   of the FFMA rate in floats: 8 x 16 per thread (128 x 256 tiles, BK 16: 45 TFLOP/s at 8192^3)
 *   beat 8 x 8 (128 x 128: 36 TFLOP/s), at the price of one 256-thread workgroup per SM.
 *
 * Global loads are vec4 when the operand's contiguous dim (and batch stride) is a multiple of
 * 4, scalar otherwise; bounds checks are compiled in only when M, N, K do not divide the tile.
 */
import type { CoreKernels, MatmulDims } from "../kernels.js";
import { routeMatmul } from "./matmul_half.js";
import type { GpuContext, KernelDef } from "./context.js";
import type { GpuTensorBuffer } from "./pool.js";

type S = GpuTensorBuffer;

/** Tile shape: workgroup tile BM x BN x BK, thread block TM x TN (multiples of 4). */
export interface MatmulTile {
  BM: number;
  BN: number;
  BK: number;
  TM: number;
  TN: number;
  /** lanes of each 32-wide warp cover a 4 x 8 patch of threads (fewer distinct addresses per read) */
  warpPatch: boolean;
}


export interface MatmulConfig extends MatmulTile {
  transA: boolean;
  transB: boolean;
  /** vec4 loads of a, b; vec4 stores of out */
  vecA: boolean;
  vecB: boolean;
  vecOut: boolean;
  /** bounds checks on loads and stores */
  check: boolean;
}

/** Large products: 128 x 256 tiles, 8 x 16 per thread, 256 threads, 48 KiB of workgroup memory. */
export const TILE_WIDE: MatmulTile = { BM: 128, BN: 256, BK: 16, TM: 8, TN: 16, warpPatch: false };
/** Large products where 48 KiB of workgroup memory is not available: 128 x 128 tiles, 8 x 8 per thread. */
export const TILE_LARGE: MatmulTile = { BM: 128, BN: 128, BK: 8, TM: 8, TN: 8, warpPatch: true };
/** Small products (too few large tiles to fill a GPU): 64 x 64 tiles, 4 x 4 per thread. */
export const TILE_SMALL: MatmulTile = { BM: 64, BN: 64, BK: 16, TM: 4, TN: 4, warpPatch: false };

const threadsOf = (t: MatmulTile) => (t.BM / t.TM) * (t.BN / t.TN);

/**
 * WGSL of `fn load_<name>(base, outer, contig, outerLim, contigLim, ld) -> vec4<f32>`: four
 * consecutive elements along the contiguous dim of a row-major operand, zero outside.
 */
function loader(name: string, vec: boolean, check: boolean): string {
  const sig = `fn load_${name}(base: u32, outer: u32, contig: u32, outerLim: u32, contigLim: u32, ld: u32) -> vec4<f32>`;
  if (vec) {
    const guard = check ? `if (outer >= outerLim || contig >= contigLim) { return vec4<f32>(0.0); }\n  ` : "";
    return `${sig} {\n  ${guard}return ${name}[(base + outer * ld + contig) >> 2u];\n}\n`;
  }
  return `${sig} {
  var v = vec4<f32>(0.0);
  if (outer >= outerLim) { return v; }
  let i = base + outer * ld + contig;
  if (contig < contigLim) { v.x = ${name}[i]; }
  if (contig + 1u < contigLim) { v.y = ${name}[i + 1u]; }
  if (contig + 2u < contigLim) { v.z = ${name}[i + 2u]; }
  if (contig + 3u < contigLim) { v.w = ${name}[i + 3u]; }
  return v;
}
`;
}

/** The global-to-workgroup copy of one operand tile: loads into registers, stores into a buffer. */
function operandCopy(op: "a" | "b", c: MatmulConfig): { loads: (k0: string) => string; stores: (buf: string) => string; regs: string } {
  const NT = threadsOf(c);
  const rows = op === "a" ? c.BM : c.BN; // the M (or N) extent of the tile
  const trans = op === "a" ? c.transA : c.transB;
  // the operand's contiguous dim is K unless (a transposed) or (b not transposed)
  const contigK = op === "a" ? !trans : trans;
  const n = (rows * c.BK) / 4 / NT; // vec4s per thread
  const tile = op === "a" ? "As" : "Bs";
  const at = (buf: string, k: string, i: string) => `${tile}[${buf}][${k}][${i}]`;
  const org = op === "a" ? "m0" : "n0";
  const lim = op === "a" ? "u.M" : "u.N";
  const base = op === "a" ? "aBase" : "bBase";
  const ld = contigK ? "u.K" : lim;
  const idx = [...Array(n).keys()];
  const coords = (i: number) => {
    const v = `(lid + ${i * NT}u)`;
    return contigK ? { outer: `${v} / ${c.BK / 4}u`, inner: `(${v} % ${c.BK / 4}u) * 4u` } : { outer: `${v} / ${rows / 4}u`, inner: `(${v} % ${rows / 4}u) * 4u` };
  };
  const loads = (k0: string) =>
    idx
      .map((i) => {
        const { outer, inner } = coords(i);
        // contigK: outer = row of the tile (m or n), inner = k; else outer = k, inner = m or n
        const args = contigK ? `${org} + ${outer}, ${k0} + ${inner}, ${lim}, u.K` : `${k0} + ${outer}, ${org} + ${inner}, u.K, ${lim}`;
        return `r${op}${i} = load_${op}(${base}, ${args}, ${ld});`;
      })
      .join("\n    ");
  const stores = (buf: string) =>
    idx
      .map((i) => {
        const { outer, inner } = coords(i);
        if (!contigK) return `${at(buf, outer, `(${inner}) >> 2u`)} = r${op}${i};`;
        // transpose on the way in: four k rows, one component each
        return `{ let o_ = ${outer}; let k_ = ${inner};\n      ${[0, 1, 2, 3].map((e) => `${at(buf, `k_ + ${e}u`, "o_ >> 2u")}[o_ & 3u] = r${op}${i}[${e}];`).join(" ")} }`;
      })
      .join("\n    ");
  const regs = idx.map((i) => `var r${op}${i} = vec4<f32>(0.0);`).join(" ");
  return { loads, stores, regs };
}

export function matmulDef(c: MatmulConfig): KernelDef {
  const { BM, BN, BK, TM, TN } = c;
  const NT = threadsOf(c);
  const TY = BM / TM; // threads along M
  const TX = BN / TN; // threads along N
  const RM = TM / 4; // 4-row sub-blocks per thread
  const RN = TN / 4;
  if ((BM * BK) % (4 * NT) !== 0 || (BN * BK) % (4 * NT) !== 0) throw new Error(`internal: matmul tile ${JSON.stringify(c)} does not split over its threads`);
  const A = operandCopy("a", c);
  const B = operandCopy("b", c);

  const thread = c.warpPatch
    ? `let lane = lid % 32u;
  let warp = lid / 32u;
  let ty = (warp / ${TX / 8}u) * 4u + lane / 8u;
  let tx = (warp % ${TX / 8}u) * 8u + lane % 8u;`
    : `let tx = lid % ${TX}u;
  let ty = lid / ${TX}u;`;

  const rs = [...Array(RM).keys()];
  const qs = [...Array(RN).keys()];
  const es = [0, 1, 2, 3];
  const acc = (r: number, i: number, q: number) => `acc_${r}_${i}_${q}`;
  const accs = rs.flatMap((r) => es.flatMap((i) => qs.map((q) => acc(r, i, q))));
  const compute: string[] = [];
  for (let k = 0; k < BK; k++) {
    for (const r of rs) compute.push(`let a${r}_${k} = As[cur][${k}][ty + ${TY * r}u];`);
    for (const q of qs) compute.push(`let b${q}_${k} = Bs[cur][${k}][tx + ${TX * q}u];`);
    for (const r of rs) for (const i of es) for (const q of qs) compute.push(`${acc(r, i, q)} = ${acc(r, i, q)} + b${q}_${k} * a${r}_${k}[${i}];`);
  }
  const stores: string[] = [];
  for (const r of rs) {
    for (const i of es) {
      stores.push(`row = m0 + (ty + ${TY * r}u) * 4u + ${i}u;`);
      for (const q of qs) {
        const a = acc(r, i, q);
        stores.push(`col = n0 + (tx + ${TX * q}u) * 4u;`);
        if (c.vecOut) {
          const body = `o = (oBase + row * u.N + col) >> 2u; if (u.accumulate != 0u) { out[o] = out[o] + ${a}; } else { out[o] = ${a}; }`;
          stores.push(c.check ? `if (row < u.M && col < u.N) { ${body} }` : `{ ${body} }`);
        } else {
          stores.push(`if (row < u.M) {`);
          for (const j of es) {
            stores.push(`  if (col + ${j}u < u.N) { o = oBase + row * u.N + col + ${j}u; out[o] = select(0.0, out[o], u.accumulate != 0u) + ${a}[${j}]; }`);
          }
          stores.push(`}`);
        }
      }
    }
  }

  return {
    label: `matmul${BM}x${BN}x${BK}${c.transA ? "T" : "N"}${c.transB ? "T" : "N"}`,
    uniforms: [
      ["M", "u32"],
      ["N", "u32"],
      ["K", "u32"],
      ["sA", "u32"],
      ["sB", "u32"],
      ["sO", "u32"],
      ["accumulate", "u32"],
    ],
    bindings: [
      ["out", "write", c.vecOut ? "array<vec4<f32>>" : "array<f32>"],
      ["a", "read", c.vecA ? "array<vec4<f32>>" : "array<f32>"],
      ["b", "read", c.vecB ? "array<vec4<f32>>" : "array<f32>"],
    ],
    body: `
var<workgroup> As: array<array<array<vec4<f32>, ${BM / 4}>, ${BK}>, 2>;
var<workgroup> Bs: array<array<array<vec4<f32>, ${BN / 4}>, ${BK}>, 2>;
${loader("a", c.vecA, c.check)}
${loader("b", c.vecB, c.check)}
@compute @workgroup_size(${NT})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  ${thread}
  let m0 = wid.y * ${BM}u;
  let n0 = wid.x * ${BN}u;
  let aBase = wid.z * u.sA;
  let bBase = wid.z * u.sB;
  let oBase = wid.z * u.sO;
  ${accs.map((a) => `var ${a} = vec4<f32>(0.0);`).join(" ")}
  let nTiles = (u.K + ${BK - 1}u) / ${BK}u;
  ${A.regs}
  ${B.regs}
  if (nTiles > 0u) {
    let k0 = 0u;
    ${A.loads("k0")}
    ${B.loads("k0")}
    ${A.stores("0u")}
    ${B.stores("0u")}
  }
  workgroupBarrier();
  for (var t = 0u; t < nTiles; t++) {
    let cur = t & 1u;
    let more = t + 1u < nTiles;
    if (more) {
      let k0 = (t + 1u) * ${BK}u;
      ${A.loads("k0")}
      ${B.loads("k0")}
    }
    ${compute.join("\n    ")}
    if (more) {
      let nxt = cur ^ 1u;
      ${A.stores("nxt")}
      ${B.stores("nxt")}
    }
    workgroupBarrier();
  }
  var row: u32; var col: u32; var o: u32;
  ${stores.join("\n  ")}
}`,
  };
}

/** Workgroup bytes of a tile: two buffers of A and B tiles. */
export const tileBytes = (t: MatmulTile) => 2 * 4 * (t.BM + t.BN) * t.BK;

/**
 * The tile for a product: the largest that fits the device and still makes about one
 * workgroup per multiprocessor of a large GPU (128 tiles).
 */
export function chooseMatmulTile(M: number, N: number, batch: number, limits: { bytes: number; invocations: number }): MatmulTile {
  for (const t of [TILE_WIDE, TILE_LARGE]) {
    const tiles = Math.ceil(M / t.BM) * Math.ceil(N / t.BN) * batch;
    const fits = tileBytes(t) <= limits.bytes && threadsOf(t) <= limits.invocations;
    if (fits && M > t.BM / 2 && N > t.BN / 2 && tiles >= 128) return t;
  }
  return TILE_SMALL;
}

/** Record one matmul with a given tile (the kernel table's entry, and benchmarks of other tiles). */
export function dispatchMatmul(ctx: GpuContext, tile: MatmulTile, out: S, a: S, b: S, d: MatmulDims): void {
  const { M, N, K, transA, transB } = d;
  const batch = d.batch ?? 1;
  if (M === 0 || N === 0 || batch === 0) return;
  const sA = d.strideA ?? M * K;
  const sB = d.strideB ?? K * N;
  const sO = d.strideOut ?? M * N;
  const aligned = (dim: number, stride: number) => dim % 4 === 0 && (batch === 1 || stride % 4 === 0);
  const c: MatmulConfig = {
    ...tile,
    transA,
    transB,
    vecA: aligned(transA ? M : K, sA),
    vecB: aligned(transB ? K : N, sB),
    vecOut: aligned(N, sO),
    check: M % tile.BM !== 0 || N % tile.BN !== 0 || K % tile.BK !== 0,
  };
  const key = `matmul:${tile.BM}:${tile.BN}:${tile.BK}:${tile.TM}:${tile.TN}:${+tile.warpPatch}:${+transA}${+transB}:${+c.vecA}${+c.vecB}${+c.vecOut}:${+c.check}`;
  const p = ctx.pipeline(key, () => matmulDef(c));
  ctx.dispatch(p, [out, a, b], [M, N, K, sA, sB, sO, d.accumulate ? 1 : 0], [Math.ceil(N / tile.BN), Math.ceil(M / tile.BM), batch]);
}

export function matmulKernels(ctx: GpuContext): Pick<CoreKernels<S>, "matmul"> {
  return {
    matmul(out, a, b, d: MatmulDims) {
      if (routeMatmul(ctx, out, a, b, d)) return; // half-precision weights and M = 1: matmul_half.ts
      const limits = { bytes: ctx.limits.maxComputeWorkgroupStorageSize, invocations: ctx.limits.maxComputeInvocationsPerWorkgroup };
      dispatchMatmul(ctx, chooseMatmulTile(d.M, d.N, d.batch ?? 1, limits), out, a, b, d);
    },
  };
}
