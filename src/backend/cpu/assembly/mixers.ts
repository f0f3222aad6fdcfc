/** The mixer kernels' exports (state-space scans, RWKV, mixture of experts, Gated DeltaNet, optimizers). */
export { reduceRows } from "./mixer_common";
export * from "./conv";
export * from "./scan";
export * from "./ssd";
export * from "./optim";
export * from "./rwkv4";
export * from "./rwkv7";
export * from "./moe";
export * from "./deltanet";
