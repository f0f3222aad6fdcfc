/** Shapes: plain arrays of non-negative integers, row-major (C order), always contiguous. */
import { assert, SeqlabError } from "../util/errors.js";

export type Shape = readonly number[];

export function numel(shape: Shape): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function sameShape(a: Shape, b: Shape): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

export function fmtShape(shape: Shape): string {
  return `(${shape.join(", ")})`;
}

/** Resolve one -1 in a reshape target. */
export function resolveShape(target: Shape, size: number): number[] {
  const out = [...target];
  const unknown = out.indexOf(-1);
  if (unknown >= 0) {
    const rest = numel(out.filter((_, i) => i !== unknown));
    assert(rest > 0 && size % rest === 0, () => `cannot reshape ${size} elements to ${fmtShape(target)}`);
    out[unknown] = size / rest;
  }
  assert(numel(out) === size, () => `cannot reshape ${size} elements to ${fmtShape(target)}`);
  return out;
}

/** Checks a tensor's shape against an expected one (-1 matches any size). */
export function expectShape(what: string, actual: Shape, expected: Shape): void {
  const ok = actual.length === expected.length && expected.every((d, i) => d < 0 || d === actual[i]);
  if (!ok) throw new SeqlabError(`${what}: expected shape ${fmtShape(expected)}, got ${fmtShape(actual)}`);
}

export function lastDim(shape: Shape): number {
  return shape[shape.length - 1];
}

/** All dims but the last, multiplied: the number of rows when a tensor is seen as (rows, lastDim). */
export function rows(shape: Shape): number {
  return numel(shape.slice(0, -1));
}
