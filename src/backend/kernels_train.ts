/** Training kernels: optimizer updates and gradient norms. Conventions as in kernels.ts. */
// eslint-disable-next-line @typescript-eslint/no-empty-interface, @typescript-eslint/no-unused-vars
export interface TrainKernels<S> {}
