/** Mixture-of-experts kernels: routing (softmax, top-k) and token grouping by expert. Conventions as in kernels.ts. */
// eslint-disable-next-line @typescript-eslint/no-empty-interface, @typescript-eslint/no-unused-vars
export interface MoeKernels<S> {}
