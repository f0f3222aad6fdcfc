/**
 * The f32 matrix-multiply engine shared by matmul and attention: packing of operands into
 * contiguous panels and the 4x8 register-blocked f32x4 micro-kernel (Goto & van de Geijn,
 * "Anatomy of high-performance matrix multiplication", 2008; the BLIS loop order).
 *
 * The micro-kernel keeps a 4x8 tile of C in eight f32x4 registers and per k step loads
 * one 8-float row of the B panel (two vectors) and broadcasts four A values: 16 mul+add on
 * 6 loads. Wasm SIMD has no fused multiply-add, so each product costs a mul and an add.
 * With 8 accumulators, 2 B vectors, 1 broadcast and 1 product temporary it fits the 16
 * XMM registers V8 allocates from; wider tiles (4x12, 6x8) spilled and ran 2x slower.
 *
 * Packed layouts: an A panel holds MR rows as [k][MR]; a B panel holds NR columns as [k][NR];
 * rows or columns past the matrix edge are zero, so the micro-kernel never branches.
 */

import { F16, BF16, halfToF32, loadHalf4, loadHalf1 } from "./half";
import { madd } from "./common";

export const MR = 4;
export const NR = 8;

// ---- micro-kernel ----

/**
 * C[0:4, 0:8] (+)= sum over k < kc of A[:, k] B[k, :], A from a packed panel (a, stride 16 bytes
 * per k), B from a packed panel (stride 32 bytes per k). ldc in bytes.
 */
@inline
export function micro4x8(a: usize, b: usize, kc: i32, c: usize, ldc: usize, add: bool): void {
  let c00 = f32x4.splat(0), c01 = f32x4.splat(0), c10 = f32x4.splat(0), c11 = f32x4.splat(0);
  let c20 = f32x4.splat(0), c21 = f32x4.splat(0), c30 = f32x4.splat(0), c31 = f32x4.splat(0);
  for (let k = 0; k < kc; k++) {
    const b0 = v128.load(b);
    const b1 = v128.load(b, 16);
    let av = v128.load32_splat(a);
    c00 = madd(av, b0, c00);
    c01 = madd(av, b1, c01);
    av = v128.load32_splat(a, 4);
    c10 = madd(av, b0, c10);
    c11 = madd(av, b1, c11);
    av = v128.load32_splat(a, 8);
    c20 = madd(av, b0, c20);
    c21 = madd(av, b1, c21);
    av = v128.load32_splat(a, 12);
    c30 = madd(av, b0, c30);
    c31 = madd(av, b1, c31);
    a += 16;
    b += 32;
  }
  if (add) {
    c00 = f32x4.add(c00, v128.load(c));
    c01 = f32x4.add(c01, v128.load(c, 16));
    c10 = f32x4.add(c10, v128.load(c + ldc));
    c11 = f32x4.add(c11, v128.load(c + ldc, 16));
    c20 = f32x4.add(c20, v128.load(c + 2 * ldc));
    c21 = f32x4.add(c21, v128.load(c + 2 * ldc, 16));
    c30 = f32x4.add(c30, v128.load(c + 3 * ldc));
    c31 = f32x4.add(c31, v128.load(c + 3 * ldc, 16));
  }
  v128.store(c, c00);
  v128.store(c, c01, 16);
  v128.store(c + ldc, c10);
  v128.store(c + ldc, c11, 16);
  v128.store(c + 2 * ldc, c20);
  v128.store(c + 2 * ldc, c21, 16);
  v128.store(c + 3 * ldc, c30);
  v128.store(c + 3 * ldc, c31, 16);
}

/**
 * The micro-kernel on a possibly partial tile (mr <= 4 rows, nr <= 8 columns of C valid):
 * full tiles go straight to C, edge tiles through a 4x8 scratch tile.
 */
@inline
export function microEdge(a: usize, b: usize, kc: i32, c: usize, ldc: usize, add: bool, mr: i32, nr: i32, tile: usize): void {
  if (mr == MR && nr == NR) {
    micro4x8(a, b, kc, c, ldc, add);
    return;
  }
  micro4x8(a, b, kc, tile, 32, false);
  for (let r = 0; r < mr; r++) {
    const src = tile + <usize>r * 32;
    const dst = c + <usize>r * ldc;
    for (let j = 0; j < nr; j++) {
      const v = load<f32>(src + (<usize>j << 2));
      const p = dst + (<usize>j << 2);
      store<f32>(p, add ? load<f32>(p) + v : v);
    }
  }
}

// ---- packing ----

/** 4x4 transpose of rows r0..r3 (lanes are columns). */
@inline function transposeStore(r0: v128, r1: v128, r2: v128, r3: v128, dst: usize, stride: usize): void {
  const t0 = i32x4.shuffle(r0, r1, 0, 4, 1, 5);
  const t1 = i32x4.shuffle(r0, r1, 2, 6, 3, 7);
  const t2 = i32x4.shuffle(r2, r3, 0, 4, 1, 5);
  const t3 = i32x4.shuffle(r2, r3, 2, 6, 3, 7);
  v128.store(dst, i32x4.shuffle(t0, t2, 0, 1, 4, 5));
  v128.store(dst + stride, i32x4.shuffle(t0, t2, 2, 3, 6, 7));
  v128.store(dst + 2 * stride, i32x4.shuffle(t1, t3, 0, 1, 4, 5));
  v128.store(dst + 3 * stride, i32x4.shuffle(t1, t3, 2, 3, 6, 7));
}

/**
 * Pack rows [0, m) x k [0, kc) of a matrix whose element (r, k) sits at src + r*rs + k*ks
 * (byte strides) into MR-row panels at dst: panel p, step k holds rows 4p..4p+3 as 4 floats.
 */
export function packA(dst: usize, src: usize, rs: usize, ks: usize, m: i32, kc: i32): void {
  for (let r0 = 0; r0 < m; r0 += MR) {
    const mr = min(MR, m - r0);
    const s = src + <usize>r0 * rs;
    if (mr == MR && ks == 4) {
      // rows are contiguous in k: transpose 4x4 blocks
      let k = 0;
      for (; k + 4 <= kc; k += 4) {
        const o = s + (<usize>k << 2);
        transposeStore(v128.load(o), v128.load(o + rs), v128.load(o + 2 * rs), v128.load(o + 3 * rs), dst + (<usize>k << 4), 16);
      }
      for (; k < kc; k++) {
        const o = s + (<usize>k << 2);
        const d = dst + (<usize>k << 4);
        store<f32>(d, load<f32>(o));
        store<f32>(d, load<f32>(o + rs), 4);
        store<f32>(d, load<f32>(o + 2 * rs), 8);
        store<f32>(d, load<f32>(o + 3 * rs), 12);
      }
    } else if (mr == MR && rs == 4) {
      // the 4 rows of one k are contiguous (a transposed A)
      for (let k = 0; k < kc; k++) v128.store(dst + (<usize>k << 4), v128.load(s + <usize>k * ks));
    } else {
      for (let k = 0; k < kc; k++) {
        const d = dst + (<usize>k << 4);
        for (let r = 0; r < MR; r++) store<f32>(d + (<usize>r << 2), r < mr ? load<f32>(s + <usize>r * rs + <usize>k * ks) : 0);
      }
    }
    dst += <usize>kc << 4;
  }
}

/**
 * Pack k [0, kc) x columns [0, n) of a matrix whose element (k, j) sits at src + k*ks + j*js
 * into NR-column panels at dst: panel q, step k holds columns 8q..8q+7.
 */
export function packB(dst: usize, src: usize, ks: usize, js: usize, kc: i32, n: i32): void {
  for (let j0 = 0; j0 < n; j0 += NR) {
    const nr = min(NR, n - j0);
    const s = src + <usize>j0 * js;
    if (nr == NR && js == 4) {
      for (let k = 0; k < kc; k++) {
        const o = s + <usize>k * ks;
        const d = dst + (<usize>k << 5);
        v128.store(d, v128.load(o));
        v128.store(d, v128.load(o, 16), 16);
      }
    } else if (nr == NR && ks == 4) {
      // columns are contiguous in k (a transposed B, e.g. nn.Linear weights): 4x4 transposes
      let k = 0;
      for (; k + 4 <= kc; k += 4) {
        const o = s + (<usize>k << 2);
        const d = dst + (<usize>k << 5);
        transposeStore(v128.load(o), v128.load(o + js), v128.load(o + 2 * js), v128.load(o + 3 * js), d, 32);
        const o4 = o + 4 * js;
        transposeStore(v128.load(o4), v128.load(o4 + js), v128.load(o4 + 2 * js), v128.load(o4 + 3 * js), d + 16, 32);
      }
      for (; k < kc; k++) {
        const o = s + (<usize>k << 2);
        const d = dst + (<usize>k << 5);
        for (let j = 0; j < NR; j++) store<f32>(d + (<usize>j << 2), load<f32>(o + <usize>j * js));
      }
    } else {
      for (let k = 0; k < kc; k++) {
        const d = dst + (<usize>k << 5);
        for (let j = 0; j < NR; j++) store<f32>(d + (<usize>j << 2), j < nr ? load<f32>(s + <usize>k * ks + <usize>j * js) : 0);
      }
    }
    dst += <usize>kc << 5;
  }
}

/**
 * packB for half-precision storage (kind 1 f16, 2 bf16; byte strides of 2-byte elements):
 * weights kept in f16/bf16 are widened to f32 as they are packed, so the micro-kernel is the
 * f32 one and the product accumulates in f32.
 */
export function packBHalf(dst: usize, src: usize, ks: usize, js: usize, kc: i32, n: i32, kind: i32): void {
  if (kind == F16) packBHalfAs(F16, dst, src, ks, js, kc, n);
  else packBHalfAs(BF16, dst, src, ks, js, kc, n);
}

@inline function packBHalfAs(kind: i32, dst: usize, src: usize, ks: usize, js: usize, kc: i32, n: i32): void {
  for (let j0 = 0; j0 < n; j0 += NR) {
    const nr = min(NR, n - j0);
    const s = src + <usize>j0 * js;
    if (nr == NR && js == 2) {
      for (let k = 0; k < kc; k++) {
        const h = v128.load(s + <usize>k * ks);
        const d = dst + (<usize>k << 5);
        v128.store(d, halfToF32(i32x4.extend_low_i16x8_u(h), kind));
        v128.store(d, halfToF32(i32x4.extend_high_i16x8_u(h), kind), 16);
      }
    } else if (nr == NR && ks == 2) {
      let k = 0;
      for (; k + 4 <= kc; k += 4) {
        const o = s + (<usize>k << 1);
        const d = dst + (<usize>k << 5);
        transposeStore(loadHalf4(o, kind), loadHalf4(o + js, kind), loadHalf4(o + 2 * js, kind), loadHalf4(o + 3 * js, kind), d, 32);
        const o4 = o + 4 * js;
        transposeStore(loadHalf4(o4, kind), loadHalf4(o4 + js, kind), loadHalf4(o4 + 2 * js, kind), loadHalf4(o4 + 3 * js, kind), d + 16, 32);
      }
      for (; k < kc; k++) {
        const o = s + (<usize>k << 1);
        const d = dst + (<usize>k << 5);
        for (let j = 0; j < NR; j++) store<f32>(d + (<usize>j << 2), loadHalf1(o + <usize>j * js, kind));
      }
    } else {
      for (let k = 0; k < kc; k++) {
        const d = dst + (<usize>k << 5);
        for (let j = 0; j < NR; j++) store<f32>(d + (<usize>j << 2), j < nr ? loadHalf1(s + <usize>k * ks + <usize>j * js, kind) : 0);
      }
    }
    dst += <usize>kc << 5;
  }
}

/** Floats of an A panel block (m rows) and a B panel block (n columns) once packed. */
@inline
export function packedA(m: i32, kc: i32): i32 {
  return ((m + MR - 1) / MR) * MR * kc;
}

@inline
export function packedB(n: i32, kc: i32): i32 {
  return ((n + NR - 1) / NR) * NR * kc;
}
