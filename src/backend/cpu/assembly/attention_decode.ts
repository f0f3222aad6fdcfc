/**
 * Attention for one query row per sequence (decoding) as split-K "flash decoding" (Dao et al.
 * 2023): the visible keys are cut into ranges (attentionDecodeRange), which threads claim; each
 * range runs the softmax for every head and writes unnormalised partial results (max m, sum l,
 * output o per head), which attentionDecodeCombine merges in range order. The ranges depend on
 * the number of keys only, so the result does not depend on the thread count.
 *
 * Decoding reads the whole KV cache once per token, so the order of the reads is what counts.
 * A key row holds every KV head (G * K floats); a head's slice of consecutive rows is strided by
 * G * K * 4 bytes, a new 4 KiB page every row or two, where the hardware prefetchers stop.
 * So each range is one block whose passes (scores, then values) read row after row with every
 * head of a row at once: memory sees one sequential stream per pass. (Four rows at a time, a head
 * at a time, was 1.3x slower: 2048 keys, 12 heads of 64, two threads, 582 -> 446 us a layer.)
 *
 * An f16 KV cache (Backend.kvCache) is read the way matvec.ts reads f16 weights: each value is
 * moved into place by two integer ops (its f32 reading is the value times 2^-112, exactly)
 * against operands pre-scaled by 2^112 (the query, when every |q| < 2^16, and the probabilities,
 * which are <= 1), so every product is the one an exact conversion gives. A block holding an Inf
 * or NaN (exponent 31, which the shortcut gets wrong), or a query too large to scale, takes the
 * exact conversion of half.ts.
 *
 * Partials: for sequence b and range r, H maxima, H sums, then H rows of Kp outputs
 * (attentionDecodePartialFloats per (b, r)).
 */
import { claim, splitLo, splitHi, hsum, hmax, at32, madd } from "./common";
import { expNegv } from "./simd_math";
import { H, G, K, Kp, scale, B, kvShift, setDims, setKvHalf, qRow, kvRow, visible, scratchBegin, take, hsum4 } from "./attention_common";
import { F16, loadHalf4, loadHalf1 } from "./half";

/** how keys and values are read: f32, f16 moved into place against pre-scaled operands, f16 widened exactly */
const F32_KV = 0;
const F16_RAW = 1;
const F16_EXACT = 2;
/** 2^112 (see the header) */
const RAW_SCALE: f32 = 5.192296858534828e33;

/**
 * Keys per claimed range, each range one block of the score and value passes: S / 8 rounded up
 * to a power of two, 128 to 256. Long blocks read the keys, then the values, in long runs of
 * rows (f32 cache, 2048 keys, 12 heads of 64, two threads, block sizes alternating in one
 * process: 64-key blocks 394-409 us a layer, 128-key blocks 374-389, 256-key blocks 363-374; an
 * f16 cache 319-331 us whatever the block). From 1024 keys on there are eight ranges or more,
 * for up to eight threads. The size depends on S only, so the result does not depend on the
 * thread count.
 */
const RANGE_MIN = 128;
const RANGE_MAX = 256;

/** keys per block (= per range) of the call in hand (attentionDecodeRange of its S) */
let BJ = RANGE_MIN;

export function attentionDecodeRange(s_: i32): i32 {
  let r = RANGE_MIN;
  while (r < RANGE_MAX && r * 8 < s_) r <<= 1;
  return r;
}

/** Ranges of one sequence with `s_` keys (the partials hold B times as many). */
export function attentionDecodeRanges(s_: i32): i32 {
  const r = attentionDecodeRange(s_);
  return max(1, (s_ + r - 1) / r);
}

/** Floats of one share's partial results for one sequence. */
export function attentionDecodePartialFloats(h_: i32, k_: i32): i32 {
  return 2 * h_ + h_ * ((k_ + 7) & ~7);
}

/** Scratch floats per thread attentionDecode needs (a block's scores, the scaled query). */
export function attentionDecodeScratchFloats(h_: i32, k_: i32): i32 {
  return h_ * RANGE_MAX + h_ * k_ + 64;
}

export function attentionDecode(
  tid: i32, nth: i32, partials: usize, q: usize, k: usize, v: usize,
  b_: i32, s_: i32, h_: i32, g_: i32, k_: i32, scale_: f32, causal_: i32, qOffset_: i32, kvRows_: i32,
  scratch: usize, scratchStride: i32, counter: usize, kvHalf: i32,
): void {
  setDims(b_, 1, s_, h_, g_, k_, scale_, causal_, qOffset_, kvRows_);
  setKvHalf(kvHalf);
  BJ = attentionDecodeRange(s_);
  scratchBegin(scratch + <usize>tid * scratchStride);
  const sc = take(H * BJ);
  const qs = take(H * K); // the query of the sequence in hand, times 2^112 (F16_RAW)
  let qb = -1;
  let qScaled = false;
  const per = attentionDecodePartialFloats(H, K);
  const ranges = attentionDecodeRanges(s_);
  const n = visible(0);
  for (let item = claim(counter); item < B * ranges; item = claim(counter)) {
    const b = item / ranges;
    const r = item % ranges;
    const part = partials + (<usize>item * per) * 4;
    const m = part;
    const l = at32(part, H);
    const o = at32(part, 2 * H);
    for (let h = 0; h < H; h++) {
      store<f32>(at32(m, h), -Infinity);
      store<f32>(at32(l, h), 0);
    }
    memory.fill(o, 0, <usize>H * Kp * 4);
    if (kvHalf != 0 && qb != b) {
      qScaled = scaleQuery(qs, qRow(q, b, 0, 0));
      qb = b;
    }
    // the range is one block: its keys, then its values, each read row after row
    const j0 = r * BJ;
    const jn = min(BJ, n - j0);
    if (jn <= 0) continue;
    const exact = kvHalf != 0 && hasInfNaN(k, v, b, j0, jn);
    if (kvHalf == 0) scoreBlock(F32_KV, sc, qRow(q, b, 0, 0), k, b, j0, jn);
    else if (qScaled && !exact) scoreBlock(F16_RAW, sc, qs, k, b, j0, jn);
    else scoreBlock(F16_EXACT, sc, qRow(q, b, 0, 0), k, b, j0, jn);
    for (let h = 0; h < H; h++) softmaxBlock(at32(sc, h * BJ), jn, at32(m, h), at32(l, h), at32(o, h * Kp));
    if (kvHalf == 0) valueBlock(F32_KV, o, sc, v, b, j0, jn);
    else if (!exact) valueBlock(F16_RAW, o, sc, v, b, j0, jn);
    else valueBlock(F16_EXACT, o, sc, v, b, j0, jn);
  }
}

/** Four keys or values at p as f32 lanes (F16_RAW: times 2^-112); `mode` is constant after inlining. */
@inline function kv4(mode: i32, p: usize): v128 {
  if (mode == F32_KV) return v128.load(p);
  // sign-extended to 32 bits and shifted by 13: the sign's copies land at 28..31, the mask keeps bit 31
  if (mode == F16_RAW) return v128.and(i32x4.shl(v128.load16x4_s(p), 13), i32x4.splat(0x8fffe000));
  return loadHalf4(p, F16);
}

@inline function kv1(mode: i32, p: usize): f32 {
  if (mode == F32_KV) return load<f32>(p);
  if (mode == F16_RAW) return f32x4.extract_lane(v128.and(i32x4.shl(i32x4.splat(<i32>load<i16>(p)), 13), i32x4.splat(0x8fffe000)), 0);
  return loadHalf1(p, F16);
}

/**
 * sc[h, 0:jn] = scale * q_h . k_j for keys j0 .. j0 + jn: key row after key row (every head of
 * a row, four heads per pass), so the cache is read in address order (see the header). `qh`:
 * the query's H rows (times 2^112 for F16_RAW).
 */
@inline function scoreBlock(mode: i32, sc: usize, qh: usize, k: usize, b: i32, j0: i32, jn: i32): void {
  const sv = f32x4.splat(scale);
  const group = H / G;
  const es = kvShift;
  for (let j = 0; j < jn; j++) {
    const row = kvRow(k, b, j0 + j, 0);
    let h = 0;
    for (; h + 4 <= H; h += 4) {
      const s4 = f32x4.mul(dotFourHeads(mode, qh + <usize>h * K * 4, row, h, group), sv);
      store<f32>(at32(sc, h * BJ + j), f32x4.extract_lane(s4, 0));
      store<f32>(at32(sc, (h + 1) * BJ + j), f32x4.extract_lane(s4, 1));
      store<f32>(at32(sc, (h + 2) * BJ + j), f32x4.extract_lane(s4, 2));
      store<f32>(at32(sc, (h + 3) * BJ + j), f32x4.extract_lane(s4, 3));
    }
    for (; h < H; h++) store<f32>(at32(sc, h * BJ + j), dot(mode, qh + <usize>h * K * 4, row + ((<usize>(h / group) * K) << es)) * scale);
  }
}

/** q_{h+i} . k_(h+i)/group for i < 4, as one vector: the q rows consecutive at qh, the key row's heads in `row`. */
@inline function dotFourHeads(mode: i32, qh: usize, row: usize, h: i32, group: i32): v128 {
  const es = kvShift;
  const qb = <usize>K * 4;
  const q1 = qh + qb, q2 = q1 + qb, q3 = q2 + qb;
  const k0 = row + ((<usize>(h / group) * K) << es);
  const k1 = row + ((<usize>((h + 1) / group) * K) << es);
  const k2 = row + ((<usize>((h + 2) / group) * K) << es);
  const k3 = row + ((<usize>((h + 3) / group) * K) << es);
  const K4 = K & ~3;
  let s0 = f32x4.splat(0), s1 = f32x4.splat(0), s2 = f32x4.splat(0), s3 = f32x4.splat(0);
  for (let c = 0; c < K4; c += 4) {
    const o = <usize>c << 2;
    const e = <usize>c << es;
    s0 = madd(v128.load(qh + o), kv4(mode, k0 + e), s0);
    s1 = madd(v128.load(q1 + o), kv4(mode, k1 + e), s1);
    s2 = madd(v128.load(q2 + o), kv4(mode, k2 + e), s2);
    s3 = madd(v128.load(q3 + o), kv4(mode, k3 + e), s3);
  }
  let s4 = hsum4(s0, s1, s2, s3);
  for (let c = K4; c < K; c++) {
    const o = <usize>c << 2;
    const e = <usize>c << es;
    const qv = f32x4(load<f32>(qh + o), load<f32>(q1 + o), load<f32>(q2 + o), load<f32>(q3 + o));
    s4 = f32x4.add(s4, f32x4.mul(qv, f32x4(kv1(mode, k0 + e), kv1(mode, k1 + e), kv1(mode, k2 + e), kv1(mode, k3 + e))));
  }
  return s4;
}

/** x . y over K values, x f32, y keys read by `mode`. */
@inline function dot(mode: i32, x: usize, y: usize): f32 {
  const es = kvShift;
  const K4 = K & ~3;
  let s = f32x4.splat(0);
  let c = 0;
  for (; c < K4; c += 4) s = madd(v128.load(at32(x, c)), kv4(mode, y + (<usize>c << es)), s);
  let t = hsum(s);
  for (; c < K; c++) t += load<f32>(at32(x, c)) * kv1(mode, y + (<usize>c << es));
  return t;
}

/** qs = the query's H rows (at q) times 2^112, when every |q| < 2^16 (so nothing overflows); returns whether it did. */
function scaleQuery(qs: usize, q: usize): bool {
  const n = H * K;
  let big: f32 = 0;
  for (let i = 0; i < n; i++) big = max(big, abs(load<f32>(at32(q, i))));
  if (!(big < 65536)) return false;
  for (let i = 0; i < n; i++) store<f32>(at32(qs, i), load<f32>(at32(q, i)) * RAW_SCALE);
  return true;
}

/** Whether the f16 keys or values of rows j0 .. j0 + jn hold an Inf or NaN (exponent 31). */
function hasInfNaN(k: usize, v: usize, b: i32, j0: i32, jn: i32): bool {
  const n = jn * G * K; // the rows are contiguous
  const k0 = kvRow(k, b, j0, 0);
  const v0 = kvRow(v, b, j0, 0);
  const m = i16x8.splat(0x7fff);
  let e = i16x8.splat(0);
  let i = 0;
  for (; i + 8 <= n; i += 8) {
    const o = <usize>i << 1;
    e = i16x8.max_u(e, i16x8.max_u(v128.and(v128.load(k0 + o), m), v128.and(v128.load(v0 + o), m)));
  }
  // fold the eight lanes: halves, quarters, pairs
  e = i16x8.max_u(e, i8x16.shuffle(e, e, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7));
  e = i16x8.max_u(e, i8x16.shuffle(e, e, 4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11));
  e = i16x8.max_u(e, i8x16.shuffle(e, e, 2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13));
  let big = <i32>i16x8.extract_lane_u(e, 0);
  for (; i < n; i++) big = max(big, max(<i32>(load<u16>(k0 + (<usize>i << 1)) & 0x7fff), <i32>(load<u16>(v0 + (<usize>i << 1)) & 0x7fff)));
  return big >= 0x7c00;
}

/**
 * Online softmax over one block of one head's scores (in place: they become e^(s - m_new)):
 * the running max m and sum l are updated, and the output row o rescaled when m grows.
 */
function softmaxBlock(row: usize, jn: i32, m: usize, l: usize, o: usize): void {
  let mv = f32x4.splat(-Infinity);
  let j = 0;
  for (; j + 4 <= jn; j += 4) mv = f32x4.pmax(mv, v128.load(at32(row, j)));
  let mBlock = hmax(mv);
  for (; j < jn; j++) mBlock = max(mBlock, load<f32>(at32(row, j)));
  const mOld = load<f32>(m);
  const mNew = max(mOld, mBlock);
  const mn = f32x4.splat(mNew);
  let ps = f32x4.splat(0);
  j = 0;
  for (; j + 4 <= jn; j += 4) {
    const p = expNegv(f32x4.sub(v128.load(at32(row, j)), mn));
    v128.store(at32(row, j), p);
    ps = f32x4.add(ps, p);
  }
  let psum = hsum(ps);
  for (; j < jn; j++) {
    const p = f32x4.extract_lane(expNegv(f32x4.splat(load<f32>(at32(row, j)) - mNew)), 0);
    store<f32>(at32(row, j), p);
    psum += p;
  }
  const corr = mOld == -Infinity ? <f32>0 : f32x4.extract_lane(expNegv(f32x4.splat(mOld - mNew)), 0);
  store<f32>(l, load<f32>(l) * corr + psum);
  store<f32>(m, mNew);
  if (corr != 1) {
    const cv = f32x4.splat(corr);
    for (let c = 0; c < Kp; c += 4) v128.store(at32(o, c), f32x4.mul(v128.load(at32(o, c)), cv));
  }
}

/**
 * o[h, 0:K] += sum over the block's keys of p[h, j] * v_j (head h's slice), the rows in address
 * order as scoreBlock; o, H * Kp floats, stays in L1. f32 rows go one at a time, every head of a
 * row in turn; f16 rows four at a time (a head's output loaded and stored once per four rows):
 * 2048 keys, 12 heads of 64, two threads: f16 464 -> 380 us a layer, while f32 went 435 -> 560
 * us that way (its four rows are four 3 KiB strides apart). For F16_RAW the probabilities are
 * scaled by 2^112 as they are read.
 */
@inline function valueBlock(mode: i32, o: usize, sc: usize, v: usize, b: i32, j0: i32, jn: i32): void {
  const group = H / G;
  const es = kvShift;
  const ps: f32 = mode == F16_RAW ? RAW_SCALE : 1;
  const rs = (<usize>G * K) << es; // bytes from one value row to the next
  const K4 = K & ~3;
  let j = 0;
  if (mode != F32_KV) for (; j + 4 <= jn; j += 4) {
    const row = kvRow(v, b, j0 + j, 0);
    for (let h = 0; h < H; h++) {
      const p = at32(sc, h * BJ + j);
      const p0 = load<f32>(p) * ps, p1 = load<f32>(p, 4) * ps, p2 = load<f32>(p, 8) * ps, p3 = load<f32>(p, 12) * ps;
      const pv0 = f32x4.splat(p0), pv1 = f32x4.splat(p1), pv2 = f32x4.splat(p2), pv3 = f32x4.splat(p3);
      const v0 = row + ((<usize>(h / group) * K) << es);
      const oh = at32(o, h * Kp);
      let c = 0;
      for (; c < K4; c += 4) {
        const d = oh + (<usize>c << 2);
        const w = v0 + (<usize>c << es);
        const a = madd(pv1, kv4(mode, w + rs), f32x4.mul(pv0, kv4(mode, w)));
        const e = madd(pv3, kv4(mode, w + 3 * rs), f32x4.mul(pv2, kv4(mode, w + 2 * rs)));
        v128.store(d, f32x4.add(v128.load(d), f32x4.add(a, e)));
      }
      for (; c < K; c++) {
        const w = v0 + (<usize>c << es);
        store<f32>(at32(oh, c), load<f32>(at32(oh, c)) + (p0 * kv1(mode, w) + p1 * kv1(mode, w + rs)) + (p2 * kv1(mode, w + 2 * rs) + p3 * kv1(mode, w + 3 * rs)));
      }
    }
  }
  for (; j < jn; j++) {
    const row = kvRow(v, b, j0 + j, 0);
    for (let h = 0; h < H; h++) {
      const pj = load<f32>(at32(sc, h * BJ + j)) * ps;
      const pv = f32x4.splat(pj);
      const vr = row + ((<usize>(h / group) * K) << es);
      const oh = at32(o, h * Kp);
      let c = 0;
      for (; c < K4; c += 4) v128.store(at32(oh, c), madd(pv, kv4(mode, vr + (<usize>c << es)), v128.load(at32(oh, c))));
      for (; c < K; c++) store<f32>(at32(oh, c), load<f32>(at32(oh, c)) + pj * kv1(mode, vr + (<usize>c << es)));
    }
  }
}

/**
 * out (B, 1, H, K) and lse (B, H, 1) from the ranges' partials: per head, the ranges' sums and
 * outputs rescaled to the largest max, added in range order. Threads split the (b, h) rows.
 */
export function attentionDecodeCombine(tid: i32, nth: i32, out: usize, lse: usize, partials: usize, b_: i32, s_: i32, h_: i32, k_: i32): void {
  const per = attentionDecodePartialFloats(h_, k_);
  const ranges = attentionDecodeRanges(s_);
  const kp = (k_ + 7) & ~7;
  const rows = b_ * h_;
  const lo = splitLo(rows, tid, nth, 1);
  const hi = splitHi(rows, tid, nth, 1);
  for (let row = lo; row < hi; row++) {
    const b = row / h_;
    const h = row % h_;
    const first = partials + (<usize>b * ranges * per) * 4;
    let mx: f32 = -Infinity;
    for (let r = 0; r < ranges; r++) mx = max(mx, load<f32>(at32(first + (<usize>r * per) * 4, h)));
    const dst = out + (<usize>row * k_) * 4;
    memory.fill(dst, 0, <usize>k_ * 4);
    if (mx == -Infinity) {
      // no visible key (or every score -inf): zeros, as the other attention paths write
      store<f32>(at32(lse, row), -Infinity);
      continue;
    }
    let total: f32 = 0;
    for (let r = 0; r < ranges; r++) {
      const part = first + (<usize>r * per) * 4;
      const ms = load<f32>(at32(part, h));
      if (ms == -Infinity) continue;
      const w = f32x4.extract_lane(expNegv(f32x4.splat(ms - mx)), 0);
      total += w * load<f32>(at32(part, h_ + h));
      const os = at32(part, 2 * h_ + h * kp);
      const wv = f32x4.splat(w);
      let c = 0;
      for (; c + 4 <= k_; c += 4) v128.store(at32(dst, c), f32x4.add(v128.load(at32(dst, c)), f32x4.mul(wv, v128.load(at32(os, c)))));
      for (; c < k_; c++) store<f32>(at32(dst, c), load<f32>(at32(dst, c)) + w * load<f32>(at32(os, c)));
    }
    const inv = f32x4.splat(1 / total);
    let c = 0;
    for (; c + 4 <= k_; c += 4) v128.store(at32(dst, c), f32x4.mul(v128.load(at32(dst, c)), inv));
    for (; c < k_; c++) store<f32>(at32(dst, c), load<f32>(at32(dst, c)) / total);
    store<f32>(at32(lse, row), mx + <f32>Math.log(total));
  }
}

