/**
 * The WebGPU runtime under the kernels: a pipeline cache, a uniform arena, and one command
 * encoder into which kernels record their dispatches. Kernels stay synchronous (the Kernels
 * interface): they only enqueue. Work is submitted at flush(): before a read or a host write,
 * at sync(), when the arena is full, and every FLUSH_EVERY commands, so that the GPU starts on
 * the first part of a step while the host is still recording the rest.
 *
 * Uniforms (dims, scalars) of every dispatch in a window go into one CPU-side arena, written to
 * one GPU buffer right before the window's submit. Queue operations run in order, so the next
 * window's arena write happens after the previous window's commands have read theirs.
 *
 * Bind groups are cached: the uniform binding takes the dispatch's arena slot as a dynamic
 * offset, so a bind group depends only on the pipeline and its storage buffers, and decoding,
 * which replays the same kernels on the same pooled buffers token after token, creates none
 * after the first few tokens (creating one cost 20-35 us of CPU, most of a dispatch's cost).
 */
import { GpuOutOfMemoryError, SeqlabError } from "../../util/errors.js";
import type { AcquiredDevice } from "./device.js";
import { BufferUsage, MapMode, ShaderStage } from "./device.js";
import { BufferPool, sizeClass, GpuTensorBuffer } from "./pool.js";

export type Access = "read" | "write";
export type UniformType = "u32" | "i32" | "f32";

/** A compute kernel before compilation: its uniforms, storage bindings and WGSL body. */
export interface KernelDef {
  label: string;
  uniforms: [name: string, type: UniformType][];
  /** storage bindings in order: name, access ("write" is read_write), WGSL type */
  bindings: [name: string, access: Access, type: string][];
  /** WGSL after the generated declarations; declares `@compute ... fn main` */
  body: string;
  /** WGSL extensions the body uses (`enable` directives, e.g. "subgroups") */
  enables?: string[];
}

export interface Pipeline {
  def: KernelDef;
  pipeline: GPUComputePipeline;
  layout: GPUBindGroupLayout;
  /** distinguishes pipelines in bind-group cache keys */
  id: number;
  /** (read binding, write binding) pairs: the ones one buffer may not fill at once */
  readWrite: [number, number][];
}

/** bytes of uniforms one dispatch may use (minUniformBufferOffsetAlignment is at most 256) */
const UNIFORM_SLOT = 256;
const UNIFORM_SLOTS = 1024;
/** bind groups kept; the cache is emptied when full (entries of destroyed buffers never hit again) */
const BIND_GROUP_CACHE = 8192;

/**
 * Commands per submission while recording. Until a submit the GPU idles while the host records,
 * and a decoding step is hundreds of small dispatches (340 a Mamba-130M token) behind one read:
 * submitting every 64 lets the GPU run the first layers while the host records the rest. H200,
 * decode tok/s (median step), one submission a token -> every 64 commands: Mamba-130M 122 -> 151
 * after 16 tokens, 133 -> 159 after 2048; Llama 768 x 24 105 -> 156 and 71 -> 114-125 (every 16,
 * 32 and 128 in the same run: 64 best or within noise of it).
 */
const FLUSH_EVERY = 64;

/** Workgroups per grid dimension (WebGPU's portable maximum). */
export const MAX_GRID = 65535;

/** Generated WGSL: the uniform struct and the bindings of a kernel, then its body. */
export function wgslSource(def: KernelDef): string {
  const fields = def.uniforms.length > 0 ? def.uniforms.map(([n, t]) => `${n}: ${t}`).join(", ") : "unused: u32";
  const lines = [...(def.enables ?? []).map((e) => `enable ${e};`), `struct Uniforms { ${fields} }`, `@group(0) @binding(0) var<uniform> u: Uniforms;`];
  def.bindings.forEach(([name, access, type], i) => {
    lines.push(`@group(0) @binding(${i + 1}) var<storage, ${access === "write" ? "read_write" : "read"}> ${name}: ${type};`);
  });
  return lines.join("\n") + "\n" + def.body;
}

export class GpuContext {
  readonly device: GPUDevice;
  readonly limits: GPUSupportedLimits;
  readonly pool: BufferPool;
  private pipelines = new Map<string, Pipeline>();
  private encoder: GPUCommandEncoder;
  private pass: GPUComputePassEncoder | null = null;
  private recorded = 0;
  private arena: GPUBuffer;
  private arenaHost = new ArrayBuffer(UNIFORM_SLOT * UNIFORM_SLOTS);
  private arenaF32 = new Float32Array(this.arenaHost);
  private arenaU32 = new Uint32Array(this.arenaHost);
  private arenaI32 = new Int32Array(this.arenaHost);
  /** the pipeline last set in the open pass (setPipeline is skipped when it repeats) */
  private passPipeline: GPUComputePipeline | null = null;
  private slots = 0;
  private staging = new Map<number, GPUBuffer[]>();
  private bindGroups = new Map<string, GPUBindGroup>();
  private bufferIds = new WeakMap<GPUBuffer, number>();
  private nextBufferId = 0;
  private lostInfo: string | null = null;
  /** the first uncaptured device error since the last check: its text, and whether it was an out-of-memory one */
  private firstError: { message: string; outOfMemory: boolean } | null = null;
  /** dispatches recorded since creation (tests and benchmarks read it) */
  dispatches = 0;
  submits = 0;
  /** bind groups created (the rest of the dispatches found theirs in the cache) */
  bindGroupsCreated = 0;
  /** submit once this many commands are recorded (0: only at reads, host writes, sync; see FLUSH_EVERY) */
  flushEvery = FLUSH_EVERY;
  /** called with the kernel's label before each dispatch is recorded (bench gpu's profile section) */
  beforeDispatch: ((label: string) => void) | null = null;

  constructor(readonly acquired: AcquiredDevice) {
    this.device = acquired.device;
    this.limits = this.device.limits;
    this.pool = new BufferPool(this.device, 2 ** 30);
    this.encoder = this.device.createCommandEncoder();
    this.arena = this.device.createBuffer({ size: this.arenaHost.byteLength, usage: BufferUsage.UNIFORM | BufferUsage.COPY_DST });
    this.device.lost.then((info) => {
      this.lostInfo = `${info.reason}${info.message ? `: ${info.message.split("\n")[0]}` : ""}`;
    });
    this.device.onuncapturederror = (ev: GPUUncapturedErrorEvent) => {
      const message = ev.error.message.split("\n").slice(0, 3).join(" | ");
      // Dawn for Node may not define the GPUOutOfMemoryError global; its class name still tells
      this.firstError ??= { message, outOfMemory: ev.error.constructor?.name === "GPUOutOfMemoryError" || /out of memory/i.test(message) };
    };
  }

  /** Throws if the device is gone or an earlier command failed; every entry point calls it. */
  check(): void {
    if (this.lostInfo !== null) throw new SeqlabError(`webgpu: the device was lost (${this.lostInfo})`);
    if (this.firstError !== null) {
      const { message, outOfMemory } = this.firstError;
      this.firstError = null;
      if (outOfMemory) throw new GpuOutOfMemoryError(`webgpu: out of GPU memory (${message})`);
      throw new Error(`internal: webgpu: ${message}`);
    }
  }

  get isLost(): boolean {
    return this.lostInfo !== null;
  }

  // ---- pipelines ----

  /** The compiled pipeline of a kernel, built once per key (kernel name + specialization). */
  pipeline(key: string, make: () => KernelDef): Pipeline {
    const hit = this.pipelines.get(key);
    if (hit) return hit;
    const def = make();
    const module = this.device.createShaderModule({ label: def.label, code: wgslSource(def) });
    const entries: GPUBindGroupLayoutEntry[] = [{ binding: 0, visibility: ShaderStage.COMPUTE, buffer: { type: "uniform", hasDynamicOffset: true } }];
    def.bindings.forEach(([, access], i) => {
      entries.push({ binding: i + 1, visibility: ShaderStage.COMPUTE, buffer: { type: access === "write" ? "storage" : "read-only-storage" } });
    });
    const layout = this.device.createBindGroupLayout({ label: def.label, entries });
    const pipeline = this.device.createComputePipeline({
      label: def.label,
      layout: this.device.createPipelineLayout({ bindGroupLayouts: [layout] }),
      compute: { module, entryPoint: "main" },
    });
    const readWrite: [number, number][] = [];
    def.bindings.forEach(([, a], i) => def.bindings.forEach(([, b], j) => a === "read" && b === "write" && readWrite.push([i, j])));
    const p = { def, pipeline, layout, id: this.pipelines.size, readWrite };
    this.pipelines.set(key, p);
    return p;
  }

  get pipelineCount(): number {
    return this.pipelines.size;
  }

  // ---- recording ----

  /**
   * Record one dispatch. `buffers` follow the kernel's binding order; `uniforms` its uniform
   * fields. An input that is also an output of the same dispatch (out = a + b with out === a)
   * is read from a copy, since WebGPU forbids one buffer as both read-only and writable storage.
   */
  dispatch(p: Pipeline, buffers: (GpuTensorBuffer | GPUBuffer)[], uniforms: number[], grid: [number, number?, number?]): void {
    this.check();
    const [gx, gy = 1, gz = 1] = grid;
    if (gx === 0 || gy === 0 || gz === 0) return;
    if (gx > MAX_GRID || gy > MAX_GRID || gz > MAX_GRID) throw new Error(`internal: webgpu: grid ${grid} of ${p.def.label} is too large`);
    if (this.beforeDispatch) this.beforeDispatch(p.def.label);
    if (this.slots === UNIFORM_SLOTS) this.flush();
    // the host work of a dispatch is most of a decoding step's cost: no closures or per-call arrays beyond bufs
    const bufs: GPUBuffer[] = new Array(buffers.length);
    for (let i = 0; i < buffers.length; i++) {
      const b = buffers[i];
      bufs[i] = b instanceof GpuTensorBuffer ? b.buffer : b;
    }
    let temps: GPUBuffer[] | null = null;
    for (const [r, w] of p.readWrite) {
      if (bufs[r] !== bufs[w]) continue;
      const copy = this.pool.acquire(bufs[r].size);
      this.endPass();
      this.encoder.copyBufferToBuffer(bufs[r], 0, copy, 0, Math.min(bufs[r].size, copy.size));
      bufs[r] = copy;
      (temps ??= []).push(copy);
    }
    const offset = this.slots * UNIFORM_SLOT;
    this.writeUniforms(p.def, uniforms, offset);
    this.slots++;
    const bindGroup = this.bindGroup(p, bufs);
    this.pass ??= this.encoder.beginComputePass();
    if (this.passPipeline !== p.pipeline) {
      this.pass.setPipeline(p.pipeline);
      this.passPipeline = p.pipeline;
    }
    this.pass.setBindGroup(0, bindGroup, [offset]);
    this.pass.dispatchWorkgroups(gx, gy, gz);
    this.recorded++;
    this.dispatches++;
    if (temps) for (const t of temps) this.pool.release(t);
    if (this.flushEvery > 0 && this.recorded >= this.flushEvery) this.flush();
  }

  /** The bind group of `p` over `bufs` (the uniform slot is a dynamic offset), cached. */
  private bindGroup(p: Pipeline, bufs: GPUBuffer[]): GPUBindGroup {
    let key = String(p.id);
    for (const b of bufs) {
      let id = this.bufferIds.get(b);
      if (id === undefined) {
        id = this.nextBufferId++;
        this.bufferIds.set(b, id);
      }
      key += "," + id;
    }
    const hit = this.bindGroups.get(key);
    if (hit) return hit;
    const maxBind = this.limits.maxStorageBufferBindingSize;
    const entries: GPUBindGroupEntry[] = [{ binding: 0, resource: { buffer: this.arena, offset: 0, size: UNIFORM_SLOT } }];
    bufs.forEach((buffer, i) => entries.push({ binding: i + 1, resource: { buffer, size: Math.min(buffer.size, maxBind - (maxBind % 16)) } }));
    const bindGroup = this.device.createBindGroup({ layout: p.layout, entries });
    if (this.bindGroups.size >= BIND_GROUP_CACHE) this.bindGroups.clear();
    this.bindGroups.set(key, bindGroup);
    this.bindGroupsCreated++;
    return bindGroup;
  }

  private writeUniforms(def: KernelDef, values: number[], offset: number): void {
    if (values.length !== def.uniforms.length) {
      throw new Error(`internal: webgpu: ${def.label} takes ${def.uniforms.length} uniforms, got ${values.length}`);
    }
    // typed views write in the platform's byte order: little-endian wherever WebGPU runs
    const base = offset >> 2;
    for (let i = 0; i < values.length; i++) {
      const v = values[i];
      const type = def.uniforms[i][1];
      if (type === "f32") this.arenaF32[base + i] = v;
      else {
        if (!Number.isInteger(v)) throw new Error(`internal: webgpu: uniform ${def.uniforms[i][0]} of ${def.label} must be an integer, got ${v}`);
        if (type === "u32") this.arenaU32[base + i] = v;
        else this.arenaI32[base + i] = v;
      }
    }
  }

  /** Record a buffer-to-buffer copy (bytes a multiple of 4). */
  copy(src: GPUBuffer, srcOffset: number, dst: GPUBuffer, dstOffset: number, bytes: number): void {
    this.check();
    if (bytes === 0) return;
    this.endPass();
    this.encoder.copyBufferToBuffer(src, srcOffset, dst, dstOffset, bytes);
    this.recorded++;
  }

  /** A marker pass that writes a GPU timestamp (benchmarks; needs the timestamp-query feature). */
  timestamp(querySet: GPUQuerySet, index: number): void {
    this.endPass();
    this.encoder.beginComputePass({ timestampWrites: { querySet, beginningOfPassWriteIndex: index } }).end();
    this.recorded++;
  }

  resolveTimestamps(querySet: GPUQuerySet, count: number, dst: GPUBuffer, dstOffset = 0): void {
    this.endPass();
    this.encoder.resolveQuerySet(querySet, 0, count, dst, dstOffset);
    this.recorded++;
  }

  private endPass(): void {
    if (this.pass) {
      this.pass.end();
      this.pass = null;
      this.passPipeline = null;
    }
  }

  /** Submit everything recorded so far. */
  flush(): void {
    if (this.recorded === 0) return;
    this.endPass();
    if (this.slots > 0) this.device.queue.writeBuffer(this.arena, 0, this.arenaHost, 0, this.slots * UNIFORM_SLOT);
    this.device.queue.submit([this.encoder.finish()]);
    this.encoder = this.device.createCommandEncoder();
    this.recorded = 0;
    this.slots = 0;
    this.submits++;
    this.pool.afterSubmit();
  }

  // ---- host transfers ----

  /** Host data into a buffer. Recorded work is submitted first so that it sees the old contents. */
  write(dst: GPUBuffer, data: ArrayBufferView, dstOffset = 0): void {
    this.check();
    this.flush();
    const bytes = data.byteLength;
    if (bytes === 0) return;
    if (bytes % 4 === 0) {
      this.device.queue.writeBuffer(dst, dstOffset, data.buffer, data.byteOffset, bytes);
    } else {
      const padded = new Uint8Array(bytes + (4 - (bytes % 4)));
      padded.set(new Uint8Array(data.buffer, data.byteOffset, bytes));
      this.device.queue.writeBuffer(dst, dstOffset, padded.buffer, 0, padded.byteLength);
    }
  }

  /** The first `bytes` of a buffer, after all recorded work. */
  async read(src: GPUBuffer, bytes: number): Promise<ArrayBuffer> {
    this.check();
    const n = Math.ceil(bytes / 4) * 4;
    if (n === 0) return new ArrayBuffer(0);
    const staging = this.acquireStaging(n);
    this.copy(src, 0, staging, 0, n);
    this.flush();
    try {
      await staging.mapAsync(MapMode.READ, 0, n);
    } catch (e) {
      this.check();
      throw new SeqlabError(`webgpu: reading a buffer failed: ${(e as Error).message.split("\n")[0]}`);
    }
    const out = staging.getMappedRange(0, n).slice(0, bytes);
    staging.unmap();
    this.releaseStaging(staging);
    this.check();
    return out;
  }

  private acquireStaging(bytes: number): GPUBuffer {
    const cls = sizeClass(bytes);
    const list = this.staging.get(cls);
    if (list && list.length > 0) return list.pop()!;
    return this.device.createBuffer({ size: cls, usage: BufferUsage.MAP_READ | BufferUsage.COPY_DST });
  }

  private releaseStaging(b: GPUBuffer): void {
    if (b.size > 64 * 2 ** 20) {
      b.destroy();
      return;
    }
    const list = this.staging.get(b.size) ?? [];
    list.push(b);
    this.staging.set(b.size, list);
  }

  /** Resolves when every submitted command has finished. */
  async sync(): Promise<void> {
    this.check();
    this.flush();
    await this.device.queue.onSubmittedWorkDone();
    this.check();
  }

  /** Free pooled buffers (after the work that may still use them has been submitted). */
  trim(): void {
    this.flush();
    this.pool.trim();
    this.pool.afterSubmit();
  }

  destroy(): void {
    this.pipelines.clear();
    this.bindGroups.clear();
    this.device.destroy();
  }
}

/** Workgroups for `n` threads in groups of `wg`, as a 2-D grid when one dimension is not enough. */
export function grid1d(n: number, wg: number): [number, number] {
  const groups = Math.ceil(n / wg);
  if (groups <= MAX_GRID) return [groups, 1];
  const y = Math.ceil(groups / MAX_GRID);
  return [Math.ceil(groups / y), y];
}
