/**
 * What the tiled attention kernels (attention_forward.ts, attention_backward.ts) share: their
 * uniforms, the WGSL that indexes the (B, T, H, K) and (B, kvRows, G, K) layouts, and the copy
 * of a tile of head rows from global memory into registers and then into workgroup memory.
 *
 * Tiles in workgroup memory are nested arrays `[row][vec4 column]`. Rows that other threads
 * read as "one row per lane" are padded by one vec4, so that lanes reading the same column of
 * consecutive rows hit different banks. Indices are built from local_invocation_index, unrolled
 * constants and constant-bound loop counters only: Tint's robustness transform can then prove
 * them in range and adds no clamp to the inner loops.
 */
import type { AttentionDims } from "../kernels.js";
import type { KernelDef } from "./context.js";

export const LOG2E = Math.LOG2E;
/** head sizes the tiled kernels support */
export const MAX_HEAD_SIZE = 256;

/** vec4s per head row */
export const kv4 = (K: number) => Math.ceil(K / 4);

export const range = (n: number) => [...Array(n).keys()];

/** the lowest set bit of n, minus one, at most 7: the XOR mask of a swizzled tile n vec4s wide */
export const swizzleMask = (n: number) => Math.min(8, n & -n) - 1;

/**
 * A thread layout over an (own rows) x (streamed rows) score block: TY x TX threads; thread
 * (ty, tx) owns rows ty + TY i (i < BM / TY, a multiple of 4), streamed rows tx + TX j
 * (j < BN / TX) and head columns (vec4s) tx + TX jj.
 */
export interface TileShape {
  /** rows the workgroup owns (queries in the forward and dQ, keys in dK/dV) */
  BM: number;
  /** rows streamed through workgroup memory per step */
  BN: number;
  TY: number;
  /** threads sharing an own row (a power of two) */
  TX: number;
}

export const threadsOf = (c: TileShape) => c.TY * c.TX;

/** Shared uniforms of the attention kernels. */
export const UNIFORMS: KernelDef["uniforms"] = [
  ["T", "u32"],
  ["S", "u32"],
  ["H", "u32"],
  ["G", "u32"],
  ["kvRows", "u32"],
  ["qOffset", "i32"],
  ["causal", "u32"],
  ["qscale", "f32"],
  ["nBlocks", "u32"],
];

export function uniformValues(d: AttentionDims, nBlocks: number): number[] {
  return [d.T, d.S, d.H, d.G, d.kvRows, d.qOffset, d.causal ? 1 : 0, d.scale * LOG2E, nBlocks];
}

/** WGSL: element offset of query row t of head h, and of key row j of KV head g. */
export const INDEX = /* wgsl */ `
fn qRow(b: u32, t: u32, h: u32) -> u32 { return ((b * u.T + t) * u.H + h) * HEAD; }
fn kvRow(b: u32, j: u32, g: u32) -> u32 { return ((b * u.kvRows + j) * u.G + g) * HEAD; }
fn visible(t: u32, j: u32) -> bool {
  return j < u.S && (u.causal == 0u || i32(j) <= u.qOffset + i32(t));
}
`;

export const arr = (vec: boolean) => (vec ? "array<vec4<f32>>" : "array<f32>");

/** WGSL loads/stores of four consecutive head elements at vec4 column c of a row at `base`. */
export function rowAccess(name: string, K: number, vec: boolean, store = false): string {
  if (vec) {
    return store
      ? `fn st_${name}(base: u32, c: u32, x_: vec4<f32>) { ${name}[(base >> 2u) + c] = x_; }\n`
      : `fn ld_${name}(base: u32, c: u32) -> vec4<f32> { return ${name}[(base >> 2u) + c]; }\n`;
  }
  const comps = ["x", "y", "z", "w"];
  if (store) {
    return `fn st_${name}(base: u32, c: u32, x_: vec4<f32>) {\n${comps.map((x, e) => `  if (c * 4u + ${e}u < ${K}u) { ${name}[base + c * 4u + ${e}u] = x_.${x}; }`).join("\n")}\n}\n`;
  }
  return `fn ld_${name}(base: u32, c: u32) -> vec4<f32> {\n  var r_ = vec4<f32>(0.0);\n${comps.map((x, e) => `  if (c * 4u + ${e}u < ${K}u) { r_.${x} = ${name}[base + c * 4u + ${e}u]; }`).join("\n")}\n  return r_;\n}\n`;
}

/**
 * The per-thread copy of a (rows x D4 vec4s) tile of head rows: `load(org)` fetches rows
 * org .. org + rows - 1 (zero past `limit`) into registers, `store(dst)` writes them to the
 * workgroup array dst[row][column]. Thread lid handles vec4s lid, lid + NT, ... (coalesced).
 */
export function tileCopy(o: { tag: string; rows: number; D4: number; NT: number; ld: string; base: (row: string) => string; limit: string; scale?: string }) {
  const total = o.rows * o.D4;
  const n = Math.ceil(total / o.NT);
  const exact = total % o.NT === 0;
  const each = (f: (i: number) => string) =>
    range(n)
      .map((i) => `{\n    let idx = lid + ${i * o.NT}u;\n    ${exact ? "" : `if (idx < ${total}u) `}{ ${f(i)} }\n  }`)
      .join("\n  ");
  const reg = (i: number) => `${o.tag}${i}`;
  return {
    regs: range(n)
      .map((i) => `var ${reg(i)} = vec4<f32>(0.0);`)
      .join(" "),
    load: (org: string) =>
      each(
        (i) =>
          `let row = ${org} + idx / ${o.D4}u; let ok = row < ${o.limit}; ${reg(i)} = select(vec4<f32>(0.0), ${o.ld}(${o.base("select(0u, row, ok)")}, idx % ${o.D4}u)${o.scale ? ` * ${o.scale}` : ""}, ok);`,
      ),
    /** with `swz` > 0, column c of row r goes to column c ^ (r & swz) (unpadded tiles without bank conflicts) */
    store: (dst: string, swz = 0) =>
      each((i) => (swz ? `let r_ = idx / ${o.D4}u; ${dst}[r_][(idx % ${o.D4}u) ^ (r_ & ${swz}u)] = ${reg(i)};` : `${dst}[idx / ${o.D4}u][idx % ${o.D4}u] = ${reg(i)};`)),
    /** element (row r_, vec4 column c_) of the tile goes to at(r_, c_) (any other layout) */
    storeAt: (at: (r: string, c: string) => string) => each((i) => `let r_ = idx / ${o.D4}u; let c_ = idx % ${o.D4}u; ${at("r_", "c_")} = ${reg(i)};`),
  };
}

