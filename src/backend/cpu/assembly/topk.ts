/**
 * Top-k exactly as torch.topk(largest=True, sorted=True) makes it on CPU, ties included: the
 * WebAssembly form of ref/torch_topk.ts, which documents why (torch's topk_impl_loop runs
 * libstdc++'s partial_sort when k * 64 <= n, else nth_element at k - 1 and a sort of the first
 * k - 1, on (value, index) pairs compared by value only). The pairs live in scratch: values
 * (f32) at V, indices (i32) at I, n of each; the result is I[0 .. k).
 */

const SORT_THRESHOLD = 16;

let V: usize = 0;
let I: usize = 0;

@inline function val(p: i32): f32 {
  return load<f32>(V + (<usize>p << 2));
}

@inline function idx(p: i32): i32 {
  return load<i32>(I + (<usize>p << 2));
}

@inline function put(p: i32, v: f32, i: i32): void {
  store<f32>(V + (<usize>p << 2), v);
  store<i32>(I + (<usize>p << 2), i);
}

/** the comparator of topk_impl_loop for largest=True: NaN first, then larger values */
@inline function before(a: f32, b: f32): bool {
  return (isNaN(a) && !isNaN(b)) || a > b;
}

@inline function less(p: i32, q: i32): bool {
  return before(val(p), val(q));
}

@inline function swap(p: i32, q: i32): void {
  const v = val(p);
  const i = idx(p);
  put(p, val(q), idx(q));
  put(q, v, i);
}

@inline function move(to: i32, from: i32): void {
  put(to, val(from), idx(from));
}

@inline function lg(n: i32): i32 {
  return 31 - clz(n);
}

/** Sorts the top k of the n pairs at (values, indices) to the front, in torch's order. */
export function torchTopk(values: usize, indices: usize, n: i32, k: i32): void {
  V = values;
  I = indices;
  for (let j = 0; j < n; j++) store<i32>(I + (<usize>j << 2), j);
  if (k == 0) return;
  if (k * 64 <= n) {
    partialSort(0, k, n);
  } else {
    nthElement(0, k - 1, n);
    sort(0, k - 1);
  }
}

function nthElement(first: i32, nth: i32, last: i32): void {
  if (first == last || nth == last) return;
  introselect(first, nth, last, lg(last - first) * 2);
}

function introselect(first: i32, nth: i32, last: i32, depth: i32): void {
  while (last - first > 3) {
    if (depth == 0) {
      heapSelect(first, nth + 1, last);
      swap(first, nth);
      return;
    }
    depth--;
    const cut = unguardedPartitionPivot(first, last);
    if (cut <= nth) first = cut;
    else last = cut;
  }
  insertionSort(first, last);
}

function sort(first: i32, last: i32): void {
  if (first == last) return;
  introsortLoop(first, last, lg(last - first) * 2);
  finalInsertionSort(first, last);
}

function introsortLoop(first: i32, last: i32, depth: i32): void {
  while (last - first > SORT_THRESHOLD) {
    if (depth == 0) {
      partialSort(first, last, last);
      return;
    }
    depth--;
    const cut = unguardedPartitionPivot(first, last);
    introsortLoop(cut, last, depth);
    last = cut;
  }
}

function moveMedianToFirst(result: i32, a: i32, b: i32, c: i32): void {
  if (less(a, b)) {
    if (less(b, c)) swap(result, b);
    else if (less(a, c)) swap(result, c);
    else swap(result, a);
  } else if (less(a, c)) swap(result, a);
  else if (less(b, c)) swap(result, c);
  else swap(result, b);
}

function unguardedPartitionPivot(first: i32, last: i32): i32 {
  const mid = first + (last - first) / 2;
  moveMedianToFirst(first, first + 1, mid, last - 1);
  return unguardedPartition(first + 1, last, first);
}

function unguardedPartition(first: i32, last: i32, pivot: i32): i32 {
  for (;;) {
    while (less(first, pivot)) first++;
    last--;
    while (less(pivot, last)) last--;
    if (!(first < last)) break;
    swap(first, last);
    first++;
  }
  return first;
}

function insertionSort(first: i32, last: i32): void {
  if (first == last) return;
  for (let i = first + 1; i < last; i++) {
    if (less(i, first)) {
      const v = val(i);
      const x = idx(i);
      for (let j = i; j > first; j--) move(j, j - 1);
      put(first, v, x);
    } else {
      unguardedLinearInsert(i);
    }
  }
}

function unguardedLinearInsert(last: i32): void {
  const v = val(last);
  const x = idx(last);
  let next = last - 1;
  while (before(v, val(next))) {
    move(last, next);
    last = next;
    next--;
  }
  put(last, v, x);
}

function finalInsertionSort(first: i32, last: i32): void {
  if (last - first > SORT_THRESHOLD) {
    insertionSort(first, first + SORT_THRESHOLD);
    for (let i = first + SORT_THRESHOLD; i < last; i++) unguardedLinearInsert(i);
  } else {
    insertionSort(first, last);
  }
}

// ---- heaps (bits/stl_heap.h) ----

function partialSort(first: i32, middle: i32, last: i32): void {
  heapSelect(first, middle, last);
  sortHeap(first, middle);
}

function heapSelect(first: i32, middle: i32, last: i32): void {
  makeHeap(first, middle);
  for (let i = middle; i < last; i++) if (less(i, first)) popHeap(first, middle, i);
}

function makeHeap(first: i32, last: i32): void {
  const len = last - first;
  if (len < 2) return;
  let parent = (len - 2) / 2;
  for (;;) {
    adjustHeap(first, parent, len, val(first + parent), idx(first + parent));
    if (parent == 0) return;
    parent--;
  }
}

function adjustHeap(first: i32, hole: i32, len: i32, v: f32, x: i32): void {
  const top = hole;
  let second = hole;
  while (second < (len - 1) / 2) {
    second = 2 * (second + 1);
    if (less(first + second, first + second - 1)) second--;
    move(first + hole, first + second);
    hole = second;
  }
  if ((len & 1) == 0 && second == (len - 2) / 2) {
    second = 2 * (second + 1);
    move(first + hole, first + second - 1);
    hole = second - 1;
  }
  pushHeap(first, hole, top, v, x);
}

function pushHeap(first: i32, hole: i32, top: i32, v: f32, x: i32): void {
  let parent = (hole - 1) / 2;
  while (hole > top && before(val(first + parent), v)) {
    move(first + hole, first + parent);
    hole = parent;
    parent = (hole - 1) / 2;
  }
  put(first + hole, v, x);
}

function popHeap(first: i32, last: i32, result: i32): void {
  const v = val(result);
  const x = idx(result);
  move(result, first);
  adjustHeap(first, 0, last - first, v, x);
}

function sortHeap(first: i32, last: i32): void {
  while (last - first > 1) {
    last--;
    popHeap(first, last, last);
  }
}
