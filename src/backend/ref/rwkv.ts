/** Reference rwkv kernels (see kernels_rwkv.ts). */
export {};
