/**
 * Attention backward kernels (FlashAttention-2, Dao 2023, Alg. 2), shared by the tiled and the
 * materialised forms. With P the probabilities, D_t = rowsum(dO_t * O_t) = sum_j P_tj dP_tj:
 *   dV = P^T dO,  dP = dO V^T,  dS = P * (dP - D),  dQ = scale dS K,  dK = scale dS^T Q.
 * The tiled form recomputes P = exp(scale Q K^T - lse) block by block; the materialised form
 * reads P from probs. Work items are (b, KV head g, key block): an item owns its rows of dK
 * and dV and loops over the query heads of its group and the query blocks that see its keys.
 * dQ sums over key blocks, so each thread accumulates into its own dQ buffer (thread 0 into
 * dq itself); reducePartials adds the others afterwards. All products use the 4x8 micro-kernel.
 */
import { micro4x8, microEdge, packA, packB } from "./gemm";
import { claim, splitLo, splitHi, hsum, at32 } from "./common";
import { expNegv } from "./simd_math";
import {
  BQ, BK, B, T, S, H, G, K, Kp, scale, causal, qOffset, kvRows,
  setDims, qRow, kvRow, rowIndex, visible, visibleInBlock, scratchBegin, take,
} from "./attention_common";
import { probsRow } from "./attention";

/** D[b, h, t] = dout[b, t, h] . out[b, t, h] (tiled form). */
export function attentionRowDot(tid: i32, nth: i32, D: usize, dout: usize, out: usize, b_: i32, t_: i32, h_: i32, k_: i32): void {
  setDims(b_, t_, 0, h_, 1, k_, 1, 0, 0, 0);
  const rows = B * T * H;
  const lo = splitLo(rows, tid, nth, 1);
  const hi = splitHi(rows, tid, nth, 1);
  for (let i = lo; i < hi; i++) {
    const h = i % H;
    const bt = i / H;
    const t = bt % T;
    const b = bt / T;
    const a = dout + <usize>i * K * 4;
    const o = out + <usize>i * K * 4;
    let s0 = f32x4.splat(0);
    let c = 0;
    for (; c + 4 <= K; c += 4) s0 = f32x4.add(s0, f32x4.mul(v128.load(at32(a, c)), v128.load(at32(o, c))));
    let s = hsum(s0);
    for (; c < K; c++) s += load<f32>(at32(a, c)) * load<f32>(at32(o, c));
    store<f32>(at32(D, rowIndex(b, h, t)), s);
  }
}

/** D[b, h, t] = dout[b, t, h] . (P V)[t] (materialised form: O is recomputed from probs). */
export function attentionNaiveRowDot(
  tid: i32, nth: i32, D: usize, dout: usize, probs: usize, v: usize,
  b_: i32, t_: i32, s_: i32, h_: i32, g_: i32, k_: i32, kvRows_: i32,
  scratch: usize, scratchStride: i32, counter: usize,
): void {
  setDims(b_, t_, s_, h_, g_, k_, 1, 0, 0, kvRows_);
  const mine = scratch + <usize>tid * scratchStride;
  const qBlocks = (T + BQ - 1) / BQ;
  const items = B * H * qBlocks;
  for (let item = claim(counter); item < items; item = claim(counter)) {
    const qb = item % qBlocks;
    const bh = item / qBlocks;
    const b = bh / H;
    const h = bh % H;
    const t0 = qb * BQ;
    const qn = min(BQ, T - t0);
    const g = h / (H / G);
    scratchBegin(mine);
    const pa = take(BQ * BK);
    const vb = take(BK * Kp);
    const o = take(BQ * Kp);
    memory.fill(o, 0, <usize>BQ * Kp * 4);
    const p0 = probsRow(probs, b, h, t0);
    for (let j0 = 0; j0 < S; j0 += BK) {
      const jn = min(BK, S - j0);
      packA(pa, p0 + (<usize>j0 << 2), <usize>S * 4, 4, qn, jn);
      packB(vb, kvRow(v, b, j0, g), <usize>G * K * 4, 4, jn, K);
      for (let ir = 0; ir < qn; ir += 4) {
        for (let cr = 0; cr < K; cr += 8) micro4x8(pa + <usize>ir * jn * 4, vb + <usize>cr * jn * 4, jn, o + (<usize>ir * Kp + cr) * 4, Kp * 4, true);
      }
    }
    for (let r = 0; r < qn; r++) {
      const a = qRow(dout, b, t0 + r, h);
      const orow = o + <usize>r * Kp * 4;
      let s: f32 = 0;
      for (let c = 0; c < K; c++) s += load<f32>(at32(a, c)) * load<f32>(at32(orow, c));
      store<f32>(at32(D, rowIndex(b, h, t0 + r)), s);
    }
  }
}

/**
 * dq, dk, dv from dout. `naive` selects where P comes from (probs, or recomputed from q, k, lse).
 * dqParts holds nth - 1 extra dQ buffers of dqPartStride bytes (threads 1..nth-1).
 */
export function attentionBackward(
  tid: i32, nth: i32, dq: usize, dk: usize, dv: usize, dout: usize, q: usize, k: usize, v: usize,
  lse: usize, probs: usize, D: usize, naive: i32,
  b_: i32, t_: i32, s_: i32, h_: i32, g_: i32, k_: i32, scale_: f32, causal_: i32, qOffset_: i32, kvRows_: i32,
  dqParts: usize, dqPartStride: i32, scratch: usize, scratchStride: i32, counter: usize,
): void {
  setDims(b_, t_, s_, h_, g_, k_, scale_, causal_, qOffset_, kvRows_);
  const myDq = tid == 0 ? dq : dqParts + <usize>(tid - 1) * dqPartStride;
  memory.fill(myDq, 0, <usize>B * T * H * K * 4);
  // rows past S hold no keys: their gradients are zero
  const extra = kvRows - S;
  if (extra > 0) {
    const lo = splitLo(B * extra, tid, nth, 1);
    const hi = splitHi(B * extra, tid, nth, 1);
    for (let i = lo; i < hi; i++) {
      const b = i / extra;
      const j = S + (i % extra);
      memory.fill(kvRow(dk, b, j, 0), 0, <usize>G * K * 4);
      memory.fill(kvRow(dv, b, j, 0), 0, <usize>G * K * 4);
    }
  }
  const mine = scratch + <usize>tid * scratchStride;
  const kBlocks = (S + BK - 1) / BK;
  const items = B * G * kBlocks;
  for (let item = claim(counter); item < items; item = claim(counter)) {
    const kb = item % kBlocks;
    const bg = item / kBlocks;
    keyBlock(myDq, dk, dv, dout, q, k, v, lse, probs, D, naive != 0, bg / G, bg % G, kb * BK, mine);
  }
}

function keyBlock(
  dq: usize, dk: usize, dv: usize, dout: usize, q: usize, k: usize, v: usize, lse: usize, probs: usize, D: usize,
  naive: bool, b: i32, g: i32, j0: i32, scratch: usize,
): void {
  const jn = min(BK, S - j0);
  scratchBegin(scratch);
  const qa = take(BQ * K);
  const qbp = take(BQ * Kp);
  const doa = take(BQ * K);
  const dob = take(BQ * Kp);
  const kt = take(K * BK);
  const vt = take(K * BK);
  const kb = take(BK * Kp);
  const p = take(BQ * BK);
  const ds = take(BQ * BK);
  const pt = take(BQ * BK);
  const dsa = take(BQ * BK);
  const dst = take(BQ * BK);
  const dKacc = take(BK * Kp);
  const dVacc = take(BK * Kp);
  const tile = take(32);
  const kvStride = <usize>G * K * 4;
  const qStride = <usize>H * K * 4;
  const sv = f32x4.splat(scale);
  memory.fill(dKacc, 0, <usize>BK * Kp * 4);
  memory.fill(dVacc, 0, <usize>BK * Kp * 4);
  if (!naive) packB(kt, kvRow(k, b, j0, g), 4, kvStride, K, jn);
  packB(vt, kvRow(v, b, j0, g), 4, kvStride, K, jn);
  packB(kb, kvRow(k, b, j0, g), kvStride, 4, jn, K);
  const group = H / G;
  // the first query that sees key j0
  const tStart = causal ? max(0, j0 - qOffset) : 0;
  for (let h = g * group; h < (g + 1) * group; h++) {
    for (let t0 = tStart; t0 < T; t0 += BQ) {
      const qn = min(BQ, T - t0);
      packB(qbp, qRow(q, b, t0, h), qStride, 4, qn, K);
      packA(doa, qRow(dout, b, t0, h), qStride, 4, qn, K);
      packB(dob, qRow(dout, b, t0, h), qStride, 4, qn, K);
      // P for this (query block, key block)
      if (naive) {
        for (let r = 0; r < qn; r++) memory.copy(p + <usize>r * BK * 4, probsRow(probs, b, h, t0 + r) + (<usize>j0 << 2), <usize>jn * 4);
      } else {
        packA(qa, qRow(q, b, t0, h), qStride, 4, qn, K);
        for (let ir = 0; ir < qn; ir += 4) {
          for (let jr = 0; jr < jn; jr += 8) micro4x8(qa + <usize>ir * K * 4, kt + <usize>jr * K * 4, K, p + (<usize>ir * BK + jr) * 4, BK * 4, false);
        }
        for (let r = 0; r < qn; r++) {
          const row = p + <usize>r * BK * 4;
          const lim = visibleInBlock(t0 + r, j0, jn);
          const L = f32x4.splat(load<f32>(at32(lse, rowIndex(b, h, t0 + r))));
          let j = 0;
          if (lim > 0) {
            for (; j + 4 <= lim; j += 4) v128.store(at32(row, j), expNegv(f32x4.sub(f32x4.mul(v128.load(at32(row, j)), sv), L)));
            for (; j < lim; j++) {
              const s1 = f32x4.splat(load<f32>(at32(row, j)));
              store<f32>(at32(row, j), f32x4.extract_lane(expNegv(f32x4.sub(f32x4.mul(s1, sv), L)), 0));
            }
          }
          for (j = max(lim, 0); j < jn; j++) store<f32>(at32(row, j), 0);
        }
      }
      // dV += P^T dO
      packA(pt, p, 4, <usize>BK * 4, jn, qn);
      for (let ir = 0; ir < jn; ir += 4) {
        for (let cr = 0; cr < K; cr += 8) micro4x8(pt + <usize>ir * qn * 4, dob + <usize>cr * qn * 4, qn, dVacc + (<usize>ir * Kp + cr) * 4, Kp * 4, true);
      }
      // dP = dO V^T, then dS = scale P (dP - D)
      for (let ir = 0; ir < qn; ir += 4) {
        for (let jr = 0; jr < jn; jr += 8) micro4x8(doa + <usize>ir * K * 4, vt + <usize>jr * K * 4, K, ds + (<usize>ir * BK + jr) * 4, BK * 4, false);
      }
      for (let r = 0; r < qn; r++) {
        const prow = p + <usize>r * BK * 4;
        const drow = ds + <usize>r * BK * 4;
        const Dr = f32x4.splat(load<f32>(at32(D, rowIndex(b, h, t0 + r))));
        let j = 0;
        for (; j + 4 <= jn; j += 4) {
          const d = f32x4.mul(f32x4.mul(v128.load(at32(prow, j)), f32x4.sub(v128.load(at32(drow, j)), Dr)), sv);
          v128.store(at32(drow, j), d);
        }
        const Ds = f32x4.extract_lane(Dr, 0);
        for (; j < jn; j++) store<f32>(at32(drow, j), load<f32>(at32(prow, j)) * (load<f32>(at32(drow, j)) - Ds) * scale);
      }
      // dQ += dS K (straight into this thread's dQ rows)
      packA(dsa, ds, <usize>BK * 4, 4, qn, jn);
      for (let ir = 0; ir < qn; ir += 4) {
        for (let cr = 0; cr < K; cr += 8) {
          microEdge(dsa + <usize>ir * jn * 4, kb + <usize>cr * jn * 4, jn, qRow(dq, b, t0 + ir, h) + (<usize>cr << 2), qStride, true, min(4, qn - ir), min(8, K - cr), tile);
        }
      }
      // dK += dS^T Q
      packA(dst, ds, 4, <usize>BK * 4, jn, qn);
      for (let ir = 0; ir < jn; ir += 4) {
        for (let cr = 0; cr < K; cr += 8) micro4x8(dst + <usize>ir * qn * 4, qbp + <usize>cr * qn * 4, qn, dKacc + (<usize>ir * Kp + cr) * 4, Kp * 4, true);
      }
    }
  }
  for (let j = 0; j < jn; j++) {
    memory.copy(kvRow(dk, b, j0 + j, g), dKacc + <usize>j * Kp * 4, <usize>K * 4);
    memory.copy(kvRow(dv, b, j0 + j, g), dVacc + <usize>j * Kp * 4, <usize>K * 4);
  }
}
