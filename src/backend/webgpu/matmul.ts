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
 * A product with few output tiles over a long K runs split-K (chooseSplits): its workgroups
 * share K out in slices, each writing a partial, and a second pass adds them up.
 */
import type { CoreKernels, MatmulDims } from "../kernels.js";
import { routeMatmul } from "./matmul_half.js";
import { chooseMatmulMma, dispatchMatmulMma } from "./matmul_mma.js";
import { chooseSplits, reduceSplits } from "./matmul_splitk.js";
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
  /**
   * An operand whose rows run along K (a not transposed, b transposed: a Linear's weight) is
   * transposed on its way into workgroup memory, four scalar stores per vec4 loaded, and the lanes
   * that share a row write the same bank. With swz, k-row k of the tile keeps its vec4 column c at
   * c ^ swizzle(k) (swizzleOf), which spreads a warp's stores over all 32 banks; reads XOR the same
   * constant (k is unrolled), a permutation of the columns that keeps them conflict-free.
   */
  swz?: boolean;
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
export const TILE_WIDE: MatmulTile = { BM: 128, BN: 256, BK: 16, TM: 8, TN: 16, warpPatch: false, swz: true };
/** Large products where 48 KiB of workgroup memory is not available: 128 x 128 tiles, 8 x 8 per thread. */
export const TILE_LARGE: MatmulTile = { BM: 128, BN: 128, BK: 8, TM: 8, TN: 8, warpPatch: true };
/** Small products (too few large tiles to fill a GPU): 64 x 64 tiles, 4 x 4 per thread. */
export const TILE_SMALL: MatmulTile = { BM: 64, BN: 64, BK: 16, TM: 4, TN: 4, warpPatch: false, swz: true };

const threadsOf = (t: MatmulTile) => (t.BM / t.TM) * (t.BN / t.TN);

/**
 * The column swizzle of k-row k: a warp's transposing store covers 32 / (BK/4) tile rows, i.e.
 * 32 / BK vec4 columns, and its lanes cover the BK/4 k-quads; XOR by quad * 32/BK sends each
 * (column, quad) to its own column of an aligned group of 8, so to its own banks.
 */
const swizzleOf = (BK: number, k: number) => (k >> 2) * (32 / BK);

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
        // swizzleOf(BK, k) at run time: k_ is the quad's first k row
        const col = c.swz ? `(o_ >> 2u) ^ ((k_ >> 2u) * ${32 / c.BK}u)` : "o_ >> 2u";
        return `{ let o_ = ${outer}; let k_ = ${inner};\n      ${[0, 1, 2, 3].map((e) => `${at(buf, `k_ + ${e}u`, col)}[o_ & 3u] = r${op}${i}[${e}];`).join(" ")} }`;
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
  if (c.swz && (BM % 32 !== 0 || BN % 32 !== 0 || (BK !== 8 && BK !== 16))) throw new Error(`internal: matmul tile ${JSON.stringify(c)} cannot be swizzled`);
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
  // the operands stored transposed on the way in (rows along K), swizzled when c.swz
  const swzA = !!c.swz && !c.transA;
  const swzB = !!c.swz && c.transB;
  const col = (base: string, swz: boolean, k: number) => (swz && swizzleOf(BK, k) ? `(${base}) ^ ${swizzleOf(BK, k)}u` : base);
  const compute: string[] = [];
  for (let k = 0; k < BK; k++) {
    for (const r of rs) compute.push(`let a${r}_${k} = As[cur][${k}][${col(`ty + ${TY * r}u`, swzA, k)}];`);
    for (const q of qs) compute.push(`let b${q}_${k} = Bs[cur][${k}][${col(`tx + ${TX * q}u`, swzB, k)}];`);
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
    label: `matmul${BM}x${BN}x${BK}${c.swz ? "s" : ""}${c.transA ? "T" : "N"}${c.transB ? "T" : "N"}`,
    uniforms: [
      ["M", "u32"],
      ["N", "u32"],
      ["K", "u32"],
      ["sA", "u32"],
      ["sB", "u32"],
      ["sO", "u32"],
      ["accumulate", "u32"],
      ["kPer", "u32"],
      ["splits", "u32"],
      ["sSplit", "u32"],
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
  // wid.z = batch index x splits + split: split s sums k in [s kPer, (s + 1) kPer) into its own
  // slice of the output (a partial that matmulSplitReduce adds up)
  let split = wid.z % u.splits;
  let bz = wid.z / u.splits;
  let aBase = bz * u.sA;
  let bBase = bz * u.sB;
  let oBase = bz * u.sO + split * u.sSplit;
  let kBegin = split * u.kPer;
  let kEnd = min(u.K, kBegin + u.kPer);
  ${accs.map((a) => `var ${a} = vec4<f32>(0.0);`).join(" ")}
  let nTiles = select(0u, (kEnd - kBegin + ${BK - 1}u) / ${BK}u, kEnd > kBegin);
  ${A.regs}
  ${B.regs}
  if (nTiles > 0u) {
    let k0 = kBegin;
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
      let k0 = kBegin + (t + 1u) * ${BK}u;
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
 * The tile and K slices for a product: the largest tile that fits the device and still makes
 * about one workgroup per multiprocessor of a large GPU (128), with split-K counted in; else the
 * small tile, split where that helps. Measured on an H200 (bench/notes/gpu-tuning.md): a weight
 * gradient 768 x 1536 over 2048 tokens ran 27 TFLOP/s as 128 x 256 tiles in 8 slices against 17
 * as 64 x 64 tiles; 2048 x 768 x 1536 25.6 against 24.7.
 */
export function chooseMatmulPlan(M: number, N: number, K: number, batch: number, limits: { bytes: number; invocations: number }): { tile: MatmulTile; splits: number } {
  for (const tile of [TILE_WIDE, TILE_LARGE]) {
    const tiles = Math.ceil(M / tile.BM) * Math.ceil(N / tile.BN) * batch;
    const fits = tileBytes(tile) <= limits.bytes && threadsOf(tile) <= limits.invocations;
    if (!fits || M <= tile.BM / 2 || N <= tile.BN / 2) continue;
    if (tiles >= 128) return { tile, splits: 1 };
    const splits = chooseSplits(tile, M, N, K, batch);
    if (tiles * splits >= 128) return { tile, splits };
  }
  return { tile: TILE_SMALL, splits: chooseSplits(TILE_SMALL, M, N, K, batch) };
}

/**
 * Record one matmul with a given tile and number of K slices (the kernel table's entry, and
 * benchmarks of other tiles).
 */
export function dispatchMatmul(ctx: GpuContext, tile: MatmulTile, out: S, a: S, b: S, d: MatmulDims, splits = 1): void {
  const { M, N, K, transA, transB } = d;
  const batch = d.batch ?? 1;
  if (M === 0 || N === 0 || batch === 0) return;
  const sA = d.strideA ?? M * K;
  const sB = d.strideB ?? K * N;
  // with slices, the product goes to S partials of (batch, M, N), contiguous
  const sO = splits > 1 ? M * N : (d.strideOut ?? M * N);
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
  const key = `matmul:${tile.BM}:${tile.BN}:${tile.BK}:${tile.TM}:${tile.TN}:${+tile.warpPatch}:${+!!tile.swz}:${+transA}${+transB}:${+c.vecA}${+c.vecB}${+c.vecOut}:${+c.check}`;
  const p = ctx.pipeline(key, () => matmulDef(c));
  const kPer = Math.ceil(Math.ceil(K / splits) / tile.BK) * tile.BK;
  const grid: [number, number, number] = [Math.ceil(N / tile.BN), Math.ceil(M / tile.BM), batch * splits];
  if (splits === 1) {
    ctx.dispatch(p, [out, a, b], [M, N, K, sA, sB, sO, d.accumulate ? 1 : 0, kPer, 1, 0], grid);
    return;
  }
  const total = batch * M * N;
  const part = ctx.pool.acquire(splits * total * 4);
  ctx.dispatch(p, [part, a, b], [M, N, K, sA, sB, sO, 0, kPer, splits, total], grid);
  reduceSplits(ctx, out, part, d, splits);
  ctx.pool.release(part);
}

export function matmulKernels(ctx: GpuContext): Pick<CoreKernels<S>, "matmul"> {
  return {
    matmul(out, a, b, d: MatmulDims) {
      const limits = { bytes: ctx.limits.maxComputeWorkgroupStorageSize, invocations: ctx.limits.maxComputeInvocationsPerWorkgroup };
      // large products on tensor cores (f32 or half weights), then half weights and M = 1 (matmul_half.ts)
      const mma = chooseMatmulMma(ctx.acquired.tensorCores, d, limits.bytes);
      if (mma) return dispatchMatmulMma(ctx, mma, out, a, b, d);
      if (routeMatmul(ctx, out, a, b, d)) return;
      const { tile, splits } = chooseMatmulPlan(d.M, d.N, d.K, d.batch ?? 1, limits);
      dispatchMatmul(ctx, tile, out, a, b, d, splits);
    },
  };
}
