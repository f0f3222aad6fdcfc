/**
 * Tile variants that scripts/bench-gpu.ts times with --variants (names are what its tables
 * print), and that scripts/wgsl-validate.ts compiles: the candidates of the current tuning round.
 */
import { TILE_LARGE, type MatmulTile } from "../src/backend/webgpu/matmul.js";
import type { ForwardTiles } from "../src/backend/webgpu/attention_forward.js";
import type { TileShape } from "../src/backend/webgpu/attention_tiles.js";
import type { BackwardKind } from "../src/backend/webgpu/attention_backward.js";

export type BackwardTiles = Record<BackwardKind, TileShape>;

const F = { shuffle: true, prefetch: true, transposed: false, mac: "muladd", unroll: false } as const;
const U = { mac: "muladd", unroll: true } as const;
export const VARIANTS = {
  matmul: {
    "128x128x8": { ...TILE_LARGE },
    "128x128x8 again": { ...TILE_LARGE },
    "128x128x16": { ...TILE_LARGE, BK: 16 },
    "128x256x8": { BM: 128, BN: 256, BK: 8, TM: 8, TN: 16, warpPatch: true, mac: "muladd" },
    "128x256x16": { BM: 128, BN: 256, BK: 16, TM: 8, TN: 16, warpPatch: true, mac: "muladd" },
    "128x256x16 rows": { BM: 128, BN: 256, BK: 16, TM: 8, TN: 16, warpPatch: false, mac: "muladd" },
    "256x128x16": { BM: 256, BN: 128, BK: 16, TM: 16, TN: 8, warpPatch: true, mac: "muladd" },
  } as Record<string, MatmulTile>,
  forward: {
    "64x32 ty16": { BM: 64, BN: 32, TY: 16, TX: 8, ...F },
    "64x32 ty16 unroll": { BM: 64, BN: 32, TY: 16, TX: 8, ...F, unroll: true },
    "64x16 ty16": { BM: 64, BN: 16, TY: 16, TX: 8, ...F },
    "64x16 ty16 unroll": { BM: 64, BN: 16, TY: 16, TX: 8, ...F, unroll: true },
    "64x32 ty16 tx16": { BM: 64, BN: 32, TY: 16, TX: 16, ...F },
    "64x32 ty16 tx16 unroll": { BM: 64, BN: 32, TY: 16, TX: 16, ...F, unroll: true },
    "64x32 ty16 T unroll": { BM: 64, BN: 32, TY: 16, TX: 8, ...F, transposed: true, unroll: true },
  } as Record<string, ForwardTiles>,
  backward: {
    "kv32x32 q32x32": { dkv: { BM: 32, BN: 32, TY: 8, TX: 8, mac: "muladd", unroll: false }, dq: { BM: 32, BN: 32, TY: 8, TX: 8, mac: "muladd", unroll: false } },
    "kv32x32 q32x32 unroll": { dkv: { BM: 32, BN: 32, TY: 8, TX: 8, ...U }, dq: { BM: 32, BN: 32, TY: 8, TX: 8, ...U } },
    "kv32x16 q32x16 unroll": { dkv: { BM: 32, BN: 16, TY: 8, TX: 8, ...U }, dq: { BM: 32, BN: 16, TY: 8, TX: 8, ...U } },
    "kv32x32 q64x16 unroll": { dkv: { BM: 32, BN: 32, TY: 8, TX: 8, ...U }, dq: { BM: 64, BN: 16, TY: 16, TX: 8, ...U } },
    "tx16 kv32x32 q32x32 unroll": { dkv: { BM: 32, BN: 32, TY: 8, TX: 16, ...U }, dq: { BM: 32, BN: 32, TY: 8, TX: 16, ...U } },
  } as Record<string, BackwardTiles>,
};

