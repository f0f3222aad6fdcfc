/**
 * Tiled fp32 matrix multiply in WGSL, the classic SIMT SGEMM: a workgroup of 256 threads
 * computes a BM x BN tile of out (128 x 128, or 64 x 64 for small products) stepping through K
 * by BK; each thread owns an (4 RM) x (4 RN) register block, laid out as RM x RN 4x4 sub-blocks
 * 64 rows/columns apart so that its workgroup-memory reads are conflict-free vec4s.
 * Tiles of A (stored k-major, As[k][m]) and B (Bs[k][n]) are double-buffered: the next tile is
 * fetched from global memory into registers while the current one is multiplied, then stored
 * to the other buffer, with one barrier per step.
 *
 * Global loads are vec4 when the operand's contiguous dim (and batch stride) is a multiple of
 * 4, scalar otherwise; bounds checks are compiled in only when M, N, K do not divide the tile.
 */
import type { CoreKernels, MatmulDims } from "../kernels.js";
import { routeMatmul } from "./matmul_half.js";
import type { GpuContext, KernelDef } from "./context.js";
import type { GpuTensorBuffer } from "./pool.js";

type S = GpuTensorBuffer;

interface Config {
  /** 4x4 sub-blocks per thread along M and N (tile = 64 R) */
  R: 1 | 2;
  BK: number;
  transA: boolean;
  transB: boolean;
  /** vec4 loads of a, b; vec4 stores of out */
  vecA: boolean;
  vecB: boolean;
  vecOut: boolean;
  /** bounds checks on loads and stores */
  check: boolean;
}

/**
 * WGSL of `fn load_<name>(base, outer, contig, outerLim, contigLim, ld) -> vec4<f32>`: four
 * consecutive elements along the contiguous dim of a row-major operand, zero outside.
 */
function loader(name: string, vec: boolean, check: boolean): string {
  const sig = `fn load_${name}(base: u32, outer: u32, contig: u32, outerLim: u32, contigLim: u32, ld: u32) -> vec4<f32>`;
  if (vec) {
    const guard = check ? `if (outer >= outerLim || contig >= contigLim) { return vec4<f32>(0.0); }\n  ` : "";
    return `${sig} {\n  ${guard}return ${name}[(base + outer * ld + contig) / 4u];\n}\n`;
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

function matmulDef(c: Config): KernelDef {
  const BM = 64 * c.R;
  const BK = c.BK;
  const SZ = (BK * BM) / 4; // vec4s per tile buffer (A and B tiles are both BK x BM)
  const KQ = BK / 4; // vec4s per row of a k-contiguous tile row
  const MQ = BM / 4;
  // Where this thread's vec4 of each tile comes from, and how it is stored (k-major).
  const aCoords = c.transA
    ? `let aK = lid / ${MQ}u; let aM = (lid % ${MQ}u) * 4u;`
    : `let aM = lid / ${KQ}u; let aK = (lid % ${KQ}u) * 4u;`;
  const aLoad = c.transA ? `load_a(aBase, k0 + aK, m0 + aM, u.K, u.M, u.M)` : `load_a(aBase, m0 + aM, k0 + aK, u.M, u.K, u.K)`;
  const aStore = c.transA
    ? `As[s + aK * ${MQ}u + aM / 4u] = v;`
    : [0, 1, 2, 3].map((j) => `As[s + (aK + ${j}u) * ${MQ}u + aM / 4u][aM & 3u] = v[${j}];`).join("\n  ");
  const bCoords = c.transB
    ? `let bN = lid / ${KQ}u; let bK = (lid % ${KQ}u) * 4u;`
    : `let bK = lid / ${MQ}u; let bN = (lid % ${MQ}u) * 4u;`;
  const bLoad = c.transB ? `load_b(bBase, n0 + bN, k0 + bK, u.N, u.K, u.K)` : `load_b(bBase, k0 + bK, n0 + bN, u.K, u.N, u.N)`;
  const bStore = c.transB
    ? [0, 1, 2, 3].map((j) => `Bs[s + (bK + ${j}u) * ${MQ}u + bN / 4u][bN & 3u] = v[${j}];`).join("\n  ")
    : `Bs[s + bK * ${MQ}u + bN / 4u] = v;`;

  const R = c.R;
  const accs: string[] = [];
  for (let r = 0; r < R; r++) for (let i = 0; i < 4; i++) for (let q = 0; q < R; q++) accs.push(`acc_${r}_${i}_${q}`);
  // the BK steps, unrolled
  const compute: string[] = [];
  for (let k = 0; k < BK; k++) {
    for (let r = 0; r < R; r++) compute.push(`a${r} = As[s + ${k * MQ + r * 16}u + ty];`);
    for (let q = 0; q < R; q++) compute.push(`b${q} = Bs[s + ${k * MQ + q * 16}u + tx];`);
    for (let r = 0; r < R; r++)
      for (let i = 0; i < 4; i++) for (let q = 0; q < R; q++) compute.push(`acc_${r}_${i}_${q} = acc_${r}_${i}_${q} + a${r}[${i}] * b${q};`);
  }
  const stores: string[] = [];
  for (let r = 0; r < R; r++) {
    for (let i = 0; i < 4; i++) {
      stores.push(`row = m0 + ${r * 64 + i}u + ty * 4u;`);
      for (let q = 0; q < R; q++) {
        const acc = `acc_${r}_${i}_${q}`;
        stores.push(`col = n0 + ${q * 64}u + tx * 4u;`);
        if (c.vecOut) {
          const body = `o = (oBase + row * u.N + col) / 4u; if (u.accumulate != 0u) { out[o] = out[o] + ${acc}; } else { out[o] = ${acc}; }`;
          stores.push(c.check ? `if (row < u.M && col < u.N) { ${body} }` : `{ ${body} }`);
        } else {
          stores.push(`if (row < u.M) {`);
          for (let j = 0; j < 4; j++) {
            stores.push(
              `  if (col + ${j}u < u.N) { o = oBase + row * u.N + col + ${j}u; out[o] = select(0.0, out[o], u.accumulate != 0u) + ${acc}[${j}]; }`,
            );
          }
          stores.push(`}`);
        }
      }
    }
  }

  return {
    label: `matmul${BM}${c.transA ? "T" : "N"}${c.transB ? "T" : "N"}`,
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
var<workgroup> As: array<vec4<f32>, ${2 * SZ}>;
var<workgroup> Bs: array<vec4<f32>, ${2 * SZ}>;
${loader("a", c.vecA, c.check)}
${loader("b", c.vecB, c.check)}
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let tx = lid % 16u;
  let ty = lid / 16u;
  let m0 = wid.y * ${BM}u;
  let n0 = wid.x * ${BM}u;
  let aBase = wid.z * u.sA;
  let bBase = wid.z * u.sB;
  let oBase = wid.z * u.sO;
  ${aCoords}
  ${bCoords}
  ${accs.map((a) => `var ${a} = vec4<f32>(0.0);`).join("\n  ")}
  var a0: vec4<f32>; var b0: vec4<f32>;${R === 2 ? " var a1: vec4<f32>; var b1: vec4<f32>;" : ""}
  let nTiles = (u.K + ${BK - 1}u) / ${BK}u;
  var ra = vec4<f32>(0.0);
  var rb = vec4<f32>(0.0);
  if (nTiles > 0u) {
    let k0 = 0u;
    ra = ${aLoad};
    rb = ${bLoad};
    let s = 0u;
    var v = ra;
    ${aStore}
    v = rb;
    ${bStore}
  }
  workgroupBarrier();
  for (var t = 0u; t < nTiles; t++) {
    let more = t + 1u < nTiles;
    if (more) {
      let k0 = (t + 1u) * ${BK}u;
      ra = ${aLoad};
      rb = ${bLoad};
    }
    {
      let s = (t & 1u) * ${SZ}u;
      ${compute.join("\n      ")}
    }
    if (more) {
      let s = ((t + 1u) & 1u) * ${SZ}u;
      var v = ra;
      ${aStore}
      v = rb;
      ${bStore}
    }
    workgroupBarrier();
  }
  var row: u32; var col: u32; var o: u32;
  ${stores.join("\n  ")}
}`,
  };
}

export function matmulKernels(ctx: GpuContext): Pick<CoreKernels<S>, "matmul"> {
  return {
    matmul(out, a, b, d: MatmulDims) {
      if (routeMatmul(ctx, out, a, b, d)) return; // half-precision weights and M = 1: matmul_half.ts
      const { M, N, K, transA, transB } = d;
      const batch = d.batch ?? 1;
      if (M === 0 || N === 0 || batch === 0) return;
      const sA = d.strideA ?? M * K;
      const sB = d.strideB ?? K * N;
      const sO = d.strideOut ?? M * N;
      // 128-wide tiles when there are enough of them to fill a large GPU, else 64
      const tiles128 = Math.ceil(M / 128) * Math.ceil(N / 128) * batch;
      const R = M > 64 && N > 64 && tiles128 >= 128 ? 2 : 1;
      const BM = 64 * R;
      const BK = R === 2 ? 8 : 16;
      const aligned = (dim: number, stride: number) => dim % 4 === 0 && (batch === 1 || stride % 4 === 0);
      const c: Config = {
        R,
        BK,
        transA,
        transB,
        vecA: aligned(transA ? M : K, sA),
        vecB: aligned(transB ? K : N, sB),
        vecOut: aligned(N, sO),
        check: M % BM !== 0 || N % BM !== 0 || K % BK !== 0,
      };
      const key = `matmul:${R}:${BK}:${+transA}${+transB}:${+c.vecA}${+c.vecB}${+c.vecOut}:${+c.check}`;
      const p = ctx.pipeline(key, () => matmulDef(c));
      ctx.dispatch(p, [out, a, b], [M, N, K, sA, sB, sO, d.accumulate ? 1 : 0], [Math.ceil(N / BM), Math.ceil(M / BM), batch]);
    },
  };
}
