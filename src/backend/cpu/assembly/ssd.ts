/**
 * Mamba-2's SSD (Dao & Gu 2024; see kernels_scan.ts and ref/ssd.ts) on the CPU. The decay of a
 * head is a scalar per step, so the recurrence
 *   S_t = a_t S_{t-1} + dt_t x_t B_t^T      y_t = S_t C_t + Dskip x_t      a_t = exp(dt_t A)
 * costs 3 P N multiply-adds per step and head. The chunked (quadratic-in-chunk) form computes
 * the same y with C_t . B_s products, a masked (L x L) (L x P) product and the state passing:
 * more multiply-adds per step for the sizes Mamba-2 uses (P, N <= 128, chunk 64..256), a win on
 * tensor cores but not on f32x4 without fused multiply-add. So here each (sequence, head) runs
 * the recurrence step by step, with the state in the thread's scratch (L1 for P N <= 4096),
 * stored transposed, ST[n][p] (P rounded up to P4 with zero lanes): the update is then a
 * broadcast of B_t[n] times the vector dt x_t, and y_t a sum of broadcast C_t[n] times rows of
 * ST, with no horizontal sums. Checkpoints and states keep the (P, N) layout of the interface.
 *
 * The backward recomputes a chunk's states from its checkpoint and runs the adjoint
 *   G_t = G_{t+1} a_{t+1} + dy_t C_t^T   (so G here is dL/dS_t)
 *   dx = Dskip dy + dt G B;  dB = dt G^T x;  dC = S_t^T dy;  ddt from <G, x B^T> and <G, S_{t-1}> a A
 * dB and dC (B, T, G, N) sum over the heads of a group: each head writes its own row, and the
 * rows of a group are added in head order afterwards (written in place when G = H). dA, dDskip
 * and ddtBias are per-(sequence, head) partials added in sequence order by the host.
 */
import { splitLo, splitHi, madd } from "./common";
import { expv, sigmoidSide } from "./simd_math";
import { sp, vat, load4, store4, softplusv, lane, hsum4 } from "./mixer_common";

@inline function p4(P: i32): i32 {
  return (P + 3) & ~3;
}

/** dt = clamp(softplus(dt + bias), dtMin, dtMax) */
@inline function stepSize(raw: f32, softplus: i32, dtMin: f32, dtMax: f32): f32 {
  const v = softplus ? lane(softplusv(sp(raw))) : raw;
  return min(max(v, dtMin), dtMax);
}

/** d(dt)/d(raw): zero where the clamp is active. */
@inline function stepSizeGrad(raw: f32, softplus: i32, dtMin: f32, dtMax: f32): f32 {
  const s = softplus ? lane(softplusv(sp(raw))) : raw;
  if (s < dtMin || s > dtMax) return 0;
  return softplus ? (raw > 20 ? 1 : lane(sigmoidSide(sp(raw), 0))) : 1;
}

@inline function expf(x: f32): f32 {
  return lane(expv(sp(x)));
}

/** ST (N, P4) from a (P, N) state at src (zeros when src is 0; zero lanes p >= P). */
function loadT(ST: usize, src: usize, P: i32, N: i32): void {
  const P4 = p4(P);
  for (let n = 0; n < N; n++) {
    for (let p = 0; p < P4; p++) store<f32>(ST + ((<usize>n * P4 + p) << 2), src && p < P ? load<f32>(src + ((<usize>p * N + n) << 2)) : 0);
  }
}

function storeT(dst: usize, ST: usize, P: i32, N: i32): void {
  const P4 = p4(P);
  for (let p = 0; p < P; p++) {
    for (let n = 0; n < N; n++) store<f32>(dst + ((<usize>p * N + n) << 2), load<f32>(ST + ((<usize>n * P4 + p) << 2)));
  }
}

/** Scratch floats per thread of ssdForward: the state. */
export function ssdForwardScratchFloats(P: i32, N: i32): i32 {
  return N * p4(P);
}

export function ssdForward(
  tid: i32, nth: i32, y: usize, stateOut: usize, ckpt: usize, x: usize, dt: usize, A: usize, Bm: usize, Cm: usize,
  Dskip: usize, dtBias: usize, stateIn: usize, B: i32, T: i32, H: i32, P: i32, N: i32, G: i32, chunk: i32,
  softplus: i32, dtMin: f32, dtMax: f32, scratch: usize, stride: i32,
): void {
  const ST = scratch + <usize>tid * stride;
  const P4 = p4(P);
  const PN = <usize>P * N;
  const chunks = (T + chunk - 1) / chunk;
  const lo = splitLo(B * H, tid, nth, 1);
  const hi = splitHi(B * H, tid, nth, 1);
  for (let it = lo; it < hi; it++) {
    const b = it / H;
    const h = it % H;
    const g = h / (H / G);
    const sBase = (<usize>it * PN) << 2;
    loadT(ST, stateIn ? stateIn + sBase : 0, P, N);
    const bias: f32 = dtBias ? load<f32>(dtBias + (<usize>h << 2)) : 0;
    const a = load<f32>(A + (<usize>h << 2));
    const dsk = sp(Dskip ? load<f32>(Dskip + (<usize>h << 2)) : 0);
    const rowBytes = <usize>P4 << 2;
    for (let t = 0; t < T; t++) {
      if (ckpt && t % chunk == 0) storeT(ckpt + ((<usize>((b * chunks + t / chunk) * H + h) * PN) << 2), ST, P, N);
      const step = stepSize(load<f32>(dt + (<usize>((b * T + t) * H + h) << 2)) + bias, softplus, dtMin, dtMax);
      const decay = sp(expf(step * a));
      const xRow = x + ((<usize>((b * T + t) * H + h) * P) << 2);
      const yRow = y + ((<usize>((b * T + t) * H + h) * P) << 2);
      const bRow = Bm + ((<usize>((b * T + t) * G + g) * N) << 2);
      const cRow = Cm + ((<usize>((b * T + t) * G + g) * N) << 2);
      let p = 0;
      // two blocks of 4 p at a time: the B_t[n], C_t[n] broadcasts serve both, two y chains
      for (; p + 8 <= P4; p += 8) {
        const x0 = load4(xRow + (<usize>p << 2), min(4, P - p));
        const x1 = load4(xRow + (<usize>(p + 4) << 2), min(4, P - p - 4));
        const dtx0 = f32x4.mul(sp(step), x0);
        const dtx1 = f32x4.mul(sp(step), x1);
        let acc0 = f32x4.mul(dsk, x0);
        let acc1 = f32x4.mul(dsk, x1);
        let st = ST + (<usize>p << 2);
        for (let n = 0; n < N; n++) {
          const bn = v128.load32_splat(bRow + (<usize>n << 2));
          const cn = v128.load32_splat(cRow + (<usize>n << 2));
          const v0 = f32x4.add(f32x4.mul(decay, v128.load(st)), f32x4.mul(bn, dtx0));
          const v1 = f32x4.add(f32x4.mul(decay, v128.load(st, 16)), f32x4.mul(bn, dtx1));
          v128.store(st, v0);
          v128.store(st, v1, 16);
          acc0 = f32x4.add(acc0, f32x4.mul(cn, v0));
          acc1 = f32x4.add(acc1, f32x4.mul(cn, v1));
          st += rowBytes;
        }
        store4(yRow + (<usize>p << 2), acc0, min(4, P - p));
        store4(yRow + (<usize>(p + 4) << 2), acc1, min(4, P - p - 4));
      }
      for (; p < P4; p += 4) {
        const len = min(4, P - p);
        const xv = load4(xRow + (<usize>p << 2), len);
        const dtx = f32x4.mul(sp(step), xv);
        let acc = f32x4.mul(dsk, xv);
        let st = ST + (<usize>p << 2);
        for (let n = 0; n < N; n++) {
          const v = f32x4.add(f32x4.mul(decay, v128.load(st)), f32x4.mul(v128.load32_splat(bRow + (<usize>n << 2)), dtx));
          v128.store(st, v);
          acc = f32x4.add(acc, f32x4.mul(v128.load32_splat(cRow + (<usize>n << 2)), v));
          st += rowBytes;
        }
        store4(yRow + (<usize>p << 2), acc, len);
      }
    }
    if (stateOut) storeT(stateOut + sBase, ST, P, N);
  }
}

/**
 * One token: state (B, H, P, N) in place, in its own layout (rows p contiguous in n, as the
 * decode step reads each state once: vectorised over n, one horizontal sum per row).
 */
export function ssdStep(
  tid: i32, nth: i32, y: usize, state: usize, x: usize, dt: usize, A: usize, Bm: usize, Cm: usize, Dskip: usize, dtBias: usize,
  B: i32, H: i32, P: i32, N: i32, G: i32, softplus: i32, dtMin: f32, dtMax: f32,
): void {
  const lo = splitLo(B * H, tid, nth, 1);
  const hi = splitHi(B * H, tid, nth, 1);
  for (let it = lo; it < hi; it++) {
    const b = it / H;
    const h = it % H;
    const g = h / (H / G);
    const step = stepSize(load<f32>(dt + (<usize>it << 2)) + (dtBias ? load<f32>(dtBias + (<usize>h << 2)) : 0), softplus, dtMin, dtMax);
    const decay = expf(step * load<f32>(A + (<usize>h << 2)));
    const dsk: f32 = Dskip ? load<f32>(Dskip + (<usize>h << 2)) : 0;
    const bRow = Bm + ((<usize>(b * G + g) * N) << 2);
    const cRow = Cm + ((<usize>(b * G + g) * N) << 2);
    const xRow = x + ((<usize>it * P) << 2);
    const yRow = y + ((<usize>it * P) << 2);
    const dv = sp(decay);
    for (let p = 0; p < P; p++) {
      const row = state + ((<usize>(it * P + p) * N) << 2);
      const xp = load<f32>(xRow + (<usize>p << 2));
      const dtx = sp(step * xp);
      // two sums over n: each is a chain of madd, whose latency a single chain would wait on
      let acc = sp(0), acc1 = sp(0);
      let n = 0;
      for (; n + 8 <= N; n += 8) {
        const o = <usize>n << 2;
        const v = madd(dtx, v128.load(bRow + o), f32x4.mul(dv, v128.load(row + o)));
        const v1 = madd(dtx, v128.load(bRow + o, 16), f32x4.mul(dv, v128.load(row + o, 16)));
        v128.store(row + o, v);
        v128.store(row + o, v1, 16);
        acc = madd(v, v128.load(cRow + o), acc);
        acc1 = madd(v1, v128.load(cRow + o, 16), acc1);
      }
      for (; n + 4 <= N; n += 4) {
        const o = <usize>n << 2;
        const v = madd(dtx, v128.load(bRow + o), f32x4.mul(dv, v128.load(row + o)));
        v128.store(row + o, v);
        acc = madd(v, v128.load(cRow + o), acc);
      }
      let s = lane(hsum4(f32x4.add(acc, acc1), sp(0), sp(0), sp(0)));
      for (; n < N; n++) {
        const o = <usize>n << 2;
        const v = decay * load<f32>(row + o) + step * xp * load<f32>(bRow + o);
        store<f32>(row + o, v);
        s += v * load<f32>(cRow + o);
      }
      store<f32>(yRow + (<usize>p << 2), s + dsk * xp);
    }
  }
}

/** Scratch floats per thread of ssdBackward: G, two rows of lane sums, steps and decays, the chunk's states. */
export function ssdBackwardScratchFloats(P: i32, N: i32, chunk: i32): i32 {
  return N * p4(P) + 8 * N + 2 * chunk + (chunk + 1) * N * p4(P);
}

/**
 * Gradients of ssdForward. dB, dC: per-head rows (B, T, H, N), the outputs themselves when G = H,
 * else a workspace that ssdReduceHeads adds per group. partials (B, 3, H):
 * dA, dDskip, ddtBias of each (sequence, head).
 */
export function ssdBackward(
  tid: i32, nth: i32, dx: usize, ddt: usize, dB: usize, dC: usize, dstateIn: usize, partials: usize,
  dy: usize, x: usize, dt: usize, A: usize, Bm: usize, Cm: usize, Dskip: usize, dtBias: usize, ckpt: usize,
  B: i32, T: i32, H: i32, P: i32, N: i32, G: i32, chunk: i32, softplus: i32, dtMin: f32, dtMax: f32, scratch: usize, stride: i32,
): void {
  const P4 = p4(P);
  const PN = <usize>P * N;
  const SN = <usize>N * P4; // floats of one transposed state
  const GT = scratch + <usize>tid * stride;
  const rowB = GT + (SN << 2);
  const rowC = vat(rowB, N);
  const steps = vat(rowC, N);
  const decays = steps + (<usize>chunk << 2);
  const states = decays + (<usize>chunk << 2);
  const chunks = (T + chunk - 1) / chunk;
  const lo = splitLo(B * H, tid, nth, 1);
  const hi = splitHi(B * H, tid, nth, 1);
  for (let it = lo; it < hi; it++) {
    const b = it / H;
    const h = it % H;
    const g = h / (H / G);
    memory.fill(GT, 0, SN << 2);
    const bias: f32 = dtBias ? load<f32>(dtBias + (<usize>h << 2)) : 0;
    const a = load<f32>(A + (<usize>h << 2));
    const dskS: f32 = Dskip ? load<f32>(Dskip + (<usize>h << 2)) : 0;
    const dsk = sp(dskS);
    let dAs: f32 = 0;
    let dDs = sp(0);
    let dBias: f32 = 0;
    for (let k = chunks - 1; k >= 0; k--) {
      const t0 = k * chunk;
      const L = min(chunk, T - t0);
      loadT(states, ckpt + ((<usize>((b * chunks + k) * H + h) * PN) << 2), P, N);
      for (let j = 0; j < L; j++) {
        const t = t0 + j;
        const step = stepSize(load<f32>(dt + (<usize>((b * T + t) * H + h) << 2)) + bias, softplus, dtMin, dtMax);
        const decay = expf(step * a);
        store<f32>(steps + (<usize>j << 2), step);
        store<f32>(decays + (<usize>j << 2), decay);
        const xRow = x + ((<usize>((b * T + t) * H + h) * P) << 2);
        const bRow = Bm + ((<usize>((b * T + t) * G + g) * N) << 2);
        const prev = states + ((<usize>j * SN) << 2);
        const next = prev + (SN << 2);
        for (let p = 0; p < P4; p += 4) {
          const dtx = f32x4.mul(sp(step), load4(xRow + (<usize>p << 2), min(4, P - p)));
          for (let n = 0; n < N; n++) {
            const o = (<usize>n * P4 + p) << 2;
            v128.store(next + o, f32x4.add(f32x4.mul(sp(decay), v128.load(prev + o)), f32x4.mul(v128.load32_splat(bRow + (<usize>n << 2)), dtx)));
          }
        }
      }
      for (let j = L - 1; j >= 0; j--) {
        const t = t0 + j;
        const step = load<f32>(steps + (<usize>j << 2));
        const decay = load<f32>(decays + (<usize>j << 2));
        const row = (<usize>((b * T + t) * H + h) * P) << 2;
        const bRow = Bm + ((<usize>((b * T + t) * G + g) * N) << 2);
        const cRow = Cm + ((<usize>((b * T + t) * G + g) * N) << 2);
        const prev = states + ((<usize>j * SN) << 2);
        const next = prev + (SN << 2);
        let gS = sp(0);
        for (let p = 0; p < P4; p += 4) {
          const len = min(4, P - p);
          const xv = load4(x + row + (<usize>p << 2), len);
          const dyv = load4(dy + row + (<usize>p << 2), len);
          dDs = f32x4.add(dDs, f32x4.mul(dyv, xv));
          let dxAcc = sp(0);
          for (let n = 0; n < N; n++) {
            const o = (<usize>n * P4 + p) << 2;
            const gt = f32x4.add(v128.load(GT + o), f32x4.mul(v128.load32_splat(cRow + (<usize>n << 2)), dyv));
            const cTerm = f32x4.mul(dyv, v128.load(next + o));
            const bTerm = f32x4.mul(gt, xv);
            v128.store(vat(rowC, n), p == 0 ? cTerm : f32x4.add(v128.load(vat(rowC, n)), cTerm));
            v128.store(vat(rowB, n), p == 0 ? bTerm : f32x4.add(v128.load(vat(rowB, n)), bTerm));
            gS = f32x4.add(gS, f32x4.mul(gt, v128.load(prev + o)));
            dxAcc = f32x4.add(dxAcc, f32x4.mul(v128.load32_splat(bRow + (<usize>n << 2)), gt));
            v128.store(GT + o, f32x4.mul(gt, sp(decay)));
          }
          store4(dx + row + (<usize>p << 2), f32x4.add(f32x4.mul(dsk, dyv), f32x4.mul(sp(step), dxAcc)), len);
        }
        // per n: dC = sum_p dy S_t, dB = dt sum_p G x; ddt collects sum_n B[n] (sum_p G x)
        const sRow = (<usize>((b * T + t) * H + h) * N) << 2;
        let dStep: f32 = 0;
        for (let n = 0; n < N; n += 4) {
          const m = min(4, N - n);
          const sb = hsum4(v128.load(vat(rowB, n)), m > 1 ? v128.load(vat(rowB, n + 1)) : sp(0), m > 2 ? v128.load(vat(rowB, n + 2)) : sp(0), m > 3 ? v128.load(vat(rowB, n + 3)) : sp(0));
          const sc = hsum4(v128.load(vat(rowC, n)), m > 1 ? v128.load(vat(rowC, n + 1)) : sp(0), m > 2 ? v128.load(vat(rowC, n + 2)) : sp(0), m > 3 ? v128.load(vat(rowC, n + 3)) : sp(0));
          const bv = load4(bRow + (<usize>n << 2), m);
          const prod = f32x4.mul(sb, bv);
          dStep += lane(hsum4(prod, sp(0), sp(0), sp(0)));
          store4(dB + sRow + (<usize>n << 2), f32x4.mul(sp(step), sb), m);
          store4(dC + sRow + (<usize>n << 2), sc, m);
        }
        const gSs = lane(hsum4(gS, sp(0), sp(0), sp(0)));
        dStep += gSs * decay * a;
        dAs += gSs * decay * step;
        const dtIdx = (<usize>((b * T + t) * H + h)) << 2;
        const dd = dStep * stepSizeGrad(load<f32>(dt + dtIdx) + bias, softplus, dtMin, dtMax);
        store<f32>(ddt + dtIdx, dd);
        dBias += dd;
      }
    }
    if (dstateIn) storeT(dstateIn + ((<usize>it * PN) << 2), GT, P, N);
    const part = partials + ((<usize>(b * 3 * H + h)) << 2);
    store<f32>(part, dAs);
    store<f32>(part + (<usize>H << 2), lane(hsum4(dDs, sp(0), sp(0), sp(0))));
    store<f32>(part + (<usize>(2 * H) << 2), dBias);
  }
}

/** out (B T, G, N) = sum over the H / G heads of each group of rows (B T, H, N), in head order. */
export function ssdReduceHeads(tid: i32, nth: i32, out: usize, rows: usize, BT: i32, H: i32, G: i32, N: i32): void {
  const hpg = H / G;
  const lo = splitLo(BT * G, tid, nth, 1);
  const hi = splitHi(BT * G, tid, nth, 1);
  for (let r = lo; r < hi; r++) {
    const dst = out + ((<usize>r * N) << 2);
    const src = rows + ((<usize>r * hpg * N) << 2);
    for (let n = 0; n < N; n += 4) {
      const m = min(4, N - n);
      let s = load4(src + (<usize>n << 2), m);
      for (let j = 1; j < hpg; j++) s = f32x4.add(s, load4(src + ((<usize>j * N + n) << 2), m));
      store4(dst + (<usize>n << 2), s, m);
    }
  }
}
