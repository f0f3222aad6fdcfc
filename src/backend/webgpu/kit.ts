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
import { grid1d } from "./context.js";
import type { GpuTensorBuffer } from "./pool.js";
import { LINEAR_INDEX } from "./wgsl.js";

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

const ZERO_WORDS: KernelDef = {
  label: "zeroWords",
  uniforms: [["n", "u32"]],
  bindings: [["x", "write", "array<u32>"]],
  body: `${LINEAR_INDEX(256)}
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = linearIndex(gid, nwg);
  if (i < u.n) { x[i] = 0u; }
}`,
};

/** Record the zeroing of the first n 4-byte words of x (a dispatch: it stays in the compute pass). */
export function zeroWords(ctx: GpuContext, x: Buf, n: number): void {
  if (n > 0) ctx.dispatch(ctx.pipeline("zeroWords", () => ZERO_WORDS), [x], [n], grid1d(n, 256));
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
 * Sums over aligned segments of SEG consecutive threads (a power of two dividing `wg`, fixed when
 * the kernel is generated), for kernels that sum every step of a loop: butterflies of subgroup
 * shuffles inside the first `lanes` = min(SEG, subgroupWidth) threads, no barrier; only where a
 * segment spans several subgroups, one exchange of the partials through workgroup memory (two
 * barriers, against 2 + log2(SEG) for segmentSum). Every thread gets its segment's sum, the same
 * bits in every thread (each butterfly level adds a + b in one lane and b + a in its partner).
 * Assumes subgroups are runs of consecutive local indices, as on the drivers this runs on (the
 * attention kernels assume it too). Without subgroups (subgroupWidth < 2), every thread sums its
 * segment's SEG values from workgroup memory in order.
 * Every thread of the workgroup must call it; the kernel must enable "subgroups" when
 * segmentLanes(seg, subgroupWidth) > 1.
 */
export function segmentSumLanes(name: string, wg: number, type: "f32" | "vec2<f32>", seg: number, subgroupWidth: number): string {
  const lanes = segmentLanes(seg, subgroupWidth);
  const butterflies = [];
  for (let m = 1; m < lanes; m *= 2) butterflies.push(`s += subgroupShuffleXor(s, ${m}u);`);
  const exchange =
    seg === lanes
      ? ""
      : /* wgsl */ `
  ${name}_red[lid] = s;
  workgroupBarrier();
  let base = lid - lid % ${seg}u;
  s = ${type}(0.0);
  for (var j = 0u; j < ${seg / lanes}u; j++) { s += ${name}_red[base + j * ${lanes}u]; }
  workgroupBarrier();`;
  return /* wgsl */ `
${seg === lanes ? "" : `var<workgroup> ${name}_red: array<${type}, ${wg}>;`}
fn ${name}(v: ${type}, lid: u32) -> ${type} {
  var s = v;
  ${butterflies.join("\n  ")}${exchange}
  return s;
}
`;
}

/** Threads of a segmentSumLanes segment summed by subgroup shuffles (1: none). */
export function segmentLanes(seg: number, subgroupWidth: number): number {
  return subgroupWidth >= 2 ? Math.min(seg, subgroupWidth) : 1;
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
