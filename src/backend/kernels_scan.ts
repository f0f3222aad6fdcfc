/** State-space kernels: causal depthwise conv1d, the Mamba selective scan, Mamba-2 SSD, Gated DeltaNet. Conventions as in kernels.ts. */
// eslint-disable-next-line @typescript-eslint/no-empty-interface, @typescript-eslint/no-unused-vars
export interface ScanKernels<S> {}
