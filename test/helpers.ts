/**
 * Test utilities: backends, random tensors, finite-difference gradient checks in float64,
 * and relative errors. Shared by every test file.
 */
import * as path from "node:path";
import * as fs from "node:fs";
import { fileURLToPath } from "node:url";
import { RefBackend } from "../src/backend/ref/index.js";
import type { Backend } from "../src/backend/backend.js";
import { fromArray, toArraySync } from "../src/backend/alloc.js";
import { backward } from "../src/autograd/tape.js";
import { Tensor } from "../src/tensor/tensor.js";
import { tidy } from "../src/tensor/scope.js";
import { numel, type Shape } from "../src/tensor/shape.js";
import { Rng } from "../src/util/rng.js";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
/**
 * The shared oracle fixtures live beside the checkout (../shared/fixtures); SEQLAB_SHARED_FIXTURES
 * points elsewhere. Tests that need them are skipped, saying so, where they are absent; the
 * fixtures under test/fixtures/variants always run.
 */
export const SHARED_FIXTURES = [process.env.SEQLAB_SHARED_FIXTURES, path.resolve(ROOT, "../shared/fixtures"), "/work/shared/fixtures"]
  .filter((p): p is string => !!p)
  .find((p) => fs.existsSync(path.join(p, "hf"))) ?? path.resolve(ROOT, "../shared/fixtures");
export const HF_FIXTURES = path.join(SHARED_FIXTURES, "hf");
export const HAS_SHARED = fs.existsSync(HF_FIXTURES);
/** node:test `skip` option for tests that need the shared fixtures */
export const NEEDS_SHARED = HAS_SHARED ? false : `shared fixtures not found (looked for ${HF_FIXTURES}; set SEQLAB_SHARED_FIXTURES)`;
export const VARIANT_FIXTURES = path.join(ROOT, "test/fixtures/variants");

/** Fixture directories (shared and variants) whose config has one of these model types. */
export function fixtureDirs(...modelTypes: string[]): string[] {
  const dirs: string[] = [];
  for (const base of [HF_FIXTURES, VARIANT_FIXTURES]) {
    if (!fs.existsSync(base)) continue;
    for (const name of fs.readdirSync(base).sort()) {
      const cfg = path.join(base, name, "config.json");
      if (!fs.existsSync(cfg)) continue;
      const type = JSON.parse(fs.readFileSync(cfg, "utf8")).model_type;
      if (modelTypes.includes(type)) dirs.push(path.join(base, name));
    }
  }
  return dirs;
}

export const ref32 = new RefBackend({ precision: "f32" });
export const ref64 = new RefBackend({ precision: "f64" });

export function randn(be: Backend, shape: Shape, rng: Rng, std = 1, requiresGrad = false): Tensor {
  const data = new Float64Array(numel(shape));
  for (let i = 0; i < data.length; i++) data[i] = rng.normal() * std;
  const t = fromArray(be, be === ref64 ? data : Float32Array.from(data), shape);
  t.requiresGrad = requiresGrad;
  return t;
}

export function uniform(be: Backend, shape: Shape, rng: Rng, lo: number, hi: number, requiresGrad = false): Tensor {
  const data = new Float64Array(numel(shape));
  for (let i = 0; i < data.length; i++) data[i] = lo + (hi - lo) * rng.uniform();
  const t = fromArray(be, be === ref64 ? data : Float32Array.from(data), shape);
  t.requiresGrad = requiresGrad;
  return t;
}

export function values(t: Tensor): Float64Array {
  return Float64Array.from(toArraySync(t));
}

export function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < b.length; i++) {
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return den > 0 ? Math.sqrt(num / den) : Math.sqrt(num);
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < b.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/**
 * Finite-difference check of every input's gradient for L = sum(f(inputs) * w), w random,
 * in float64 on the ref backend. Returns the worst relative error over inputs.
 * `inputs` are float64 tensors with requiresGrad set on those to check.
 */
export function gradcheck(f: (inputs: Tensor[]) => Tensor, inputs: Tensor[], opts: { eps?: number; seed?: number } = {}): number {
  const eps = opts.eps ?? 1e-6;
  const rng = new Rng(opts.seed ?? 99);
  const out0 = tidy(() => f(inputs));
  const w = new Float64Array(out0.size).map(() => rng.normal());
  const seed = fromArray(ref64, w, out0.shape);
  const L = (): number =>
    tidy(() => {
      const o = values(f(inputs));
      let s = 0;
      for (let i = 0; i < o.length; i++) s += o[i] * w[i];
      return s;
    });
  for (const x of inputs) x.grad = null;
  tidy(() => backward(f(inputs), seed));
  let worst = 0;
  for (const x of inputs) {
    if (!x.requiresGrad) continue;
    const analytic = x.grad ? values(x.grad) : new Float64Array(x.size);
    const data = x.handle as Float64Array;
    const numeric = new Float64Array(x.size);
    for (let i = 0; i < x.size; i++) {
      const orig = data[i];
      data[i] = orig + eps;
      const up = L();
      data[i] = orig - eps;
      const down = L();
      data[i] = orig;
      numeric[i] = (up - down) / (2 * eps);
    }
    worst = Math.max(worst, relErr(analytic, numeric));
  }
  return worst;
}

/** Sizes that exercise edges of blocked kernels. */
export const RAGGED = [1, 3, 31, 32, 33, 255, 257];
