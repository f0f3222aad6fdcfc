/**
 * The instruction sets the cpu backend's kernels are built for (scripts/build-wasm.mjs ISAS):
 * `simd128`, WebAssembly's 128-bit SIMD, which every engine with wasm SIMD runs; `relaxed`, the
 * same plus relaxed SIMD, whose f32x4.relaxed_madd is one fused multiply-add where the CPU has
 * one. Kept apart from wasm_module.ts so that options and flags name them without loading the
 * embedded binaries.
 */
export type CpuIsa = "simd128" | "relaxed";
export const CPU_ISAS: readonly CpuIsa[] = ["simd128", "relaxed"];
