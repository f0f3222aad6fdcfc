/**
 * Module: a tree of parameters named as in the Hugging Face checkpoint (fields keep the HF
 * names: `q_proj`, `A_log`, `layers` ...), so loading a checkpoint is a walk over names.
 * Parameters are tensors created through `param()`; other tensor fields (rotary inverse
 * frequencies and the like) are buffers and are not walked. A tensor reached twice (tied
 * embeddings) is listed once, under the first name it is reached by, as PyTorch does.
 */
import { Tensor } from "../tensor/tensor.js";
import { keep } from "../tensor/scope.js";
import type { Shape } from "../tensor/shape.js";
import { numel } from "../tensor/shape.js";
import type { Backend } from "../backend/backend.js";
import { empty, fromArray, zeros } from "../backend/alloc.js";
import { Rng } from "../util/rng.js";
import type { WeightDtype } from "../backend/kernels.js";

const PARAMETERS = new WeakSet<Tensor>();

/** How a fresh parameter is initialised when training from scratch. */
export type Init =
  | { kind: "zeros" }
  | { kind: "ones" }
  | { kind: "const"; value: number }
  | { kind: "normal"; std: number }
  | { kind: "uniform"; low: number; high: number }
  | { kind: "fn"; fn: (rng: Rng, index: number) => number };

export const zerosInit: Init = { kind: "zeros" };
export const onesInit: Init = { kind: "ones" };
export const normalInit = (std: number): Init => ({ kind: "normal", std });

export interface ParamOptions {
  /**
   * The parameter is a weight matrix read only through ops.linear, ops.matmulKN or
   * ops.embedding, whose kernels accept half-precision storage: when loading with a half weight
   * dtype it is allocated as f16/bf16 and frozen (half weights are inference-only).
   */
  halfCapable?: boolean;
}

/**
 * Where modules create their parameters. With `rng` null the parameters are left zero, to be
 * filled from a checkpoint; otherwise they are initialised from the seeded generator.
 * `weightDtype` is the storage of half-capable weights when loading (f32 everywhere else).
 */
export class ModuleContext {
  constructor(
    readonly backend: Backend,
    readonly rng: Rng | null = null,
    readonly weightDtype: WeightDtype = "f32",
  ) {}

  static forLoading(backend: Backend, weightDtype: WeightDtype = "f32"): ModuleContext {
    return new ModuleContext(backend, null, weightDtype);
  }

  static seeded(backend: Backend, seed: number): ModuleContext {
    return new ModuleContext(backend, new Rng(seed));
  }

  param(shape: Shape, init: Init, opts: ParamOptions = {}): Tensor {
    const dtype = opts.halfCapable ? this.weightDtype : "f32";
    let t: Tensor;
    if (dtype !== "f32") t = zeros(this.backend, shape, dtype); // filled by the loader
    else t = this.rng === null ? zeros(this.backend, shape) : fromArray(this.backend, initialValues(shape, init, this.rng), shape);
    t.requiresGrad = dtype === "f32";
    PARAMETERS.add(t);
    return keep(t);
  }

  /** A non-trainable tensor owned by a module (rotary frequencies, masks). */
  buffer(data: Float32Array | Int32Array, shape: Shape, dtype: "f32" | "i32" = "f32"): Tensor {
    return keep(fromArray(this.backend, data, shape, dtype));
  }

  empty(shape: Shape): Tensor {
    return keep(empty(this.backend, shape));
  }
}

function initialValues(shape: Shape, init: Init, rng: Rng): Float32Array {
  const n = numel(shape);
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    switch (init.kind) {
      case "zeros":
        break;
      case "ones":
        a[i] = 1;
        break;
      case "const":
        a[i] = init.value;
        break;
      case "normal":
        a[i] = rng.normal() * init.std;
        break;
      case "uniform":
        a[i] = init.low + (init.high - init.low) * rng.uniform();
        break;
      case "fn":
        a[i] = init.fn(rng, i);
        break;
    }
  }
  return a;
}

export function isParameter(t: unknown): t is Tensor {
  return t instanceof Tensor && PARAMETERS.has(t);
}

export abstract class Module {
  /** Parameters under their checkpoint names, each tensor once. */
  namedParameters(prefix = ""): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    const seen = new Set<Tensor>();
    walk(this, prefix, out, seen);
    return out;
  }

  parameters(): Tensor[] {
    return this.namedParameters().map(([, t]) => t);
  }

  parameterCount(): number {
    return this.parameters().reduce((n, t) => n + t.size, 0);
  }
}

function walk(m: Module, prefix: string, out: [string, Tensor][], seen: Set<Tensor>): void {
  for (const [key, value] of Object.entries(m)) {
    const name = prefix ? `${prefix}.${key}` : key;
    if (isParameter(value)) {
      if (!seen.has(value)) {
        seen.add(value);
        value.name ??= name;
        out.push([name, value]);
      }
    } else if (value instanceof Module) {
      walk(value, name, out, seen);
    } else if (Array.isArray(value)) {
      value.forEach((child, i) => {
        if (child instanceof Module) walk(child, `${name}.${i}`, out, seen);
        else if (isParameter(child) && !seen.has(child)) {
          seen.add(child);
          out.push([`${name}.${i}`, child]);
        }
      });
    }
  }
}
