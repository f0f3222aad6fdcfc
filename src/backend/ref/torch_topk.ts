/**
 * Top-k selection exactly as torch.topk(largest=True, sorted=True) makes it on CPU, ties included.
 *
 * torch documents tie order as unspecified; what its CPU kernel does (aten/src/ATen/native/
 * TopKImpl.h, topk_impl_loop) is: pair each value with its index, then, when k * 64 <= n,
 * std::partial_sort the pairs, otherwise std::nth_element at k - 1 followed by std::sort of the
 * first k - 1, all comparing values only (NaN counts as largest). The pairs that win a tie are
 * therefore whichever libstdc++'s introselect / heap-select leaves in front: e.g. topk of four
 * equal values with k = 1 returns index 2, not 0 (pytorch/pytorch#88184). This file replays
 * libstdc++'s algorithms (bits/stl_algo.h, bits/stl_heap.h) step for step on (value, index) pairs
 * so that a router that sees exact ties (a zero-initialised router, repeated tokens) picks the
 * experts HF picks on CPU. Without ties the result is simply the k largest, largest first.
 */

/** (value, index) pairs stored side by side; comparisons look at values only. */
class Pairs {
  readonly v: Float64Array;
  readonly i: Int32Array;

  constructor(values: ArrayLike<number>) {
    this.v = Float64Array.from(values);
    this.i = Int32Array.from({ length: values.length }, (_, j) => j);
  }

  /** the comparator of topk_impl_loop for largest=True: NaN first, then larger values */
  before(a: number, b: number): boolean {
    return (Number.isNaN(a) && !Number.isNaN(b)) || a > b;
  }

  less(p: number, q: number): boolean {
    return this.before(this.v[p], this.v[q]);
  }

  swap(p: number, q: number): void {
    [this.v[p], this.v[q]] = [this.v[q], this.v[p]];
    [this.i[p], this.i[q]] = [this.i[q], this.i[p]];
  }

  move(to: number, from: number): void {
    this.v[to] = this.v[from];
    this.i[to] = this.i[from];
  }

  take(p: number): [number, number] {
    return [this.v[p], this.i[p]];
  }

  put(p: number, [v, i]: [number, number]): void {
    this.v[p] = v;
    this.i[p] = i;
  }
}

const SORT_THRESHOLD = 16;
const lg = (n: number) => 31 - Math.clz32(n);
/** C++ integer division truncates toward zero */
const half = (n: number) => Math.trunc(n / 2);

/** Indices of the k largest of `values`, in the order torch.topk returns them on CPU. */
export function torchTopkCpu(values: ArrayLike<number>, k: number): number[] {
  const n = values.length;
  if (k === 0) return [];
  const q = new Pairs(values);
  if (k * 64 <= n) {
    partialSort(q, 0, k, n);
  } else {
    nthElement(q, 0, k - 1, n);
    sort(q, 0, k - 1);
  }
  return Array.from(q.i.subarray(0, k));
}

function nthElement(q: Pairs, first: number, nth: number, last: number): void {
  if (first === last || nth === last) return;
  introselect(q, first, nth, last, lg(last - first) * 2);
}

function introselect(q: Pairs, first: number, nth: number, last: number, depth: number): void {
  while (last - first > 3) {
    if (depth === 0) {
      heapSelect(q, first, nth + 1, last);
      q.swap(first, nth);
      return;
    }
    depth--;
    const cut = unguardedPartitionPivot(q, first, last);
    if (cut <= nth) first = cut;
    else last = cut;
  }
  insertionSort(q, first, last);
}

function sort(q: Pairs, first: number, last: number): void {
  if (first === last) return;
  introsortLoop(q, first, last, lg(last - first) * 2);
  finalInsertionSort(q, first, last);
}

function introsortLoop(q: Pairs, first: number, last: number, depth: number): void {
  while (last - first > SORT_THRESHOLD) {
    if (depth === 0) {
      partialSort(q, first, last, last);
      return;
    }
    depth--;
    const cut = unguardedPartitionPivot(q, first, last);
    introsortLoop(q, cut, last, depth);
    last = cut;
  }
}

function moveMedianToFirst(q: Pairs, result: number, a: number, b: number, c: number): void {
  if (q.less(a, b)) {
    if (q.less(b, c)) q.swap(result, b);
    else if (q.less(a, c)) q.swap(result, c);
    else q.swap(result, a);
  } else if (q.less(a, c)) q.swap(result, a);
  else if (q.less(b, c)) q.swap(result, c);
  else q.swap(result, b);
}

function unguardedPartitionPivot(q: Pairs, first: number, last: number): number {
  const mid = first + half(last - first);
  moveMedianToFirst(q, first, first + 1, mid, last - 1);
  return unguardedPartition(q, first + 1, last, first);
}

function unguardedPartition(q: Pairs, first: number, last: number, pivot: number): number {
  for (;;) {
    while (q.less(first, pivot)) first++;
    last--;
    while (q.less(pivot, last)) last--;
    if (!(first < last)) return first;
    q.swap(first, last);
    first++;
  }
}

function insertionSort(q: Pairs, first: number, last: number): void {
  if (first === last) return;
  for (let i = first + 1; i < last; i++) {
    if (q.less(i, first)) {
      const val = q.take(i);
      for (let j = i; j > first; j--) q.move(j, j - 1);
      q.put(first, val);
    } else {
      unguardedLinearInsert(q, i);
    }
  }
}

function unguardedLinearInsert(q: Pairs, last: number): void {
  const val = q.take(last);
  let next = last - 1;
  while (q.before(val[0], q.v[next])) {
    q.move(last, next);
    last = next;
    next--;
  }
  q.put(last, val);
}

function finalInsertionSort(q: Pairs, first: number, last: number): void {
  if (last - first > SORT_THRESHOLD) {
    insertionSort(q, first, first + SORT_THRESHOLD);
    for (let i = first + SORT_THRESHOLD; i < last; i++) unguardedLinearInsert(q, i);
  } else {
    insertionSort(q, first, last);
  }
}

// ---- heaps (bits/stl_heap.h) ----

function partialSort(q: Pairs, first: number, middle: number, last: number): void {
  heapSelect(q, first, middle, last);
  sortHeap(q, first, middle);
}

function heapSelect(q: Pairs, first: number, middle: number, last: number): void {
  makeHeap(q, first, middle);
  for (let i = middle; i < last; i++) if (q.less(i, first)) popHeap(q, first, middle, i);
}

function makeHeap(q: Pairs, first: number, last: number): void {
  const len = last - first;
  if (len < 2) return;
  let parent = half(len - 2);
  for (;;) {
    adjustHeap(q, first, parent, len, q.take(first + parent));
    if (parent === 0) return;
    parent--;
  }
}

function adjustHeap(q: Pairs, first: number, hole: number, len: number, value: [number, number]): void {
  const top = hole;
  let second = hole;
  while (second < half(len - 1)) {
    second = 2 * (second + 1);
    if (q.less(first + second, first + second - 1)) second--;
    q.move(first + hole, first + second);
    hole = second;
  }
  if ((len & 1) === 0 && second === half(len - 2)) {
    second = 2 * (second + 1);
    q.move(first + hole, first + second - 1);
    hole = second - 1;
  }
  pushHeap(q, first, hole, top, value);
}

function pushHeap(q: Pairs, first: number, hole: number, top: number, value: [number, number]): void {
  let parent = half(hole - 1);
  while (hole > top && q.before(q.v[first + parent], value[0])) {
    q.move(first + hole, first + parent);
    hole = parent;
    parent = half(hole - 1);
  }
  q.put(first + hole, value);
}

function popHeap(q: Pairs, first: number, last: number, result: number): void {
  const value = q.take(result);
  q.move(result, first);
  adjustHeap(q, first, 0, last - first, value);
}

function sortHeap(q: Pairs, first: number, last: number): void {
  while (last - first > 1) {
    last--;
    popHeap(q, first, last, last);
  }
}
