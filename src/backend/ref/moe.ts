/** Reference moe kernels (see kernels_moe.ts). */
export {};
