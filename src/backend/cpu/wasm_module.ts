/**
 * The compiled kernel module. The binaries are embedded as base64 (scripts/build-wasm.mjs
 * generates wasm_binary.gen.ts from assembly/), so Node, bundles and browsers load them alike.
 * A module is compiled once per process and instruction set; each thread instantiates it over
 * the shared memory.
 *
 * Two instruction sets (scripts/build-wasm.mjs ISAS): `simd128`, and `relaxed` (simd128 plus
 * relaxed SIMD, whose fused multiply-add the kernels use where the CPU has one). `relaxed` is
 * the default wherever the engine takes it: a matrix-vector product over f16 weights, bound by
 * the vector ALUs (5 integer ops to widen 8 weights, then the products), streams 1.5x the weights
 * a second with one fused op per product instead of a multiply and an add (bench notes). Node 20
 * has relaxed SIMD behind a V8 flag, which is set here before compiling; Chrome has it on.
 * Which one runs is part of the backend's description (CpuBackend.describe), never silent.
 */
import { WASM_SIMD128_BASE64, WASM_RELAXED_BASE64 } from "./wasm_binary.gen.js";
import { SeqlabError } from "../../util/errors.js";
import { CPU_ISAS, type CpuIsa } from "./isa.js";

/** A kernel export: (tid, nth, ...pointers and dims) or a host helper. */
export type WasmFn = (...args: number[]) => number;
export type WasmExports = Record<string, WasmFn>;

const compiled = new Map<CpuIsa, Promise<WebAssembly.Module>>();

async function nodeV8(): Promise<typeof import("node:v8") | null> {
  if (typeof process === "undefined" || !process.versions?.node) return null;
  return import("node:v8");
}

/**
 * In Node, compile every wasm function with the optimising compiler up front (V8 --no-liftoff).
 * By default V8 starts functions in its baseline compiler and tiers up hot ones later, but a
 * wasm call never switches tiers while it runs: a first long kernel call (a prefill, a verify
 * run) would run entirely as baseline code, 3-5x slower (measured: 768^3 matmul 115 ms first
 * call vs 20 ms). The flag only changes how wasm is compiled; it applies to the process.
 */
async function preferOptimizedWasm(): Promise<void> {
  (await nodeV8())?.setFlagsFromString("--no-liftoff");
}

/**
 * A module of one function, (v128, v128, v128) -> f32x4.relaxed_madd: whether it validates is
 * whether this engine runs relaxed SIMD.
 */
const RELAXED_PROBE = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
  0x01, 0x08, 0x01, 0x60, 0x03, 0x7b, 0x7b, 0x7b, 0x01, 0x7b, // type: (v128 v128 v128) -> v128
  0x03, 0x02, 0x01, 0x00, // one function of that type
  0x0a, 0x0d, 0x01, 0x0b, 0x00, 0x20, 0x00, 0x20, 0x01, 0x20, 0x02, 0xfd, 0x85, 0x02, 0x0b, // body
]);

let relaxedSupport: Promise<boolean> | null = null;

/** Whether relaxed SIMD runs here, after switching it on in Node versions that keep it behind a flag. */
export function relaxedSimdAvailable(): Promise<boolean> {
  relaxedSupport ??= (async () => {
    if (WebAssembly.validate(RELAXED_PROBE)) return true;
    (await nodeV8())?.setFlagsFromString("--experimental-wasm-relaxed-simd");
    return WebAssembly.validate(RELAXED_PROBE);
  })();
  return relaxedSupport;
}

/** The instruction set to run: `requested`, or relaxed where available and simd128 elsewhere. */
export async function chooseIsa(requested?: CpuIsa): Promise<CpuIsa> {
  if (requested !== undefined && !CPU_ISAS.includes(requested)) {
    throw new SeqlabError(`cpu backend: isa must be one of ${CPU_ISAS.join(", ")}, got ${String(requested)}`);
  }
  if (requested === "simd128") return requested; // runs wherever wasm SIMD does: no probe, no V8 flag
  const relaxed = await relaxedSimdAvailable();
  if (requested === "relaxed" && !relaxed) throw new SeqlabError("cpu backend: isa relaxed asked for, but this WebAssembly engine has no relaxed SIMD (use simd128)");
  return relaxed ? "relaxed" : "simd128";
}

export function kernelModule(isa: CpuIsa): Promise<WebAssembly.Module> {
  let m = compiled.get(isa);
  if (!m) {
    m = preferOptimizedWasm().then(() => compileEmbedded(isa === "relaxed" ? WASM_RELAXED_BASE64 : WASM_SIMD128_BASE64));
    compiled.set(isa, m);
  }
  return m;
}

function compileEmbedded(base64: string): Promise<WebAssembly.Module> {
  const text = atob(base64);
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
