/**
 * The fp32 matmul on f16 tensor cores (subgroup matrices): out (M, N) = A (M, K) B (K, N) with
 * each fp32 product taken as three f16 products (hi x hi + hi x lo + lo x hi, the scheme of
 * CUTLASS's OpMultiplyAddFastF32 and of attention_mma.ts), on operands split into f16 halves
 * by matmul_split.ts: A's rows and B's columns as rows over K, each scaled by its own power of
 * two, which the epilogue takes out again.
 *
 * A workgroup: RG x CG subgroups, each owning an SI x SJ block of 16 x 16 f32 result matrices of
 * the output tile (the default, MATMUL_MMA_TILES: 4 x 2 subgroups of 2 x 4 matrices, a 128 x 128
 * tile); K in steps of 32. Per step the next step's halves are loaded into registers (8 vec4 a
 * thread by default) while this step's, staged in workgroup memory, feed the matrix loads; every `fold` steps the accumulators are added into fp32 registers through a
 * small scratch and restart from zero (the tensor cores' f32 accumulation truncates, and its
 * error grows with the number of products it sums: attention_mma.ts). Matrix loads from workgroup
 * memory are at constant offsets (the subgroup's block chosen by a branch, uniform to WGSL) and
 * every workgroup array is a multiple of 16 bytes: only then does NVIDIA's driver make them LDSM
 * (bench/notes/gpu-tuning.md, "Tensor cores through WebGPU, part 3").
 */
import type { MatmulDims } from "../kernels.js";
import type { GpuContext, KernelDef } from "./context.js";
import type { GpuTensorBuffer } from "./pool.js";
import { range } from "./attention_tiles.js";
import { LEFT, MMA_ENABLES, RESULT, RIGHT, mma3 } from "./attention_split.js";
import { matmulSplitDefs, splitOperand } from "./matmul_split.js";

type S = GpuTensorBuffer;

export interface MatmulMmaTiles {
  /** subgroups along rows and along columns */
  RG: number;
  CG: number;
  /** 16 x 16 result matrices of a subgroup along rows and along columns */
  SI: number;
  SJ: number;
  /** the accumulators are folded into fp32 registers every this many K steps */
  fold: number;
  /** floats a scratch row (16 + padding) */
  CS?: number;
}

/**
 * The tiles measured best on an H200 (bench/notes/gpu-tuning.md): 8 subgroups in a 4 x 2 grid,
 * each a 32 x 64 block (2 x 4 result matrices) of a 128 x 128 output tile, the scratch rows
 * unpadded so that it all fits 48 KiB; fold 16 (1.8e-6 relative error at K = 4096; fold 32
 * 3.6e-6 at 2% less time).
 */
export const MATMUL_MMA_TILES: MatmulMmaTiles = { RG: 4, CG: 2, SI: 2, SJ: 4, fold: 16, CS: 16 };

/**
 * The tensor-core matmul's tiles for a product, or null where it should not
 * run (half-precision weights run here too, widened by the split): no tensor cores, a batched product (not measured), a K too short
 * to pay for the split, an output narrower than two tiles either way (mostly padding), or fewer
 * output tiles than a large GPU has multiprocessors (128). There split-K on the SIMT kernel wins:
 * on an H200 a 768 x 1536 weight gradient over 2048 tokens ran 26.9 TFLOP/s in 8 K slices there
 * against 18.5 here in one and 17.1 in 4 slices (measured with a split-K form of this kernel, not
 * kept: the operands' split passes cost as much as the product), 2048 x 768 x 1536 25.6 against
 * 26.2 and 20.7.
 */
export function chooseMatmulMma(tensorCores: boolean, d: MatmulDims, bytes: number): MatmulMmaTiles | null {
  const c = MATMUL_MMA_TILES;
  const g = matmulMmaGeometry(c);
  if (!tensorCores || g.bytes > bytes || (d.batch ?? 1) !== 1 || d.K < 128) return null;
  if (d.M < 2 * g.BM || d.N < 2 * g.BN) return null;
  return Math.ceil(d.M / g.BM) * Math.ceil(d.N / g.BN) >= 128 ? c : null;
}

/** the K step */
const BK = 32;
/** halves a staged row (BK + 8 of padding: rows 80 bytes apart) */
const KS = BK + 8;

/** Output tile rows and columns, threads, and the staged regions' sizes. */
export function matmulMmaGeometry(c: MatmulMmaTiles) {
  const BM = 16 * c.RG * c.SI;
  const BN = 16 * c.CG * c.SJ;
  const NW = c.RG * c.CG;
  const THREADS = 32 * NW;
  const CS = c.CS ?? 20;
  /** vec4<u32> (8 halves) of one staged region: A's BM rows or B's BN rows of BK halves */
  const A_V4 = (BM * BK) / 8;
  const B_V4 = (BN * BK) / 8;
  /** regions of the staged halves: A hi, A lo, B hi, B lo */
  const REGION = [0, BM * KS, 2 * BM * KS, 2 * BM * KS + BN * KS];
  const bytes = 2 * 2 * (BM + BN) * KS + 4 * NW * 16 * CS;
  return { BM, BN, NW, THREADS, CS, A_V4, B_V4, REGION, bytes };
}

export function matmulMmaName(c: MatmulMmaTiles): string {
  const { BM, BN } = matmulMmaGeometry(c);
  return `mma f16x3 ${BM}x${BN}x${BK} w${c.RG}x${c.CG} fold${c.fold}${c.CS ? ` cs${c.CS}` : ""}`;
}

const load = (type: string, major: string, off: number) => `subgroupMatrixLoad<${type}, ${major}>(&sH, ${off}u, ${KS}u)`;

export function matmulMmaDef(c: MatmulMmaTiles): KernelDef {
  const { BM, BN, NW, THREADS, CS, A_V4, B_V4, REGION } = matmulMmaGeometry(c);
  const { RG, CG, SI, SJ } = c;
  if (A_V4 % THREADS !== 0 || B_V4 % THREADS !== 0) throw new Error(`internal: matmul mma tiles ${JSON.stringify(c)}`);
  const RI = range(SI);
  const RJ = range(SJ);
  // a step's copies: thread lid moves vec4 number lid + off of region `region` (A hi, A lo, B hi,
  // B lo), each region a whole number of THREADS vec4s
  const copies = [0, 1, 2, 3].flatMap((region) => range((region < 2 ? A_V4 : B_V4) / THREADS).map((i) => ({ region, off: i * THREADS })));
  const src = ["ah", "al", "bh", "bl"];
  const prefetch = (k8: string) =>
    copies
      .map(({ region, off }, e) => `pre${e} = ${src[region]}[(${region < 2 ? "aRow0" : "bRow0"} + ${off / (BK / 8)}u + lid / ${BK / 8}u) * kp8 + ${k8} + lid % ${BK / 8}u];`)
      .join("\n    ");
  const stage = copies
    .map(({ region, off }, e) => {
      const o = `${REGION[region] + (off / (BK / 8)) * KS}u + lid / ${BK / 8}u * ${KS}u + lid % ${BK / 8}u * 8u`;
      return `{ let o = ${o}; ${range(4)
        .map((q) => `let h${q} = unpack2x16float(pre${e}[${q}]); sH[o + ${2 * q}u] = f16(h${q}.x); sH[o + ${2 * q + 1}u] = f16(h${q}.y);`)
        .join(" ")} }`;
    })
    .join("\n    ");
  // the subgroup's fragments of one 16-wide K chunk, at constant offsets by a branch on its block
  const fragments = (kc: number) => `${range(RG)
    .map(
      (g) =>
        `${g ? "else " : ""}if (rg == ${g}u) { ${RI
          .map((i) => `aH${i} = ${load(LEFT, "row_major", REGION[0] + (g * 16 * SI + 16 * i) * KS + 16 * kc)}; aL${i} = ${load(LEFT, "row_major", REGION[1] + (g * 16 * SI + 16 * i) * KS + 16 * kc)};`)
          .join(" ")} }`,
    )
    .join("\n      ")}
      ${range(CG)
        .map(
          (g) =>
            `${g ? "else " : ""}if (cg == ${g}u) { ${RJ
              .map((j) => `bH${j} = ${load(RIGHT, "col_major", REGION[2] + (g * 16 * SJ + 16 * j) * KS + 16 * kc)}; bL${j} = ${load(RIGHT, "col_major", REGION[3] + (g * 16 * SJ + 16 * j) * KS + 16 * kc)};`)
              .join(" ")} }`,
        )
        .join("\n      ")}`;
  const products = RI.flatMap((i) => RJ.map((j) => mma3(`c${i}${j}`, `aH${i}`, `aL${i}`, `bH${j}`, `bL${j}`))).join("\n      ");
  // each result matrix through the subgroup's scratch into the lane's fp32 registers: lane l takes
  // row l / 2, columns 8 (l % 2) .. + 8
  const fold = RI
    .flatMap((i) =>
      RJ.map(
        (j) => `subgroupMatrixStore<row_major>(&sC, sw, c${i}${j}, ${CS}u);
    workgroupBarrier();
    ${range(8)
      .map((q) => `f${i}${j}_${q} += sC[sw + lr * ${CS}u + lc + ${q}u];`)
      .join(" ")}
    c${i}${j} = ${RESULT}();
    workgroupBarrier();`,
      ),
    )
    .join("\n    ");
  const store = RI
    .flatMap((i) =>
      RJ.map(
        (j) => `{
    let r = m0 + rg * ${16 * SI}u + ${16 * i}u + lr;
    if (r < u.M) {
      let sa = bitcast<f32>(u32(127 - ae[aRow0 + rg * ${16 * SI}u + ${16 * i}u + lr]) << 23u);
      let ob = bo + r * u.N;
      ${range(8)
        .map((q) => `{ let cc = n0 + cg * ${16 * SJ}u + ${16 * j}u + lc + ${q}u; if (cc < u.N) { let v = f${i}${j}_${q} * sa * bitcast<f32>(u32(127 - be[bRow0 + cg * ${16 * SJ}u + ${16 * j}u + lc + ${q}u]) << 23u); if (u.accumulate != 0u) { out[ob + cc] = out[ob + cc] + v; } else { out[ob + cc] = v; } } }`)
        .join("\n      ")}
    }
  }`,
      ),
    )
    .join("\n  ");
  return {
    label: "matmulMma",
    uniforms: [
      ["M", "u32"],
      ["N", "u32"],
      ["Mp", "u32"],
      ["Np", "u32"],
      ["Kp", "u32"],
      ["sO", "u32"],
      ["accumulate", "u32"],
      ["batchA", "u32"],
      ["batchB", "u32"],
    ],
    enables: MMA_ENABLES,
    bindings: [
      ["out", "write", "array<f32>"],
      ["ah", "read", "array<vec4<u32>>"],
      ["al", "read", "array<vec4<u32>>"],
      ["ae", "read", "array<i32>"],
      ["bh", "read", "array<vec4<u32>>"],
      ["bl", "read", "array<vec4<u32>>"],
      ["be", "read", "array<i32>"],
    ],
    body: `
var<workgroup> sH: array<f16, ${2 * (BM + BN) * KS}>;
var<workgroup> sC: array<f32, ${NW * 16 * CS}>;

@compute @workgroup_size(${THREADS})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32, @builtin(subgroup_id) sgid: u32, @builtin(subgroup_invocation_id) lane: u32) {
  let rg = sgid / ${CG}u; // the subgroup's block (uniform: matrix offsets must be)
  let cg = sgid % ${CG}u;
  let lr = lane / 2u;
  let lc = (lane % 2u) * 8u;
  let sw = sgid * ${16 * CS}u;
  let n0 = wid.x * ${BN}u;
  let m0 = wid.y * ${BM}u;
  let b = wid.z;
  let kp8 = u.Kp / 8u;
  // first rows of this tile in the split operands (a broadcast operand has one batch)
  let aRow0 = b * u.batchA * u.Mp + m0;
  let bRow0 = b * u.batchB * u.Np + n0;
  let bo = b * u.sO;
  ${RI.flatMap((i) => RJ.map((j) => `var c${i}${j} = ${RESULT}();`)).join(" ")}
  ${RI.flatMap((i) => RJ.flatMap((j) => range(8).map((q) => `var f${i}${j}_${q} = 0.0;`))).join(" ")}
  ${RI.map((i) => `var aH${i}: ${LEFT}; var aL${i}: ${LEFT};`).join(" ")}
  ${RJ.map((j) => `var bH${j}: ${RIGHT}; var bL${j}: ${RIGHT};`).join(" ")}
  ${copies
    .map((_, e) => `var pre${e}: vec4<u32>;`)
    .join(" ")}
  let steps = u.Kp / ${BK}u;
  ${prefetch("0u")}
  for (var s = 0u; s < steps; s++) {
    workgroupBarrier(); // the last step's matrix loads are done
    ${stage}
    if (s + 1u < steps) {
      ${prefetch(`(s + 1u) * ${BK / 8}u`)}
    }
    workgroupBarrier();
    ${range(BK / 16)
      .map(
        (kc) => `{
      ${fragments(kc)}
      ${products}
    }`,
      )
      .join("\n    ")}
    if (s % ${c.fold}u == ${c.fold - 1}u) {
    ${fold}
    }
  }
  if (steps % ${c.fold}u != 0u) {
    ${fold}
  }
  ${store}
}
`,
  };
}

/**
 * Record out = A B (or out += A B) on tensor cores: both operands split (matmul_split.ts), then
 * the kernel over (N / BN, M / BM, batch) tiles.
 */
export function dispatchMatmulMma(ctx: GpuContext, c: MatmulMmaTiles, out: S, a: S, b: S, d: MatmulDims): void {
  const { M, N, K, transA, transB } = d;
  const batch = d.batch ?? 1;
  if (M === 0 || N === 0 || batch === 0) return;
  const { BM, BN } = matmulMmaGeometry(c);
  const sA = d.strideA ?? M * K;
  const sB = d.strideB ?? K * N;
  const Mp = Math.ceil(M / BM) * BM;
  const Np = Math.ceil(N / BN) * BN;
  const Kp = Math.max(BK, Math.ceil(K / BK) * BK);
  // a broadcast operand (stride 0) is split once
  const batchA = sA === 0 ? 1 : batch;
  const batchB = sB === 0 ? 1 : batch;
  const A = splitOperand(ctx, a, batchA, M, K, Mp, Kp, sA, transA ? 1 : K, transA ? M : 1);
  const B = splitOperand(ctx, b, batchB, N, K, Np, Kp, sB, transB ? K : 1, transB ? 1 : N, d.bDtype ?? "f32");
  const p = ctx.pipeline(`matmulMma:${c.RG}:${c.CG}:${c.SI}:${c.SJ}:${c.fold}:${c.CS ?? 20}`, () => matmulMmaDef(c));
  const uniforms = [M, N, Mp, Np, Kp, d.strideOut ?? M * N, d.accumulate ? 1 : 0, sA === 0 ? 0 : 1, sB === 0 ? 0 : 1];
  ctx.dispatch(p, [out, A.hi, A.lo, A.ex, B.hi, B.lo, B.ex], uniforms, [Np / BN, Mp / BM, batch]);
  A.release();
  B.release();
}

/** Every kernel of the tensor-core matmul (tests compile them where no GPU runs them). */
export const matmulMmaDefs = (c: MatmulMmaTiles): KernelDef[] => [matmulMmaDef(c), ...matmulSplitDefs()];
