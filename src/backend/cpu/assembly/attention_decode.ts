/**
 * Attention for one query row per sequence (decoding) as split-K "flash decoding" (Dao et al.
 * 2023): the visible keys are cut into ranges of RANGE keys, which threads claim; each range
 * runs the online softmax for every head and writes unnormalised partial results (max m, sum l,
 * output o per head), which attentionDecodeCombine merges in range order. The ranges depend on
 * the number of keys only, so the result does not depend on the thread count.
 *
 * Decoding reads the whole KV cache once per token, so the order of the reads is what counts.
 * A key row holds every KV head (G * K floats); a head's slice of consecutive rows is strided by
 * G * K * 4 bytes, a new 4 KiB page every row or two, where the hardware prefetchers stop.
 * So the keys are walked in blocks of BJ rows, each pass reading row after row with every head
 * of a row at once: memory sees one sequential stream per share. (Four rows at a time, a head
 * at a time, was 1.3x slower: 2048 keys, 12 heads of 64, two threads, 582 -> 446 us a layer.)
 *
 * Partials: for sequence b and range r, H maxima, H sums, then H rows of Kp outputs
 * (attentionDecodePartialFloats per (b, r)).
 */
import { claim, splitLo, splitHi, hsum, hmax, at32 } from "./common";
import { expNegv } from "./simd_math";
import { H, G, K, Kp, scale, B, setDims, qRow, kvRow, visible, scratchBegin, take, hsum4 } from "./attention_common";

/** keys per block: their rows (BJ * G * K floats) stay in L2 while every head reads them */
const BJ = 64;
/** keys per claimed range */
const RANGE = 128;

/** Ranges of one sequence with `s_` keys (the partials hold B times as many). */
export function attentionDecodeRanges(s_: i32): i32 {
  return max(1, (s_ + RANGE - 1) / RANGE);
}

/** Floats of one share's partial results for one sequence. */
export function attentionDecodePartialFloats(h_: i32, k_: i32): i32 {
  return 2 * h_ + h_ * ((k_ + 7) & ~7);
}

/** Scratch floats per thread attentionDecode needs. */
export function attentionDecodeScratchFloats(h_: i32): i32 {
  return h_ * BJ + 64;
}

export function attentionDecode(
  tid: i32, nth: i32, partials: usize, q: usize, k: usize, v: usize,
  b_: i32, s_: i32, h_: i32, g_: i32, k_: i32, scale_: f32, causal_: i32, qOffset_: i32, kvRows_: i32,
  scratch: usize, scratchStride: i32, counter: usize,
): void {
  setDims(b_, 1, s_, h_, g_, k_, scale_, causal_, qOffset_, kvRows_);
  scratchBegin(scratch + <usize>tid * scratchStride);
  const sc = take(H * BJ);
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
    const hi = min(n, (r + 1) * RANGE);
    for (let j0 = r * RANGE; j0 < hi; j0 += BJ) {
      const jn = min(BJ, hi - j0);
      scoreBlock(sc, q, k, b, j0, jn);
      for (let h = 0; h < H; h++) softmaxBlock(at32(sc, h * BJ), jn, at32(m, h), at32(l, h), at32(o, h * Kp));
      valueBlock(o, sc, v, b, j0, jn);
    }
  }
}

/**
 * sc[h, 0:jn] = scale * q_h . k_j for keys j0 .. j0 + jn: key row after key row (every head of
 * a row, four heads per pass), so the cache is read in address order (see the header).
 */
function scoreBlock(sc: usize, q: usize, k: usize, b: i32, j0: i32, jn: i32): void {
  const sv = f32x4.splat(scale);
  const group = H / G;
  const headBytes = <usize>K * 4;
  const q0 = qRow(q, b, 0, 0);
  for (let j = 0; j < jn; j++) {
    const row = kvRow(k, b, j0 + j, 0);
    let h = 0;
    for (; h + 4 <= H; h += 4) {
      const s4 = f32x4.mul(dotFourHeads(q0 + <usize>h * headBytes, row, h, group), sv);
      store<f32>(at32(sc, h * BJ + j), f32x4.extract_lane(s4, 0));
      store<f32>(at32(sc, (h + 1) * BJ + j), f32x4.extract_lane(s4, 1));
      store<f32>(at32(sc, (h + 2) * BJ + j), f32x4.extract_lane(s4, 2));
      store<f32>(at32(sc, (h + 3) * BJ + j), f32x4.extract_lane(s4, 3));
    }
    for (; h < H; h++) store<f32>(at32(sc, h * BJ + j), dot(q0 + <usize>h * headBytes, row + <usize>(h / group) * headBytes) * scale);
  }
}

/** q_{h+i} . k_(h+i)/group for i < 4, as one vector: the q rows consecutive at qh, the key row's heads in `row`. */
@inline function dotFourHeads(qh: usize, row: usize, h: i32, group: i32): v128 {
  const headBytes = <usize>K * 4;
  const q1 = qh + headBytes, q2 = q1 + headBytes, q3 = q2 + headBytes;
  const k0 = row + <usize>(h / group) * headBytes;
  const k1 = row + <usize>((h + 1) / group) * headBytes;
  const k2 = row + <usize>((h + 2) / group) * headBytes;
  const k3 = row + <usize>((h + 3) / group) * headBytes;
  const K4 = K & ~3;
  let s0 = f32x4.splat(0), s1 = f32x4.splat(0), s2 = f32x4.splat(0), s3 = f32x4.splat(0);
  for (let c = 0; c < K4; c += 4) {
    const o = <usize>c << 2;
    s0 = f32x4.add(s0, f32x4.mul(v128.load(qh + o), v128.load(k0 + o)));
    s1 = f32x4.add(s1, f32x4.mul(v128.load(q1 + o), v128.load(k1 + o)));
    s2 = f32x4.add(s2, f32x4.mul(v128.load(q2 + o), v128.load(k2 + o)));
    s3 = f32x4.add(s3, f32x4.mul(v128.load(q3 + o), v128.load(k3 + o)));
  }
  let s4 = hsum4(s0, s1, s2, s3);
  for (let c = K4; c < K; c++) {
    const o = <usize>c << 2;
    const qs = f32x4(load<f32>(qh + o), load<f32>(q1 + o), load<f32>(q2 + o), load<f32>(q3 + o));
    s4 = f32x4.add(s4, f32x4.mul(qs, f32x4(load<f32>(k0 + o), load<f32>(k1 + o), load<f32>(k2 + o), load<f32>(k3 + o))));
  }
  return s4;
}

/** x . y over K floats. */
@inline function dot(x: usize, y: usize): f32 {
  const K4 = K & ~3;
  let s = f32x4.splat(0);
  let c = 0;
  for (; c < K4; c += 4) s = f32x4.add(s, f32x4.mul(v128.load(at32(x, c)), v128.load(at32(y, c))));
  let t = hsum(s);
  for (; c < K; c++) t += load<f32>(at32(x, c)) * load<f32>(at32(y, c));
  return t;
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
 * o[h, 0:K] += sum over the block's keys of p[h, j] * v_j (head h's slice): value row after value
 * row, every head of a row in turn (the rows in address order, as scoreBlock); o, H * Kp floats,
 * stays in L1.
 */
function valueBlock(o: usize, sc: usize, v: usize, b: i32, j0: i32, jn: i32): void {
  const group = H / G;
  const headBytes = <usize>K * 4;
  const K4 = K & ~3;
  for (let j = 0; j < jn; j++) {
    const row = kvRow(v, b, j0 + j, 0);
    for (let h = 0; h < H; h++) {
      const pj = load<f32>(at32(sc, h * BJ + j));
      const pv = f32x4.splat(pj);
      const vr = row + <usize>(h / group) * headBytes;
      const oh = at32(o, h * Kp);
      let c = 0;
      for (; c + 16 <= K; c += 16) {
        const d = oh + (<usize>c << 2);
        const w = vr + (<usize>c << 2);
        v128.store(d, f32x4.add(v128.load(d), f32x4.mul(pv, v128.load(w))));
        v128.store(d, f32x4.add(v128.load(d, 16), f32x4.mul(pv, v128.load(w, 16))), 16);
        v128.store(d, f32x4.add(v128.load(d, 32), f32x4.mul(pv, v128.load(w, 32))), 32);
        v128.store(d, f32x4.add(v128.load(d, 48), f32x4.mul(pv, v128.load(w, 48))), 48);
      }
      for (; c < K4; c += 4) v128.store(at32(oh, c), f32x4.add(v128.load(at32(oh, c)), f32x4.mul(pv, v128.load(at32(vr, c)))));
      for (; c < K; c++) store<f32>(at32(oh, c), load<f32>(at32(oh, c)) + pj * load<f32>(at32(vr, c)));
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

