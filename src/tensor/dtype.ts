/**
 * Element types. Compute is float32 everywhere; f16/bf16 exist for weights kept in half
 * precision, i32 for token ids and indices.
 */
export type DType = "f32" | "f16" | "bf16" | "i32";

export const DTYPE_BYTES: Record<DType, number> = { f32: 4, f16: 2, bf16: 2, i32: 4 };

export type HostArray = Float32Array | Float64Array | Uint16Array | Int32Array;

export function isFloat(dtype: DType): boolean {
  return dtype !== "i32";
}
