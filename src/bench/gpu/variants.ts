/**
 * Tile variants that `seqlab bench gpu --variants` (and scripts/bench-gpu.ts) times (names are what its tables
 * print), and that scripts/wgsl-validate.ts compiles: the candidates of the current tuning round.
 */
import { TILE_LARGE, TILE_WIDE, type MatmulTile } from "../../backend/webgpu/matmul.js";
import type { ForwardTiles } from "../../backend/webgpu/attention_forward.js";
import type { TileShape } from "../../backend/webgpu/attention_tiles.js";
import type { BackwardKind } from "../../backend/webgpu/attention_backward.js";

export type BackwardTiles = Record<BackwardKind, TileShape>;

export const VARIANTS = {
  matmul: {
    "128x256x16 rows": { ...TILE_WIDE },
    "256x128x16 rows": { ...TILE_WIDE, BM: 256, BN: 128, TM: 16, TN: 8 },
    "128x128x8 warp4x8": { ...TILE_LARGE },
  } as Record<string, MatmulTile>,
  forward: {
    "64x32 ty16 tx8": { BM: 64, BN: 32, TY: 16, TX: 8, shuffle: true },
    "64x32 ty16 tx8 wgmem": { BM: 64, BN: 32, TY: 16, TX: 8, shuffle: false },
    "64x32 ty16 tx16": { BM: 64, BN: 32, TY: 16, TX: 16, shuffle: true },
  } as Record<string, ForwardTiles>,
  backward: {
    "tx16 kv32x32 q32x32": { dkv: { BM: 32, BN: 32, TY: 8, TX: 16 }, dq: { BM: 32, BN: 32, TY: 8, TX: 16 } },
    "tx8 kv32x32 q32x32": { dkv: { BM: 32, BN: 32, TY: 8, TX: 8 }, dq: { BM: 32, BN: 32, TY: 8, TX: 8 } },
  } as Record<string, BackwardTiles>,
};
