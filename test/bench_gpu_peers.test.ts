/**
 * bench gpu's scan summary against scripts/bench_gpu_torch.py's two scan peers: the fused CUDA
 * kernel of scripts/scan_peer.cu ("scan fwd") and transformers' recurrent loop ("scan fwd (HF
 * loop)"), matched by shape; a peer that is absent or failed (no rate) is left out of the line.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { scanPeerLines, type TorchFile } from "../src/bench/gpu/run.js";
import type { Result } from "../src/bench/gpu/timing.js";

const row = (shape: string, rate: number, name = "scan fwd", variant = "default: lookback CH64 WD64 U4"): Result => ({
  section: "scan", name, shape, variant, ms: 1, rate, unit: "GB/s", iterations: 1, timing: "timestamp",
});

test("scan summary: share of copy and the ratio to each peer of the same shape", () => {
  const results = [row("B1 D1536 N16 T1024", 300), row("B1 D1536 N16 T4096", 500), row("B1 D1536 N16 T4096", 900, "scan fwd+bwd")];
  const torch: TorchFile = {
    adapter: "card",
    torch: "2.11",
    results: [
      { section: "scan", name: "scan fwd", shape: "B1 D1536 N16 T1024", rate: 750, plan: "staged C12 I8 G2" },
      { section: "scan", name: "scan fwd (HF loop)", shape: "B1 D1536 N16 T1024", rate: 0.5 },
      { section: "scan", name: "scan fwd", shape: "B1 D1536 N16 T4096", error: "out of memory" },
      { section: "scan", name: "scan fwd (HF loop)", shape: "B1 D1536 N16 T4096", rate: 0.25 },
    ],
  };
  const lines = scanPeerLines(results, torch, 3000);
  assert.deepEqual(lines, [
    "# scan fwd B1 D1536 N16 T1024: 300 GB/s, 10% of copy; 0.40x the CUDA peer (staged C12 I8 G2: 750 GB/s), 600x the HF loop",
    "# scan fwd B1 D1536 N16 T4096: 500 GB/s, 17% of copy; 2000x the HF loop",
  ]);
  assert.deepEqual(scanPeerLines(results, null, undefined), [
    "# scan fwd B1 D1536 N16 T1024: 300 GB/s, no copy measured",
    "# scan fwd B1 D1536 N16 T4096: 500 GB/s, no copy measured",
  ]);
});
