/**
 * Scoped lifetimes, as in tf.tidy: every tensor created inside tidy(fn) is disposed when fn
 * returns, except the tensors found in its result and those passed to keep(). Parameters,
 * optimizer moments and inference state are created outside scopes or kept.
 */
import type { Tensor } from "./tensor.js";

const scopes: Set<Tensor>[] = [];

export function track(t: Tensor): void {
  if (scopes.length > 0) scopes[scopes.length - 1].add(t);
}

/** Remove a tensor from every open scope so that it outlives them. */
export function keep<T extends Tensor>(t: T): T {
  for (const s of scopes) s.delete(t);
  return t;
}

export function tidy<T>(fn: () => T): T {
  const scope = new Set<Tensor>();
  scopes.push(scope);
  let result: T;
  try {
    result = fn();
  } catch (e) {
    scopes.pop();
    for (const t of scope) t.dispose();
    throw e;
  }
  scopes.pop();
  closeScope(scope, result);
  return result;
}

export async function tidyAsync<T>(fn: () => Promise<T>): Promise<T> {
  const scope = new Set<Tensor>();
  scopes.push(scope);
  let result: T;
  try {
    result = await fn();
  } catch (e) {
    scopes.splice(scopes.indexOf(scope), 1);
    for (const t of scope) t.dispose();
    throw e;
  }
  scopes.splice(scopes.indexOf(scope), 1);
  closeScope(scope, result);
  return result;
}

function closeScope(scope: Set<Tensor>, result: unknown): void {
  const kept = new Set<Tensor>();
  collect(result, kept, 0);
  for (const t of scope) {
    if (kept.has(t)) {
      track(t); // hand it to the enclosing scope, if any
    } else {
      t.dispose();
    }
  }
}

function collect(v: unknown, out: Set<Tensor>, depth: number): void {
  if (v === null || typeof v !== "object" || depth > 6) return;
  if (isTensor(v)) {
    out.add(v);
    if (v.grad) out.add(v.grad);
    return;
  }
  if (Array.isArray(v)) {
    for (const x of v) collect(x, out, depth + 1);
    return;
  }
  if (v instanceof Map) {
    for (const x of v.values()) collect(x, out, depth + 1);
    return;
  }
  if (Object.getPrototypeOf(v) === Object.prototype) {
    for (const x of Object.values(v)) collect(x, out, depth + 1);
  }
}

function isTensor(v: object): v is Tensor {
  return "storage" in v && "shape" in v && "dtype" in v && typeof (v as Tensor).dispose === "function";
}
