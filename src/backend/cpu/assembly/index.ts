/** The seqlab WebAssembly kernel module: every export is a kernel or a helper the host calls. */
export * from "./elementwise";
export * from "./matmul";
export * from "./norm";
export * from "./loss";
export { attentionForward, attentionNaiveForward, attentionPackKV, attentionPackedFloats } from "./attention";
export { attentionRowDot, attentionNaiveRowDot, attentionBackward } from "./attention_backward";
export { attentionScratchFloats, attentionQueryBlock } from "./attention_common";
export { attentionDecode, attentionDecodeCombine, attentionDecodePartialFloats, attentionDecodeScratchFloats, attentionDecodeRanges } from "./attention_decode";
export { simdPeak, simdPeakScratchBytes } from "./peak";
export * from "./mixers";

/** First byte after the module's static data; the host allocator starts above it. */
export function heapBase(): usize {
  return __heap_base;
}
