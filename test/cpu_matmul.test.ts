/**
 * cpu matmul against the reference: every transA / transB / accumulate combination on ragged
 * shapes that cross the kernel's blocking edges (MR 4, NR 8, KC 256, MC 128, NC 1024), the
 * small-M (matrix-vector) path (with its f16 shortcuts), K = 0, and the batched form with broadcast operands.
 */
import { test } from "node:test";
import { refKernels as ref } from "../src/backend/ref/index.js";
import { Rng } from "../src/util/rng.js";
import { cpuBackends, randf, hostCopy, close, release, type Cpu } from "./cpu_helpers.js";
import type { MatmulDims } from "../src/backend/kernels.js";
import { f32ToF16, f32ToBf16 } from "../src/util/half.js";

const cpus = cpuBackends();
const rng = new Rng(5);

function check({ be, label }: Cpu, d: MatmulDims): void {
  const batch = d.batch ?? 1;
  const sA = d.strideA ?? d.M * d.K;
  const sB = d.strideB ?? d.K * d.N;
  const sO = d.strideOut ?? d.M * d.N;
  const a = randf(be, Math.max(1, (batch - 1) * sA + d.M * d.K), rng);
  const nb = Math.max(1, (batch - 1) * sB + d.K * d.N);
  const kind = d.bDtype ?? "f32";
  const b = kind === "f32" ? randf(be, nb, rng) : (be.allocate(kind, nb) as Uint16Array);
  if (b instanceof Uint16Array) for (let i = 0; i < nb; i++) b[i] = (kind === "f16" ? f32ToF16 : f32ToBf16)(rng.normal());
  const out = randf(be, (batch - 1) * sO + d.M * d.N, rng);
  const want = hostCopy(out);
  ref.matmul(want, a, b, d);
  be.kernels.matmul(out, a, b, d);
  const name = `${label} M=${d.M} N=${d.N} K=${d.K} tA=${d.transA} tB=${d.transB} acc=${d.accumulate} batch=${batch} b=${kind}`;
  close(out, want, 1e-6 * Math.max(1, Math.sqrt(d.K) / 4), name);
  release(be, a, b, out);
}

const SHAPES: [number, number, number][] = [
  [1, 1, 1],
  [3, 31, 33],
  [4, 257, 32], // small M
  [1, 255, 257], // matrix-vector
  [5, 9, 300], // K past one KC slice
  [33, 32, 31],
  [140, 20, 17], // M past one MC block
  [6, 1100, 7], // N past one NC block
  [32, 1, 65],
  [0, 5, 3],
];

test("matmul: every transpose and accumulate combination on ragged shapes", () => {
  for (const cpu of cpus) {
    for (const [M, N, K] of SHAPES) {
      for (const transA of [false, true]) {
        for (const transB of [false, true]) {
          for (const accumulate of [false, true]) check(cpu, { M, N, K, transA, transB, accumulate });
        }
      }
    }
  }
});

test("matmul: K = 0 writes zeros (or leaves the output when accumulating)", () => {
  for (const cpu of cpus) {
    for (const accumulate of [false, true]) check(cpu, { M: 7, N: 9, K: 0, transA: false, transB: true, accumulate });
  }
});

test("matmul: batched, with strides and a broadcast operand", () => {
  for (const cpu of cpus) {
    for (const batch of [1, 2, 5]) {
      for (const [M, N, K] of [[3, 17, 9], [33, 8, 40]] as const) {
        for (const transB of [false, true]) {
          check(cpu, { M, N, K, transA: false, transB, accumulate: false, batch });
          check(cpu, { M, N, K, transA: true, transB, accumulate: true, batch, strideB: 0 }); // one b for every batch
          check(cpu, { M, N, K, transA: false, transB, accumulate: false, batch, strideA: M * K + 3, strideOut: M * N + 5 });
        }
      }
    }
  }
});

test("matmul: f16 and bf16 weights (b widened to f32 as it is read)", () => {
  for (const cpu of cpus) {
    for (const bDtype of ["f16", "bf16"] as const) {
      for (const [M, N, K] of [[1, 257, 33], [3, 31, 300], [33, 40, 31], [130, 9, 18]] as const) {
        for (const transB of [false, true]) {
          for (const accumulate of [false, true]) check(cpu, { M, N, K, transA: M === 33, transB, accumulate, bDtype });
        }
      }
      check(cpu, { M: 5, N: 12, K: 7, transA: false, transB: true, accumulate: false, bDtype, batch: 3, strideB: 0 });
    }
  }
});

test("matvec with f16 weights (M <= 4, W^T): ragged K, activations past 2^16, subnormal, Inf and NaN weights", () => {
  for (const { be, label } of cpus) {
    for (const [M, N, K] of [[1, 1, 1], [1, 5, 7], [2, 9, 8], [3, 13, 9], [1, 6, 24], [1, 11, 47], [4, 31, 33], [1, 257, 257], [2, 64, 768]] as const) {
      for (const variant of ["normal", "large activations", "subnormal weights", "Inf and NaN weights"] as const) {
        const a = randf(be, M * K, rng);
        if (variant === "large activations") a[rng.int(0, M * K)] = 70000 * (rng.uniform() < 0.5 ? -1 : 1);
        const b = be.allocate("f16", N * K) as Uint16Array;
        for (let i = 0; i < b.length; i++) b[i] = f32ToF16(variant === "subnormal weights" && i % 3 === 0 ? rng.normal() * 3e-6 : rng.normal());
        if (variant === "Inf and NaN weights" && N > 4) {
          b[rng.int(0, K)] = 0x7c00; // +Inf in row 0
          b[4 * K + rng.int(0, K)] = 0x7e01; // a NaN in row 4
        }
        const out = randf(be, M * N, rng);
        const want = hostCopy(out);
        for (const accumulate of [false, true]) {
          const d: MatmulDims = { M, N, K, transA: false, transB: true, accumulate, bDtype: "f16" };
          ref.matmul(want, a, b, d);
          be.kernels.matmul(out, a, b, d);
          close(out, want, 1e-6 * Math.max(1, Math.sqrt(K) / 4), `${label} f16 matvec ${variant} M=${M} N=${N} K=${K} acc=${accumulate}`);
        }
        release(be, a, b, out);
      }
    }
  }
});
