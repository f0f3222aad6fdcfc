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
 * So the keys are walked in blocks of BJ rows, every head per block: within a block the rows are
 * read in order, all their cache lines are used while they are in L1/L2, and memory sees one
 * sequential stream per share.
 *
 * Partials: for sequence b and range r, H maxima, H sums, then H rows of Kp outputs
 * (attentionDecodePartialFloats per (b, r)).
 */
import { claim, splitLo, splitHi, hsum, hmax, at32 } from "./common";
import { expNegv } from "./simd_math";
import { H, G, K, Kp, scale, B, setDims, qRow, kvRow, visible, scratchBegin, take, dotFourKeys } from "./attention_common";

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

/** sc[h, 0:jn] = scale * q_h . k_j for keys j0 .. j0 + jn, four keys per pass per head. */
function scoreBlock(sc: usize, q: usize, k: usize, b: i32, j0: i32, jn: i32): void {
  const kvStride = <usize>G * K * 4;
  const K4 = K & ~3;
  const sv = f32x4.splat(scale);
  const group = H / G;
  let j = 0;
  for (; j + 4 <= jn; j += 4) {
    const row = kvRow(k, b, j0 + j, 0);
    for (let h = 0; h < H; h++) {
      const qr = qRow(q, b, 0, h);
      const s4 = dotFourKeys(qr, row + <usize>(h / group) * K * 4, kvStride);
      v128.store(at32(sc, h * BJ + j), f32x4.mul(s4, sv));
    }
  }
  for (; j < jn; j++) {
    const row = kvRow(k, b, j0 + j, 0);
    for (let h = 0; h < H; h++) {
      const qr = qRow(q, b, 0, h);
      const kr = row + <usize>(h / group) * K * 4;
      let s = f32x4.splat(0);
      let c = 0;
      for (; c < K4; c += 4) s = f32x4.add(s, f32x4.mul(v128.load(at32(qr, c)), v128.load(at32(kr, c))));
      let t = hsum(s);
      for (; c < K; c++) t += load<f32>(at32(qr, c)) * load<f32>(at32(kr, c));
      store<f32>(at32(sc, h * BJ + j), t * scale);
    }
  }
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

/** o[h, 0:K] += sum over the block's keys of p[h, j] * v_j (head h's slice), 32 columns at a time. */
function valueBlock(o: usize, sc: usize, v: usize, b: i32, j0: i32, jn: i32): void {
  const kvStride = <usize>G * K * 4;
  const group = H / G;
  for (let h = 0; h < H; h++) {
    const p = at32(sc, h * BJ);
    const oh = at32(o, h * Kp);
    const v0 = kvRow(v, b, j0, 0) + <usize>(h / group) * K * 4;
    let c0 = 0;
    for (; c0 + 32 <= K; c0 += 32) {
      const d = oh + (<usize>c0 << 2);
      let o0 = v128.load(d), o1 = v128.load(d, 16), o2 = v128.load(d, 32), o3 = v128.load(d, 48);
      let o4 = v128.load(d, 64), o5 = v128.load(d, 80), o6 = v128.load(d, 96), o7 = v128.load(d, 112);
      let vr = v0 + (<usize>c0 << 2);
      for (let j = 0; j < jn; j++) {
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
      v128.store(d, o0);
      v128.store(d, o1, 16);
      v128.store(d, o2, 32);
      v128.store(d, o3, 48);
      v128.store(d, o4, 64);
      v128.store(d, o5, 80);
      v128.store(d, o6, 96);
      v128.store(d, o7, 112);
    }
    for (; c0 < K; c0++) {
      let acc = load<f32>(at32(oh, c0));
      let vr = v0 + (<usize>c0 << 2);
      for (let j = 0; j < jn; j++) {
        acc += load<f32>(at32(p, j)) * load<f32>(vr);
        vr += kvStride;
      }
      store<f32>(at32(oh, c0), acc);
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

