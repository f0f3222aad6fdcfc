/**
 * The compiled kernel module. The binary is embedded as base64 (scripts/build-wasm.mjs
 * generates wasm_binary.gen.ts from assembly/), so Node, bundles and browsers load it alike.
 * It is compiled once per process; each thread instantiates it over the shared memory.
 */
import { WASM_BASE64 } from "./wasm_binary.gen.js";

/** A kernel export: (tid, nth, ...pointers and dims) or a host helper. */
export type WasmFn = (...args: number[]) => number;
export type WasmExports = Record<string, WasmFn>;

let compiled: Promise<WebAssembly.Module> | null = null;

/**
 * In Node, compile every wasm function with the optimising compiler up front (V8 --no-liftoff).
 * By default V8 starts functions in its baseline compiler and tiers up hot ones later, but a
 * wasm call never switches tiers while it runs: a first long kernel call (a prefill, a verify
 * run) would run entirely as baseline code, 3-5x slower (measured: 768^3 matmul 115 ms first
 * call vs 20 ms). The flag only changes how wasm is compiled; it applies to the process.
 */
async function preferOptimizedWasm(): Promise<void> {
  if (typeof process === "undefined" || !process.versions?.node) return;
  const v8 = await import("node:v8");
  v8.setFlagsFromString("--no-liftoff");
}

export function kernelModule(): Promise<WebAssembly.Module> {
  if (!compiled) compiled = preferOptimizedWasm().then(compileEmbedded);
  return compiled;
}

function compileEmbedded(): Promise<WebAssembly.Module> {
  const text = atob(WASM_BASE64);
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  return WebAssembly.compile(bytes);
}

export function instantiate(module: WebAssembly.Module, memory: WebAssembly.Memory): WasmExports {
  const instance = new WebAssembly.Instance(module, {
    env: {
      memory,
      abort: () => {
        throw new Error("internal: wasm kernel aborted");
      },
    },
  });
  return instance.exports as unknown as WasmExports;
}
