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

export function kernelModule(): Promise<WebAssembly.Module> {
  if (!compiled) {
    const text = atob(WASM_BASE64);
    const bytes = new Uint8Array(text.length);
    for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
    compiled = WebAssembly.compile(bytes);
  }
  return compiled;
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
