/**
 * torch.topk's CPU selection order in WGSL (see backend/ref/torch_topk.ts, which this follows
 * step for step): libstdc++'s partial_sort, or nth_element then sort, on (value, index) pairs
 * compared by value only, so that exact ties pick the experts HF picks on CPU.
 *
 * The pairs of one row live in two storage arrays `sv` (values) and `si` (indices) from the
 * private offset `row0`; WGSL has no recursion, so introsort's right-hand recursion becomes an
 * explicit stack (the ranges it sorts are disjoint, so the order they are done in is immaterial).
 */
export const TORCH_TOPK = /* wgsl */ `
var<private> row0: u32;

fn isnan_(x: f32) -> bool { return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u; }
// the comparator of topk_impl_loop for largest=True: NaN first, then larger values
fn before(a: f32, b: f32) -> bool { return (isnan_(a) && !isnan_(b)) || a > b; }
fn vat(p: i32) -> f32 { return sv[row0 + u32(p)]; }
fn iat(p: i32) -> u32 { return si[row0 + u32(p)]; }
fn less(p: i32, q: i32) -> bool { return before(vat(p), vat(q)); }
fn put(p: i32, v: f32, i: u32) { sv[row0 + u32(p)] = v; si[row0 + u32(p)] = i; }
fn mov(dst: i32, src: i32) { put(dst, vat(src), iat(src)); }
fn swp(p: i32, q: i32) {
  let v = vat(p);
  let i = iat(p);
  mov(p, q);
  put(q, v, i);
}
fn lg(n: i32) -> i32 { return i32(firstLeadingBit(u32(n))); }
fn half_(n: i32) -> i32 { return n / 2; }

// ---- heaps (bits/stl_heap.h) ----
fn pushHeap(first: i32, hole0: i32, top: i32, v: f32, vi: u32) {
  var hole = hole0;
  var parent = half_(hole - 1);
  while (hole > top && before(vat(first + parent), v)) {
    mov(first + hole, first + parent);
    hole = parent;
    parent = half_(hole - 1);
  }
  put(first + hole, v, vi);
}
fn adjustHeap(first: i32, hole0: i32, len: i32, v: f32, vi: u32) {
  var hole = hole0;
  let top = hole;
  var second = hole;
  while (second < half_(len - 1)) {
    second = 2 * (second + 1);
    if (less(first + second, first + second - 1)) { second--; }
    mov(first + hole, first + second);
    hole = second;
  }
  if ((len & 1) == 0 && second == half_(len - 2)) {
    second = 2 * (second + 1);
    mov(first + hole, first + second - 1);
    hole = second - 1;
  }
  pushHeap(first, hole, top, v, vi);
}
fn popHeap(first: i32, last: i32, result: i32) {
  let v = vat(result);
  let vi = iat(result);
  mov(result, first);
  adjustHeap(first, 0, last - first, v, vi);
}
fn makeHeap(first: i32, last: i32) {
  let len = last - first;
  if (len < 2) { return; }
  var parent = half_(len - 2);
  loop {
    adjustHeap(first, parent, len, vat(first + parent), iat(first + parent));
    if (parent == 0) { return; }
    parent--;
  }
}
fn heapSelect(first: i32, middle: i32, last: i32) {
  makeHeap(first, middle);
  for (var i = middle; i < last; i++) { if (less(i, first)) { popHeap(first, middle, i); } }
}
fn sortHeap(first: i32, last0: i32) {
  var last = last0;
  while (last - first > 1) {
    last--;
    popHeap(first, last, last);
  }
}
fn partialSort(first: i32, middle: i32, last: i32) {
  heapSelect(first, middle, last);
  sortHeap(first, middle);
}

// ---- introsort / introselect (bits/stl_algo.h) ----
fn moveMedianToFirst(result: i32, a: i32, b: i32, c: i32) {
  if (less(a, b)) {
    if (less(b, c)) { swp(result, b); } else if (less(a, c)) { swp(result, c); } else { swp(result, a); }
  } else if (less(a, c)) { swp(result, a); } else if (less(b, c)) { swp(result, c); } else { swp(result, b); }
}
fn unguardedPartition(first0: i32, last0: i32, pivot: i32) -> i32 {
  var first = first0;
  var last = last0;
  loop {
    while (less(first, pivot)) { first++; }
    last--;
    while (less(pivot, last)) { last--; }
    if (!(first < last)) { return first; }
    swp(first, last);
    first++;
  }
}
fn unguardedPartitionPivot(first: i32, last: i32) -> i32 {
  let mid = first + half_(last - first);
  moveMedianToFirst(first, first + 1, mid, last - 1);
  return unguardedPartition(first + 1, last, first);
}
fn unguardedLinearInsert(last0: i32) {
  var last = last0;
  let v = vat(last);
  let vi = iat(last);
  var next = last - 1;
  while (before(v, vat(next))) {
    mov(last, next);
    last = next;
    next--;
  }
  put(last, v, vi);
}
fn insertionSort(first: i32, last: i32) {
  if (first == last) { return; }
  for (var i = first + 1; i < last; i++) {
    if (less(i, first)) {
      let v = vat(i);
      let vi = iat(i);
      for (var j = i; j > first; j--) { mov(j, j - 1); }
      put(first, v, vi);
    } else {
      unguardedLinearInsert(i);
    }
  }
}
fn finalInsertionSort(first: i32, last: i32) {
  if (last - first > 16) {
    insertionSort(first, first + 16);
    for (var i = first + 16; i < last; i++) { unguardedLinearInsert(i); }
  } else {
    insertionSort(first, last);
  }
}
fn introsortLoop(first0: i32, last0: i32, depth0: i32) {
  var stF: array<i32, 64>;
  var stL: array<i32, 64>;
  var stD: array<i32, 64>;
  stF[0] = first0;
  stL[0] = last0;
  stD[0] = depth0;
  var sp = 1;
  while (sp > 0) {
    sp--;
    let first = stF[sp];
    var last = stL[sp];
    var depth = stD[sp];
    loop {
      if (last - first <= 16) { break; }
      if (depth == 0) {
        partialSort(first, last, last);
        break;
      }
      depth--;
      let cut = unguardedPartitionPivot(first, last);
      stF[sp] = cut;
      stL[sp] = last;
      stD[sp] = depth;
      sp++;
      last = cut;
    }
  }
}
fn sortRange(first: i32, last: i32) {
  if (first == last) { return; }
  introsortLoop(first, last, lg(last - first) * 2);
  finalInsertionSort(first, last);
}
fn introselect(first0: i32, nth: i32, last0: i32, depth0: i32) {
  var first = first0;
  var last = last0;
  var depth = depth0;
  while (last - first > 3) {
    if (depth == 0) {
      heapSelect(first, nth + 1, last);
      swp(first, nth);
      return;
    }
    depth--;
    let cut = unguardedPartitionPivot(first, last);
    if (cut <= nth) { first = cut; } else { last = cut; }
  }
  insertionSort(first, last);
}
fn nthElement(first: i32, nth: i32, last: i32) {
  if (first == last || nth == last) { return; }
  introselect(first, nth, last, lg(last - first) * 2);
}
/** the k largest of the row's n pairs, in torch's order, left in positions 0 .. k-1 */
fn torchTopk(n: i32, k: i32) {
  if (k == 0) { return; }
  if (k * 64 <= n) {
    partialSort(0, k, n);
  } else {
    nthElement(0, k - 1, n);
    sortRange(0, k - 1);
  }
}
`;
