/**
 * Small pieces the mixer kernel families share: launching a cached pipeline, temporary buffers
 * that live for one kernel call, stand-ins for absent optional buffers, and the WGSL reductions
 * over a workgroup.
 *
 * Optional buffers. A WGSL kernel's bindings are fixed, so an absent (null) input or output is
 * bound to a small temporary buffer and the kernel is specialised on a compile-time flag
 * (`const HAS_Z = false;`), which removes every access to it.
 */
import type { GpuContext, KernelDef } from "./context.js";
import type { GpuTensorBuffer } from "./pool.js";

export type S = GpuTensorBuffer;
export type Buf = GpuTensorBuffer | GPUBuffer;

/** Temporary GPU buffers of one kernel call, released once its dispatches are recorded. */
export class Temps {
  private held: GPUBuffer[] = [];

  constructor(private ctx: GpuContext) {}

  /** A buffer of at least `floats` 4-byte words. */
  get(floats: number): GPUBuffer {
    const b = this.ctx.pool.acquire(Math.max(4, floats * 4));
    this.held.push(b);
    return b;
  }

  /** `s`, or a stand-in buffer when it is absent. */
  or(s: S | null): Buf {
    return s ?? this.get(4);
  }

  release(): void {
    for (const b of this.held) this.ctx.pool.release(b);
    this.held = [];
  }
}

/** Record one dispatch of the pipeline `key` (built by `make` the first time). */
export function launch(ctx: GpuContext, key: string, make: () => KernelDef, bufs: Buf[], uniforms: number[], grid: [number, number?, number?]): void {
  ctx.dispatch(ctx.pipeline(key, make), bufs, uniforms, grid);
}

/** WGSL `const NAME: bool = ...;` lines for presence flags; also the part of a pipeline key they determine. */
export function flags(f: Record<string, boolean>): { wgsl: string; key: string } {
  const names = Object.keys(f).sort();
  return {
    wgsl: names.map((n) => `const ${n}: bool = ${f[n]};`).join("\n") + "\n",
    key: names.map((n) => (f[n] ? "1" : "0")).join(""),
  };
}

/** The smallest power of two >= n. */
export function pow2(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}

/**
 * Tree sums in workgroup memory over segments of `seg` threads (a power of two dividing `wg`):
 * segSum(v, lid) returns to every thread the sum of v over its segment (threads lid with equal
 * lid / seg). Every thread of the workgroup must call it (it contains barriers).
 */
export function segmentSum(name: string, wg: number, type: "f32" | "vec2<f32>" | "vec4<f32>"): string {
  return /* wgsl */ `
var<workgroup> ${name}_red: array<${type}, ${wg}>;
fn ${name}(v: ${type}, lid: u32, seg: u32) -> ${type} {
  ${name}_red[lid] = v;
  workgroupBarrier();
  var s = seg >> 1u;
  loop {
    if (s == 0u) { break; }
    if ((lid % seg) < s) { ${name}_red[lid] = ${name}_red[lid] + ${name}_red[lid + s]; }
    workgroupBarrier();
    s = s >> 1u;
  }
  let r = ${name}_red[lid - lid % seg];
  workgroupBarrier();
  return r;
}
`;
}
