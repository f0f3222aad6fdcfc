/**
 * Typed inference state. Attention layers keep a KV cache that grows with every token;
 * recurrent layers (Mamba, RWKV, ...) keep a fixed-size state. One InferenceState holds one
 * entry per layer, so a hybrid's memory splits cleanly into KV-cache and recurrent bytes.
 */
import type { Tensor } from "../tensor/tensor.js";
import { keep } from "../tensor/scope.js";
import type { Backend } from "../backend/backend.js";
import { empty, kernelsOf, zeros } from "../backend/alloc.js";

/** KV cache of one attention layer: k, v (B, capacity, G, K); rows [0, length) are filled. */
export interface AttentionState {
  kind: "attention";
  k: Tensor;
  v: Tensor;
  length: number;
}

/** Mamba (selective SSM): the last W-1 conv inputs and the SSM state. */
export interface MambaState {
  kind: "mamba";
  conv: Tensor; // (B, W - 1, D)
  ssm: Tensor; // (B, D, N)
  /** tensors derived from parameters for the life of the state (see Derived) */
  derived?: Derived;
}

/**
 * Tensors a layer computes from its parameters once per state rather than once per token
 * (Mamba's A = -exp(A_log)): parameters do not change while a state decodes. They are not
 * state: bytes() leaves them out; dispose() frees them.
 */
export type Derived = Map<string, Tensor>;

/** The derived tensor `key` of a state, made (and kept out of tidy scopes) on first use. */
export function derived(s: { derived?: Derived }, key: string, make: () => Tensor): Tensor {
  s.derived ??= new Map();
  let t = s.derived.get(key);
  if (!t) {
    t = keep(make());
    s.derived.set(key, t);
  }
  return t;
}

/** Mamba-2 (SSD): conv window over x, B, C and the per-head matrix state. */
export interface Mamba2State {
  kind: "mamba2";
  conv: Tensor; // (B, W - 1, D + 2 * groups * N)
  ssm: Tensor; // (B, H, P, N)
}

/**
 * RWKV-4: token-shift inputs of both mixes and the max-tracked WKV state, one buffer per layer
 * holding [numerator, denominator, max exponent] per channel (the wkv4 kernels' layout).
 */
export interface Rwkv4State {
  kind: "rwkv4";
  attShift: Tensor; // (B, C)
  ffnShift: Tensor; // (B, C)
  wkv: Tensor; // (B, 3, D): num, den, max; D = attention_hidden_size
}

/** RWKV-7: token-shift inputs and the per-head (N x N) delta-rule state. */
export interface Rwkv7State {
  kind: "rwkv7";
  attShift: Tensor; // (B, C)
  ffnShift: Tensor; // (B, C)
  wkv: Tensor; // (B, H, N, N): row = value index, column = key index (rwkv_v7_numpy.py's layout)
}

/** Gated DeltaNet (Qwen3-Next linear attention): conv window and per-head (Dk x Dv) state. */
export interface DeltaNetState {
  kind: "deltanet";
  conv: Tensor; // (B, W - 1, convDim)
  ssm: Tensor; // (B, H, Dk, Dv)
}

export type RecurrentState = MambaState | Mamba2State | Rwkv4State | Rwkv7State | DeltaNetState;
export type LayerState = AttentionState | RecurrentState;

/** The tensors a layer state holds. */
export function stateTensors(s: LayerState): Tensor[] {
  return Object.values(s).filter((v): v is Tensor => typeof v === "object" && v !== null && "storage" in v);
}

/**
 * One layer's state memory: a KV cache grows by `bytesPerToken` with every token (k and v rows
 * of all its KV heads); a recurrent state is fixed-size (`bytesPerToken` 0).
 */
export interface LayerBytes {
  kind: LayerState["kind"];
  /** bytes held now: filled KV rows, or the whole recurrent state */
  bytes: number;
  bytesPerToken: number;
  /** bytes allocated (a KV cache reserves rows ahead of its length) */
  allocated: number;
}

export class InferenceState {
  /** tokens consumed so far (the position of the next token) */
  position = 0;

  constructor(
    readonly batch: number,
    readonly layers: LayerState[],
  ) {}

  /** Per layer: bytes held, bytes per further token, bytes allocated. */
  layerBytes(): LayerBytes[] {
    return this.layers.map((s) => {
      if (s.kind === "attention") {
        const bytesPerToken = (s.k.bytes + s.v.bytes) / s.k.shape[1];
        return { kind: s.kind, bytes: bytesPerToken * s.length, bytesPerToken, allocated: s.k.bytes + s.v.bytes };
      }
      const bytes = stateTensors(s).reduce((n, t) => n + t.bytes, 0);
      return { kind: s.kind, bytes, bytesPerToken: 0, allocated: bytes };
    });
  }

  /** Bytes held, split by kind: KV cache (as filled, and as allocated) and recurrent state. */
  bytes(): { kvCache: number; kvCacheAllocated: number; recurrent: number } {
    let kvCache = 0;
    let kvCacheAllocated = 0;
    let recurrent = 0;
    for (const l of this.layerBytes()) {
      if (l.kind === "attention") {
        kvCache += l.bytes;
        kvCacheAllocated += l.allocated;
      } else {
        recurrent += l.bytes;
      }
    }
    return { kvCache, kvCacheAllocated, recurrent };
  }

  dispose(): void {
    for (const s of this.layers) {
      for (const t of stateTensors(s)) t.dispose();
      if ("derived" in s) for (const t of s.derived?.values() ?? []) t.dispose();
    }
  }
}

/** A KV cache of `capacity` rows, stored as the backend keeps its caches (Backend.kvCache). */
export function allocateAttentionState(be: Backend, B: number, G: number, K: number, capacity: number): AttentionState {
  const dtype = be.kvCache ?? "f32";
  return {
    kind: "attention",
    // zeroed, not just allocated: the pages are touched now rather than by each decoded token
    k: keep(zeros(be, [B, capacity, G, K], dtype)), // (B, capacity, G, K)
    v: keep(zeros(be, [B, capacity, G, K], dtype)),
    length: 0,
  };
}

/**
 * Append k, v (B, T, G, K) at rows [length, length + T), doubling the capacity when full
 * (amortised O(1) per token; the copy is the price of not knowing the final length).
 */
export function appendKV(state: AttentionState, k: Tensor, v: Tensor): void {
  const [B, T, G, K] = k.shape;
  const cap = state.k.shape[1];
  if (state.length + T > cap) {
    let next = Math.max(cap, 1);
    while (next < state.length + T) next *= 2;
    state.k = grow(state.k, state.length, next);
    state.v = grow(state.v, state.length, next);
  }
  const row = G * K;
  const capNow = state.k.shape[1];
  for (const [dst, src] of [
    [state.k, k],
    [state.v, v],
  ] as const) {
    // an f16 cache takes the new rows rounded to f16 first (the rows are few: decoding adds one)
    const rows = dst.dtype === src.dtype ? src : toDtype(src, dst.dtype);
    kernelsOf(dst).copy2d(dst.handle, rows.handle, B, T * row, capNow * row, state.length * row, T * row, 0, false);
    if (rows !== src) rows.dispose();
  }
  state.length += T;
}

function toDtype(x: Tensor, dtype: Tensor["dtype"]): Tensor {
  const y = empty(x.device as Backend, x.shape, dtype);
  kernelsOf(x).cast(y.handle, x.handle, x.size, dtype as "f16", x.dtype as "f32");
  return y;
}

function grow(t: Tensor, filled: number, capacity: number): Tensor {
  const [B, cap, G, K] = t.shape;
  const bigger = keep(empty(t.device as Backend, [B, capacity, G, K], t.dtype));
  const row = G * K;
  kernelsOf(t).copy2d(bigger.handle, t.handle, B, filled * row, capacity * row, 0, cap * row, 0, false);
  t.dispose();
  return bigger;
}
