/**
 * Shared state of the attention kernels. Dims are module globals: each thread has its own
 * instance of this module, so setting them at kernel entry is thread-local.
 * Layouts: q, out, dq, dout (B, T, H, K); k, v, dk, dv (B, kvRows, G, K); lse, D (B, H, T);
 * probs (B, H, T, S). Query head h reads KV head h / (H / G).
 */
export const BQ = 32; // query rows per block
export const BK = 64; // keys per block

export let B = 0;
export let T = 0;
export let S = 0;
export let H = 0;
export let G = 0;
export let K = 0;
/** K rounded up to a multiple of 8 (the micro-kernel's column width) */
export let Kp = 0;
export let scale: f32 = 1;
export let causal = false;
export let qOffset = 0;
export let kvRows = 0;
/** log2 of the bytes of a k / v element: 2 (f32), or 1 for an f16 KV cache (setKvHalf) */
export let kvShift: usize = 2;

export function setDims(b: i32, t: i32, s: i32, h: i32, g: i32, k: i32, sc: f32, c: i32, qo: i32, kv: i32): void {
  B = b;
  T = t;
  S = s;
  H = h;
  G = g;
  K = k;
  Kp = (k + 7) & ~7;
  scale = sc;
  causal = c != 0;
  qOffset = qo;
  kvRows = kv;
  kvShift = 2;
}

/** k and v hold f16 (an f16 KV cache) when `half` is non-zero; call after setDims. */
export function setKvHalf(half: i32): void {
  kvShift = half != 0 ? 1 : 2;
}

/** Byte address of row (b, t, h) of a (B, T, H, K) buffer. */
@inline
export function qRow(base: usize, b: i32, t: i32, h: i32): usize {
  return base + ((<usize>b * T + t) * H + h) * K * 4;
}

/** Byte address of row (b, j, g) of a (B, kvRows, G, K) buffer (f32, or f16 after setKvHalf). */
@inline
export function kvRow(base: usize, b: i32, j: i32, g: i32): usize {
  return base + ((((<usize>b * kvRows + j) * G + g) * K) << kvShift);
}

/** Index of (b, h, t) in a (B, H, T) buffer. */
@inline
export function rowIndex(b: i32, h: i32, t: i32): i32 {
  return (b * H + h) * T + t;
}

/** Keys visible to query t: all S, or causally those at positions <= qOffset + t. */
@inline
export function visible(t: i32): i32 {
  return causal ? min(S, max(0, qOffset + t + 1)) : S;
}

/** Visible keys of query t within the key block starting at j0 of length jn (may be <= 0). */
@inline
export function visibleInBlock(t: i32, j0: i32, jn: i32): i32 {
  return causal ? min(jn, qOffset + t + 1 - j0) : jn;
}

/** Query rows per block (the host pre-packs K and V when several blocks share them). */
export function attentionQueryBlock(): i32 {
  return BQ;
}

/** Scratch floats per thread for the attention kernels. */
export function attentionScratchFloats(k: i32, kvRowsMax: i32): i32 {
  const kp = (k + 7) & ~7;
  const forward = max(BQ * k + k * BK + BK * kp + 2 * BQ * BK + BQ * kp + 2 * BQ, kvRowsMax);
  const backward = 2 * BQ * k + 2 * BQ * kp + 2 * k * BK + BK * kp + 5 * BQ * BK + 2 * BK * kp + 32;
  return max(forward, backward) + 64;
}

/** Bump allocator over a thread's scratch block, 16-byte aligned. */
let cursor: usize = 0;

export function scratchBegin(base: usize): void {
  cursor = base;
}

export function take(floats: i32): usize {
  const p = cursor;
  cursor += ((<usize>floats * 4 + 15) & ~15);
  return p;
}

/** The four lane sums of a, b, c, d as one vector. */
@inline export function hsum4(a: v128, b: v128, c: v128, d: v128): v128 {
  const ab = f32x4.add(i32x4.shuffle(a, b, 0, 1, 4, 5), i32x4.shuffle(a, b, 2, 3, 6, 7)); // a01 a23 b01 b23
  const cd = f32x4.add(i32x4.shuffle(c, d, 0, 1, 4, 5), i32x4.shuffle(c, d, 2, 3, 6, 7));
  return f32x4.add(i32x4.shuffle(ab, cd, 0, 2, 4, 6), i32x4.shuffle(ab, cd, 1, 3, 5, 7));
}

/**
 * q . k for the four key rows at k0, k0 + stride, ... (K columns, unscaled) as one vector: the
 * loads of q are shared by the four keys, which is what makes a single query row worth
 * vectorising across keys.
 */
@inline export function dotFourKeys(qr: usize, k0: usize, stride: usize): v128 {
  const K4 = K & ~3;
  const k1 = k0 + stride;
  const k2 = k1 + stride;
  const k3 = k2 + stride;
  let s0 = f32x4.splat(0), s1 = f32x4.splat(0), s2 = f32x4.splat(0), s3 = f32x4.splat(0);
  for (let c = 0; c < K4; c += 4) {
    const o = <usize>c << 2;
    const qv = v128.load(qr + o);
    s0 = f32x4.add(s0, f32x4.mul(qv, v128.load(k0 + o)));
    s1 = f32x4.add(s1, f32x4.mul(qv, v128.load(k1 + o)));
    s2 = f32x4.add(s2, f32x4.mul(qv, v128.load(k2 + o)));
    s3 = f32x4.add(s3, f32x4.mul(qv, v128.load(k3 + o)));
  }
  let s4 = hsum4(s0, s1, s2, s3);
  for (let c = K4; c < K; c++) {
    const qs = f32x4.splat(load<f32>(qr + (<usize>c << 2)));
    const o = <usize>c << 2;
    s4 = f32x4.add(s4, f32x4.mul(qs, f32x4(load<f32>(k0 + o), load<f32>(k1 + o), load<f32>(k2 + o), load<f32>(k3 + o))));
  }
  return s4;
}
