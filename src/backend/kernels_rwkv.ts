/** RWKV kernels: the WKV-4 recurrence and the RWKV-7 generalized delta rule. Conventions as in kernels.ts. */
// eslint-disable-next-line @typescript-eslint/no-empty-interface, @typescript-eslint/no-unused-vars
export interface RwkvKernels<S> {}
