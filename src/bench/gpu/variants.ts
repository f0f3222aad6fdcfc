/**
 * Tile variants that `seqlab bench gpu --variants` (and scripts/bench-gpu.ts) times (names are what its tables
 * print), and that scripts/wgsl-validate.ts compiles: the candidates of the current tuning round.
 */
import { TILE_LARGE, TILE_SMALL, TILE_WIDE, type MatmulTile } from "../../backend/webgpu/matmul.js";
import { forwardName, type ForwardTiles } from "../../backend/webgpu/attention_forward.js";
import { backwardName, type BackwardKind, type BackwardTile } from "../../backend/webgpu/attention_backward.js";

/** the 128 x 64 block with 8 x 8 thread tiles, P shuffled, swizzled tiles, no register prefetch */
const BASE: ForwardTiles = { BM: 128, BN: 64, TY: 16, TX: 8, shuffle: true, pv: "shfl", swz: true, pf: false };

export type BackwardTiles = Record<BackwardKind, BackwardTile>;

/** 64 own rows, 4 x 4 scores a thread, P and dS shuffled, swizzled tiles */
const BWD: BackwardTile = { BM: 64, BN: 32, TY: 16, TX: 8, shfl: true, swz: true };
/** dQ over 64-key steps through one streamed tile, 8 x 4 scores a thread */
const Q64: BackwardTile = { ...BWD, BN: 64, TY: 8, TX: 16, st1: true };
/** 32 own rows (twice the workgroups: T < 2k), 4 x 4 scores, heads first */
const SHORT: BackwardTile = { ...BWD, BM: 32, BN: 64, TY: 8, TX: 16, hx: true };

export const VARIANTS = {
  matmul: {
    // swz: swizzled transposing stores, the default of the wide and small tiles since 2026-11-27c
    "128x256x16 rows swz": { ...TILE_WIDE, swz: true },
    "128x256x16 rows": { ...TILE_WIDE, swz: false },
    "256x128x16 rows swz": { ...TILE_WIDE, BM: 256, BN: 128, TM: 16, TN: 8, swz: true },
    "128x128x8 warp4x8": { ...TILE_LARGE },
    "64x64x16 swz": { ...TILE_SMALL, swz: true },
    "64x64x16": { ...TILE_SMALL, swz: false },
  } as Record<string, MatmulTile>,
  // named by forwardName: the 2026-11-26 default (64x32, P through workgroup memory), the 2026-11-27
  // default (128x64 ... kv1 swz nopf, still the one from 16k rows) and the 2026-11-27b round's
  // winner (bench/notes/gpu-tuning.md; its slower options live in commit 7bd9712); `--variants 128x` times them all
  forward: Object.fromEntries(
    (
      [
        { BM: 64, BN: 32, TY: 16, TX: 8, shuffle: true },
        { ...BASE, kvShared: true },
        // 2026-11-27b: longest blocks of all heads first (the default up to T = 16k)
        { ...BASE, kvShared: true, hx: true },
        { ...BASE, kvShared: true, pf: "b", hx: true },
      ] as ForwardTiles[]
    ).map((c) => [forwardName(c), c]),
  ) as Record<string, ForwardTiles>,
  // named "bwd kv <dkv tile> | q <dq tile>" (backwardName): the tiles of the default before the
  // backward round (32 x 32, 16 threads a row, P and dS through workgroup memory; the fallback)
  backward: Object.fromEntries(
    (
      [
        { dkv: { BM: 32, BN: 32, TY: 8, TX: 16 }, dq: { BM: 32, BN: 32, TY: 8, TX: 16 } },
        // 2026-11-27 backward round: the default from 2k rows (heads first up to 4k), below 2k
        // rows, and dQ over two 32-key tiles (bench/notes/gpu-tuning.md, "Attention backward")
        { dkv: BWD, dq: Q64 },
        { dkv: { ...BWD, hx: true }, dq: { ...Q64, hx: true } },
        { dkv: SHORT, dq: SHORT },
        { dkv: BWD, dq: BWD },
      ] as BackwardTiles[]
    ).map((t) => [`bwd kv ${backwardName(t.dkv)} | q ${backwardName(t.dq)}`, t]),
  ) as Record<string, BackwardTiles>,
};
