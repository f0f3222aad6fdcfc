/**
 * Softmax cross-entropy over rows of logits (N, V). Threads take row ranges; the mean over
 * counted rows (targets >= 0; HF's ignore index is -100) is a separate single-thread pass.
 */
import { splitLo, splitHi, hsum, hmax, at32 } from "./common";
import { expv } from "./simd_math";

/** lse[r] = log sum_j exp(logits[r, j]) */
export function crossEntropyLse(tid: i32, nth: i32, lse: usize, logits: usize, N: i32, V: i32): void {
  const lo = splitLo(N, tid, nth, 1);
  const hi = splitHi(N, tid, nth, 1);
  for (let r = lo; r < hi; r++) {
    const x = logits + <usize>r * V * 4;
    let mv = f32x4.splat(-Infinity);
    let j = 0;
    for (; j + 4 <= V; j += 4) mv = f32x4.max(mv, v128.load(at32(x, j)));
    let m = hmax(mv);
    for (; j < V; j++) m = max(m, load<f32>(at32(x, j)));
    const ms = f32x4.splat(m);
    let s0 = f32x4.splat(0), s1 = f32x4.splat(0);
    j = 0;
    for (; j + 8 <= V; j += 8) {
      s0 = f32x4.add(s0, expv(f32x4.sub(v128.load(at32(x, j)), ms)));
      s1 = f32x4.add(s1, expv(f32x4.sub(v128.load(at32(x, j), 16), ms)));
    }
    let s: f64 = hsum(f32x4.add(s0, s1));
    for (; j < V; j++) s += f32x4.extract_lane(expv(f32x4.splat(load<f32>(at32(x, j)) - m)), 0);
    store<f32>(at32(lse, r), <f32>(<f64>m + Math.log(s)));
  }
}

/** loss[0] = mean over rows with target >= 0 of lse - logit[target] (one thread). */
export function crossEntropyLoss(tid: i32, nth: i32, loss: usize, lse: usize, logits: usize, targets: usize, N: i32, V: i32): void {
  let total: f64 = 0;
  let count = 0;
  for (let r = 0; r < N; r++) {
    const t = load<i32>(targets + (<usize>r << 2));
    if (t < 0) continue;
    total += <f64>load<f32>(at32(lse, r)) - <f64>load<f32>(logits + (<usize>r * V + t) * 4);
    count++;
  }
  store<f32>(loss, count > 0 ? <f32>(total / count) : 0);
}

/** dlogits = dloss[0] / count (softmax - onehot) on counted rows, 0 on the others. */
export function crossEntropyBackward(
  tid: i32, nth: i32, dlogits: usize, dloss: usize, logits: usize, lse: usize, targets: usize, N: i32, V: i32,
): void {
  let count = 0;
  for (let r = 0; r < N; r++) if (load<i32>(targets + (<usize>r << 2)) >= 0) count++;
  const g: f32 = count > 0 ? load<f32>(dloss) / <f32>count : 0;
  const gv = f32x4.splat(g);
  const lo = splitLo(N, tid, nth, 1);
  const hi = splitHi(N, tid, nth, 1);
  for (let r = lo; r < hi; r++) {
    const t = load<i32>(targets + (<usize>r << 2));
    const x = logits + <usize>r * V * 4;
    const d = dlogits + <usize>r * V * 4;
    if (t < 0) {
      memory.fill(d, 0, <usize>V * 4);
      continue;
    }
    const l = load<f32>(at32(lse, r));
    const lv = f32x4.splat(l);
    let j = 0;
    for (; j + 4 <= V; j += 4) v128.store(at32(d, j), f32x4.mul(gv, expv(f32x4.sub(v128.load(at32(x, j)), lv))));
    for (; j < V; j++) store<f32>(at32(d, j), g * f32x4.extract_lane(expv(f32x4.splat(load<f32>(at32(x, j)) - l)), 0));
    store<f32>(at32(d, t), load<f32>(at32(d, t)) - g);
  }
}
