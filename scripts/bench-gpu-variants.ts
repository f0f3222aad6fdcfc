/**
 * Tile variants that scripts/bench-gpu.ts times with --variants (names are what its tables
 * print), and that scripts/wgsl-validate.ts compiles: the candidates of the current tuning round.
 */
import { TILE_LARGE, TILE_WIDE, type MatmulTile } from "../src/backend/webgpu/matmul.js";
import type { ForwardTiles } from "../src/backend/webgpu/attention_forward.js";
import type { TileShape } from "../src/backend/webgpu/attention_tiles.js";
import type { BackwardKind } from "../src/backend/webgpu/attention_backward.js";

export type BackwardTiles = Record<BackwardKind, TileShape>;

const F = { shuffle: true, prefetch: true, transposed: false, mac: "muladd", unroll: false } as const;
const M = { mac: "muladd" } as const;
export const VARIANTS = {
  matmul: {
    "128x256x16 rows": { ...TILE_WIDE },
    "256x128x16 rows": { ...TILE_WIDE, BM: 256, BN: 128, TM: 16, TN: 8 },
    "128x128x8 warp4x8": { ...TILE_LARGE },
  } as Record<string, MatmulTile>,
  forward: {
    "64x32 ty16 tx8": { BM: 64, BN: 32, TY: 16, TX: 8, ...F },
  } as Record<string, ForwardTiles>,
  backward: {
    "tx16 kv32x32 q32x32": { dkv: { BM: 32, BN: 32, TY: 8, TX: 16, ...M, unroll: false }, dq: { BM: 32, BN: 32, TY: 8, TX: 16, ...M, unroll: false } },
    "tx16 kv32x32 q32x32 unroll": { dkv: { BM: 32, BN: 32, TY: 8, TX: 16, ...M, unroll: true }, dq: { BM: 32, BN: 32, TY: 8, TX: 16, ...M, unroll: true } },
    "tx16 kv32x16 q32x16": { dkv: { BM: 32, BN: 16, TY: 8, TX: 16, ...M, unroll: false }, dq: { BM: 32, BN: 16, TY: 8, TX: 16, ...M, unroll: false } },
    "tx16 kv32x32 q32x16": { dkv: { BM: 32, BN: 32, TY: 8, TX: 16, ...M, unroll: false }, dq: { BM: 32, BN: 16, TY: 8, TX: 16, ...M, unroll: false } },
    "kv tx16 q tx8": { dkv: { BM: 32, BN: 32, TY: 8, TX: 16, ...M, unroll: false }, dq: { BM: 32, BN: 32, TY: 8, TX: 8, ...M, unroll: false } },
  } as Record<string, BackwardTiles>,
};
