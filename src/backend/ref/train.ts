/** Reference train kernels (see kernels_train.ts). */
export {};
