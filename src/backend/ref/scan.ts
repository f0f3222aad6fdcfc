/** Reference scan kernels (see kernels_scan.ts). */
export {};
