/** Differentiable tensor ops: the vocabulary nn/ modules are written in. */
export * from "./elementwise.js";
export * from "./shape.js";
export * from "./linalg.js";
export * from "./norm.js";
export * from "./embedding.js";
export * from "./rope.js";
export * from "./attention.js";
export * from "./loss.js";
export * from "./rwkv.js";
export * from "./scan.js";
export * from "./moe.js";
export * from "./deltanet.js";
