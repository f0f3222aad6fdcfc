/**
 * Products with half-precision weights (MatmulDims.bDtype "f16" / "bf16": b holds the weights'
 * bits, two to a u32 word) on the GPU: checked against the CPU reference on the widened weights,
 * and timed on the default path (tensor cores where the adapter has them) against the half-weight
 * tiled kernel (matmul_half.ts), the path they took before.
 */
import type { WebGpuBackend } from "../../backend/webgpu/index.js";
import type { MatmulDims, WeightDtype } from "../../backend/kernels.js";
import { refKernels } from "../../backend/ref/index.js";
import { routeMatmul } from "../../backend/webgpu/matmul_half.js";
import { f16ToF32, f32ToF16, bf16ToF32, f32ToBf16 } from "../../util/half.js";
import { compare, filled, randn, timeIt, type Check, type Result } from "./timing.js";
import { matmulShapeName, type MatmulShape } from "./dense.js";

type Half = Exclude<WeightDtype, "f32">;

/** n normal values rounded to `dtype`: their bits packed two to a word (as a Float32Array view, for upload) and their f32 values. */
function halfWeights(n: number, dtype: Half): { packed: Float32Array; values: Float32Array } {
  const [enc, dec] = dtype === "f16" ? [f32ToF16, f16ToF32] : [f32ToBf16, bf16ToF32];
  const bits = new Uint16Array(n + (n % 2));
  const values = new Float32Array(n);
  randn(n).forEach((v, i) => {
    bits[i] = enc(v);
    values[i] = dec(bits[i]);
  });
  return { packed: new Float32Array(bits.buffer), values };
}

/** The default path's product with half weights against the reference on the widened weights. */
export async function checkMatmulHalf(be: WebGpuBackend, d: MatmulDims, dtype: Half): Promise<Check> {
  const w = halfWeights(d.K * d.N, dtype);
  const errs = await compare(
    be,
    [randn(d.M * d.K), w.packed],
    [d.M * d.N],
    ([out], [a]) => refKernels.matmul(out, a, w.values, d),
    ([out], [a, b]) => be.kernels.matmul(out, a, b, { ...d, bDtype: dtype }),
  );
  return { kernel: "matmul", variant: `default ${dtype} weights`, shape: JSON.stringify(d), relErr: errs, ok: errs.every((e) => e < 1e-5) };
}

/** A product with half weights on the default path, or on the half-weight tiled kernel. */
export async function benchMatmulHalf(be: WebGpuBackend, s: MatmulShape, dtype: Half, path: "default" | "half"): Promise<Result> {
  const a = filled(be, s.M * s.K, 0.5);
  const b = be.upload("f32", halfWeights(s.K * s.N, dtype).packed);
  const out = filled(be, s.M * s.N, 0);
  const d: MatmulDims = { ...s, accumulate: false, bDtype: dtype };
  const flops = 2 * s.M * s.N * s.K;
  const record = path === "default" ? () => be.kernels.matmul(out, a, b, d) : () => routeMatmul(be.ctx, out, a, b, d);
  const { seconds, timing } = await timeIt(be, record, 5);
  for (const h of [a, b, out]) be.release(h);
  return { section: "matmul", name: `matmul ${dtype} w`, shape: matmulShapeName(s), variant: path === "half" ? "half-weight tiles" : undefined, ms: seconds * 1e3, rate: flops / seconds / 1e12, unit: "TFLOP/s", iterations: 5, timing };
}
