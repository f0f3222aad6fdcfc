/**
 * Attention forward kernels.
 *
 * attentionForward is FlashAttention (Dao et al. 2022, Alg. 1) on the CPU: a block of BQ
 * queries of one head is packed once; for each block of BK keys, S = Q K^T comes from the 4x8
 * GEMM micro-kernel, an online softmax keeps each row's running max m and sum l, and O += P V
 * runs through the micro-kernel again. Memory is O(T) (the scratch is per thread); only
 * lse = m + log l per row is saved for the backward pass. Work items are (b, h, query block),
 * claimed from a shared counter because causal blocks differ in cost. A query block of one row
 * (decoding) takes a vector path that streams each key and value row once.
 *
 * attentionNaiveForward materialises probs (B, H, T, S): the O(T^2)-memory baseline.
 */
import { micro4x8, microEdge, packA, packB, packBHalf } from "./gemm";
import { F16 } from "./half";
import { claim, splitLo, splitHi, hsum, hmax, at32 } from "./common";
import { expNegv } from "./simd_math";
import {
  BQ, BK, T, S, H, G, K, Kp, scale, kvRows, B, kvShift,
  setDims, setKvHalf, qRow, kvRow, rowIndex, visible, visibleInBlock, scratchBegin, take, dotFourKeys,
} from "./attention_common";

export function attentionForward(
  tid: i32, nth: i32, out: usize, lse: usize, q: usize, k: usize, v: usize,
  b_: i32, t_: i32, s_: i32, h_: i32, g_: i32, k_: i32, scale_: f32, causal_: i32, qOffset_: i32, kvRows_: i32,
  scratch: usize, scratchStride: i32, counter: usize, packed: usize, kvHalf: i32,
): void {
  setDims(b_, t_, s_, h_, g_, k_, scale_, causal_, qOffset_, kvRows_);
  setKvHalf(kvHalf);
  const mine = scratch + <usize>tid * scratchStride;
  const qBlocks = (T + BQ - 1) / BQ;
  const items = B * H * qBlocks;
  for (let item = claim(counter); item < items; item = claim(counter)) {
    const qb = item % qBlocks;
    const bh = item / qBlocks;
    const h = bh % H;
    const b = bh / H;
    const t0 = qb * BQ;
    if (T - t0 == 1 && kvHalf == 0) decodeRow(out, lse, q, k, v, b, t0, h, mine);
    else flashBlock(out, lse, q, k, v, b, h, t0, mine, packed);
  }
}

/**
 * K^T and V of every key block, packed once for all query blocks (attentionPackKV): for KV head
 * (b, g) and key block kb, the K^T panels (K x BK) then the V panels (BK x Kp).
 */
@inline
export function packedKV(packed: usize, b: i32, g: i32, kb: i32): usize {
  const blocks = (S + BK - 1) / BK;
  return packed + ((<usize>(b * G + g) * blocks + kb) * BK * (K + Kp)) * 4;
}

/** Floats attentionPackKV writes. */
export function attentionPackedFloats(b_: i32, s_: i32, g_: i32, k_: i32): i32 {
  const kp = (k_ + 7) & ~7;
  return b_ * g_ * ((s_ + BK - 1) / BK) * BK * (k_ + kp);
}

/** Pack K^T and V panels of every (b, g, key block) for attentionForward (f16 widened); threads split the blocks. */
export function attentionPackKV(
  tid: i32, nth: i32, packed: usize, k: usize, v: usize, b_: i32, s_: i32, g_: i32, k_: i32, kvRows_: i32, kvHalf: i32,
): void {
  setDims(b_, 0, s_, g_, g_, k_, 1, 0, 0, kvRows_);
  setKvHalf(kvHalf);
  const blocks = (S + BK - 1) / BK;
  const items = B * G * blocks;
  const lo = splitLo(items, tid, nth, 1);
  const hi = splitHi(items, tid, nth, 1);
  for (let item = lo; item < hi; item++) {
    const kb = item % blocks;
    const bg = item / blocks;
    const g = bg % G;
    const b = bg / G;
    const j0 = kb * BK;
    const jn = min(BK, S - j0);
    const dst = packedKV(packed, b, g, kb);
    packKV(dst, kvRow(k, b, j0, g), kvRow(v, b, j0, g), jn);
  }
}

/**
 * One query block of one head: the online-softmax sweep over key blocks. K^T and V panels come
 * pre-packed when `packed` is set (several query blocks share them), else are packed here.
 */
function flashBlock(out: usize, lse: usize, q: usize, k: usize, v: usize, b: i32, h: i32, t0: i32, scratch: usize, packed: usize): void {
  const qn = min(BQ, T - t0);
  const g = h / (H / G);
  const nMax = visible(t0 + qn - 1);
  scratchBegin(scratch);
  const qa = take(BQ * K);
  const ktLocal = take(K * BK);
  const vbLocal = take(BK * Kp);
  const sc = take(BQ * BK);
  const pa = take(BQ * BK);
  const o = take(BQ * Kp);
  const m = take(BQ);
  const l = take(BQ);
  packA(qa, qRow(q, b, t0, h), <usize>H * K * 4, 4, qn, K);
  memory.fill(o, 0, <usize>BQ * Kp * 4);
  for (let r = 0; r < BQ; r++) {
    store<f32>(at32(m, r), -Infinity);
    store<f32>(at32(l, r), 0);
  }
  const sv = f32x4.splat(scale);
  for (let j0 = 0; j0 < nMax; j0 += BK) {
    const jn = min(BK, nMax - j0);
    // this block's K^T and V panels; a pre-packed block holds min(BK, S - j0) >= jn keys, and
    // its V panels were packed for that many keys (the panel stride)
    let kt = ktLocal;
    let vb = vbLocal;
    let vn = jn;
    if (packed != 0) {
      kt = packedKV(packed, b, g, j0 / BK);
      vb = kt + <usize>BK * K * 4;
      vn = min(BK, S - j0);
    } else {
      packKV(kt, kvRow(k, b, j0, g), kvRow(v, b, j0, g), jn);
    }
    // S = Q K^T for this key block
    for (let ir = 0; ir < qn; ir += 4) {
      for (let jr = 0; jr < jn; jr += 8) micro4x8(qa + <usize>ir * K * 4, kt + <usize>jr * K * 4, K, sc + (<usize>ir * BK + jr) * 4, BK * 4, false);
    }
    // online softmax: rescale O and l by e^(m_old - m_new), P = e^(s - m_new)
    for (let r = 0; r < qn; r++) {
      const row = sc + <usize>r * BK * 4;
      const lim = visibleInBlock(t0 + r, j0, jn);
      if (lim <= 0) {
        memory.fill(row, 0, <usize>jn * 4);
        continue;
      }
      let mv = f32x4.splat(-Infinity);
      let j = 0;
      for (; j + 4 <= lim; j += 4) {
        const s4 = f32x4.mul(v128.load(at32(row, j)), sv);
        v128.store(at32(row, j), s4);
        mv = f32x4.pmax(mv, s4); // NaN scores reach the output through exp anyway
      }
      let mBlock = hmax(mv);
      for (; j < lim; j++) {
        const s1 = load<f32>(at32(row, j)) * scale;
        store<f32>(at32(row, j), s1);
        mBlock = max(mBlock, s1);
      }
      const mOld = load<f32>(at32(m, r));
      const mNew = max(mOld, mBlock);
      const corr = f32x4.extract_lane(expNegv(f32x4.splat(mOld - mNew)), 0);
      const mn = f32x4.splat(mNew);
      let ps = f32x4.splat(0);
      j = 0;
      for (; j + 4 <= lim; j += 4) {
        const p = expNegv(f32x4.sub(v128.load(at32(row, j)), mn));
        v128.store(at32(row, j), p);
        ps = f32x4.add(ps, p);
      }
      let psum = hsum(ps);
      for (; j < lim; j++) {
        const p = f32x4.extract_lane(expNegv(f32x4.splat(load<f32>(at32(row, j)) - mNew)), 0);
        store<f32>(at32(row, j), p);
        psum += p;
      }
      for (; j < jn; j++) store<f32>(at32(row, j), 0);
      store<f32>(at32(l, r), load<f32>(at32(l, r)) * corr + psum);
      store<f32>(at32(m, r), mNew);
      if (corr != 1) scaleRow(o + <usize>r * Kp * 4, corr, Kp);
    }
    // O += P V (the reduction runs over the jn keys this block holds for these queries)
    packA(pa, sc, <usize>BK * 4, 4, qn, jn);
    for (let ir = 0; ir < qn; ir += 4) {
      for (let cr = 0; cr < K; cr += 8) micro4x8(pa + <usize>ir * jn * 4, vb + <usize>cr * vn * 4, jn, o + (<usize>ir * Kp + cr) * 4, Kp * 4, true);
    }
  }
  for (let r = 0; r < qn; r++) {
    const t = t0 + r;
    const dst = qRow(out, b, t, h);
    const lr = load<f32>(at32(l, r));
    if (visible(t) <= 0) {
      memory.fill(dst, 0, <usize>K * 4);
      store<f32>(at32(lse, rowIndex(b, h, t)), -Infinity);
      continue;
    }
    copyScaled(dst, o + <usize>r * Kp * 4, 1 / lr, K);
    store<f32>(at32(lse, rowIndex(b, h, t)), load<f32>(at32(m, r)) + <f32>Math.log(lr));
  }
}

/**
 * The K^T panels (K x jn) then, BK * K floats on, the V panels (jn x Kp) of one key block whose
 * first rows are at k0 and v0; an f16 cache is widened to f32 as it is packed.
 */
function packKV(dst: usize, k0: usize, v0: usize, jn: i32): void {
  const es: usize = <usize>1 << kvShift;
  const kvStride = (<usize>G * K) << kvShift;
  if (kvShift == 2) {
    packB(dst, k0, 4, kvStride, K, jn);
    packB(dst + <usize>BK * K * 4, v0, kvStride, 4, jn, K);
  } else {
    packBHalf(dst, k0, es, kvStride, K, jn, F16);
    packBHalf(dst + <usize>BK * K * 4, v0, kvStride, es, jn, K, F16);
  }
}

@inline function scaleRow(p: usize, s: f32, n: i32): void {
  const sv = f32x4.splat(s);
  for (let c = 0; c < n; c += 4) v128.store(at32(p, c), f32x4.mul(v128.load(at32(p, c)), sv));
}

/** dst[0:n] = src[0:n] * s */
@inline function copyScaled(dst: usize, src: usize, s: f32, n: i32): void {
  const sv = f32x4.splat(s);
  let c = 0;
  for (; c + 4 <= n; c += 4) v128.store(at32(dst, c), f32x4.mul(v128.load(at32(src, c)), sv));
  for (; c < n; c++) store<f32>(at32(dst, c), load<f32>(at32(src, c)) * s);
}

/** q . k over K */
@inline function dotK(a: usize, b: usize): f32 {
  let s0 = f32x4.splat(0);
  let c = 0;
  for (; c + 4 <= K; c += 4) s0 = f32x4.add(s0, f32x4.mul(v128.load(at32(a, c)), v128.load(at32(b, c))));
  let s = hsum(s0);
  for (; c < K; c++) s += load<f32>(at32(a, c)) * load<f32>(at32(b, c));
  return s;
}

/**
 * One query row (decoding): scores for every visible key (four keys per pass, sharing the
 * loads of q), softmax, then the weighted sum of value rows, 32 columns per pass with the
 * accumulators in registers. Each key and value row is streamed once (memory-bound).
 */
function decodeRow(out: usize, lse: usize, q: usize, k: usize, v: usize, b: i32, t: i32, h: i32, scratch: usize): void {
  const n = visible(t);
  const g = h / (H / G);
  const dst = qRow(out, b, t, h);
  if (n <= 0) {
    memory.fill(dst, 0, <usize>K * 4);
    store<f32>(at32(lse, rowIndex(b, h, t)), -Infinity);
    return;
  }
  scratchBegin(scratch);
  const p = take(n);
  const qr = qRow(q, b, t, h);
  const kvStride = <usize>G * K * 4;
  const sv = f32x4.splat(scale);
  let mv = f32x4.splat(-Infinity);
  let j = 0;
  for (; j + 4 <= n; j += 4) {
    let s4 = dotFourKeys(qr, kvRow(k, b, j, g), kvStride);
    s4 = f32x4.mul(s4, sv);
    v128.store(at32(p, j), s4);
    mv = f32x4.pmax(mv, s4);
  }
  let mx = hmax(mv);
  for (; j < n; j++) {
    const s = dotK(qr, kvRow(k, b, j, g)) * scale;
    store<f32>(at32(p, j), s);
    mx = max(mx, s);
  }
  const mm = f32x4.splat(mx);
  let ls = f32x4.splat(0);
  j = 0;
  for (; j + 4 <= n; j += 4) {
    const e = expNegv(f32x4.sub(v128.load(at32(p, j)), mm));
    v128.store(at32(p, j), e);
    ls = f32x4.add(ls, e);
  }
  let l = hsum(ls);
  for (; j < n; j++) {
    const e = f32x4.extract_lane(expNegv(f32x4.splat(load<f32>(at32(p, j)) - mx)), 0);
    store<f32>(at32(p, j), e);
    l += e;
  }
  const inv = f32x4.splat(1 / l);
  let c0 = 0;
  for (; c0 + 32 <= K; c0 += 32) {
    let o0 = f32x4.splat(0), o1 = f32x4.splat(0), o2 = f32x4.splat(0), o3 = f32x4.splat(0);
    let o4 = f32x4.splat(0), o5 = f32x4.splat(0), o6 = f32x4.splat(0), o7 = f32x4.splat(0);
    let vr = kvRow(v, b, 0, g) + (<usize>c0 << 2);
    for (j = 0; j < n; j++) {
      const pv = v128.load32_splat(at32(p, j));
      o0 = f32x4.add(o0, f32x4.mul(pv, v128.load(vr)));
      o1 = f32x4.add(o1, f32x4.mul(pv, v128.load(vr, 16)));
      o2 = f32x4.add(o2, f32x4.mul(pv, v128.load(vr, 32)));
      o3 = f32x4.add(o3, f32x4.mul(pv, v128.load(vr, 48)));
      o4 = f32x4.add(o4, f32x4.mul(pv, v128.load(vr, 64)));
      o5 = f32x4.add(o5, f32x4.mul(pv, v128.load(vr, 80)));
      o6 = f32x4.add(o6, f32x4.mul(pv, v128.load(vr, 96)));
      o7 = f32x4.add(o7, f32x4.mul(pv, v128.load(vr, 112)));
      vr += kvStride;
    }
    const d = dst + (<usize>c0 << 2);
    v128.store(d, f32x4.mul(o0, inv));
    v128.store(d, f32x4.mul(o1, inv), 16);
    v128.store(d, f32x4.mul(o2, inv), 32);
    v128.store(d, f32x4.mul(o3, inv), 48);
    v128.store(d, f32x4.mul(o4, inv), 64);
    v128.store(d, f32x4.mul(o5, inv), 80);
    v128.store(d, f32x4.mul(o6, inv), 96);
    v128.store(d, f32x4.mul(o7, inv), 112);
  }
  for (; c0 + 4 <= K; c0 += 4) {
    let o0 = f32x4.splat(0);
    let vr = kvRow(v, b, 0, g) + (<usize>c0 << 2);
    for (j = 0; j < n; j++) {
      o0 = f32x4.add(o0, f32x4.mul(v128.load32_splat(at32(p, j)), v128.load(vr)));
      vr += kvStride;
    }
    v128.store(dst + (<usize>c0 << 2), f32x4.mul(o0, inv));
  }
  for (; c0 < K; c0++) {
    let o: f32 = 0;
    let vr = kvRow(v, b, 0, g) + (<usize>c0 << 2);
    for (j = 0; j < n; j++) {
      o += load<f32>(at32(p, j)) * load<f32>(vr);
      vr += kvStride;
    }
    store<f32>(dst + (<usize>c0 << 2), o / l);
  }
  store<f32>(at32(lse, rowIndex(b, h, t)), mx + <f32>Math.log(l));
}

// ---- materialised attention ----

/** Byte address of probs row (b, h, t). */
@inline
export function probsRow(probs: usize, b: i32, h: i32, t: i32): usize {
  return probs + <usize>rowIndex(b, h, t) * S * 4;
}

export function attentionNaiveForward(
  tid: i32, nth: i32, out: usize, probs: usize, q: usize, k: usize, v: usize,
  b_: i32, t_: i32, s_: i32, h_: i32, g_: i32, k_: i32, scale_: f32, causal_: i32, qOffset_: i32, kvRows_: i32,
  scratch: usize, scratchStride: i32, counter: usize,
): void {
  setDims(b_, t_, s_, h_, g_, k_, scale_, causal_, qOffset_, kvRows_);
  const mine = scratch + <usize>tid * scratchStride;
  const qBlocks = (T + BQ - 1) / BQ;
  const items = B * H * qBlocks;
  for (let item = claim(counter); item < items; item = claim(counter)) {
    const qb = item % qBlocks;
    const bh = item / qBlocks;
    naiveBlock(out, probs, q, k, v, bh / H, bh % H, qb * BQ, mine);
  }
}

function naiveBlock(out: usize, probs: usize, q: usize, k: usize, v: usize, b: i32, h: i32, t0: i32, scratch: usize): void {
  const qn = min(BQ, T - t0);
  const g = h / (H / G);
  const nMax = visible(t0 + qn - 1);
  scratchBegin(scratch);
  const qa = take(BQ * K);
  const kt = take(K * BK);
  const vb = take(BK * Kp);
  const pa = take(BQ * BK);
  const o = take(BQ * Kp);
  const tile = take(32);
  const kvStride = <usize>G * K * 4;
  const ld = <usize>S * 4;
  const p0 = probsRow(probs, b, h, t0);
  // scores
  packA(qa, qRow(q, b, t0, h), <usize>H * K * 4, 4, qn, K);
  for (let j0 = 0; j0 < nMax; j0 += BK) {
    const jn = min(BK, nMax - j0);
    packB(kt, kvRow(k, b, j0, g), 4, kvStride, K, jn);
    for (let ir = 0; ir < qn; ir += 4) {
      for (let jr = 0; jr < jn; jr += 8) {
        microEdge(qa + <usize>ir * K * 4, kt + <usize>jr * K * 4, K, p0 + <usize>ir * ld + (<usize>(j0 + jr) << 2), ld, false, min(4, qn - ir), min(8, jn - jr), tile);
      }
    }
  }
  // softmax over the visible keys of each row; masked keys get probability 0
  for (let r = 0; r < qn; r++) {
    const row = p0 + <usize>r * ld;
    const n = visible(t0 + r);
    softmaxRow(row, n);
    if (n < S) memory.fill(at32(row, n), 0, <usize>(S - n) * 4);
  }
  // O = P V
  memory.fill(o, 0, <usize>BQ * Kp * 4);
  for (let j0 = 0; j0 < nMax; j0 += BK) {
    const jn = min(BK, nMax - j0);
    packA(pa, p0 + (<usize>j0 << 2), ld, 4, qn, jn);
    packB(vb, kvRow(v, b, j0, g), kvStride, 4, jn, K);
    for (let ir = 0; ir < qn; ir += 4) {
      for (let cr = 0; cr < K; cr += 8) micro4x8(pa + <usize>ir * jn * 4, vb + <usize>cr * jn * 4, jn, o + (<usize>ir * Kp + cr) * 4, Kp * 4, true);
    }
  }
  for (let r = 0; r < qn; r++) memory.copy(qRow(out, b, t0 + r, h), o + <usize>r * Kp * 4, <usize>K * 4);
}

/** row[0:n] = softmax(scale * row[0:n]) */
function softmaxRow(row: usize, n: i32): void {
  if (n <= 0) return;
  const sv = f32x4.splat(scale);
  let mv = f32x4.splat(-Infinity);
  let j = 0;
  for (; j + 4 <= n; j += 4) {
    const s4 = f32x4.mul(v128.load(at32(row, j)), sv);
    v128.store(at32(row, j), s4);
    mv = f32x4.pmax(mv, s4); // NaN scores reach the output through exp anyway
  }
  let mx = hmax(mv);
  for (; j < n; j++) {
    const s1 = load<f32>(at32(row, j)) * scale;
    store<f32>(at32(row, j), s1);
    mx = max(mx, s1);
  }
  const mm = f32x4.splat(mx);
  let ls = f32x4.splat(0);
  j = 0;
  for (; j + 4 <= n; j += 4) {
    const e = expNegv(f32x4.sub(v128.load(at32(row, j)), mm));
    v128.store(at32(row, j), e);
    ls = f32x4.add(ls, e);
  }
  let l = hsum(ls);
  for (; j < n; j++) {
    const e = f32x4.extract_lane(expNegv(f32x4.splat(load<f32>(at32(row, j)) - mx)), 0);
    store<f32>(at32(row, j), e);
    l += e;
  }
  copyScaled(row, row, 1 / l, n);
}
