"""Build and time scripts/scan_peer.cu, the fused CUDA selective-scan forward, on the GPU machine.

What a kernel compiled by nvcc reaches on issue 6's scan shape (B=1 D=1536 N=16, fp32), for the
same GB/s bench-gpu.ts counts: the yardstick that tells the WGSL kernels' distance from the card's
own toolchain. Each plan is first checked against transformers' recurrent loop (hf_slow_scan in
bench_gpu_torch.py) on ragged shapes, then timed with CUDA events.

Usage (GPU machine): python3 scripts/scan_peer.py --out peer.json [--plans 0,1] [--quick]
"""
import argparse
import json
import os
import sys
import time

import torch

N = 16
# the plans bench_gpu_torch.py times as the scan's CUDA peer: the fastest of each design in the
# 2026-11-28 runs (bench/notes/gpu-tuning.md)
PEER_PLANS = ["staged C12 I8 G2", "chunks L64", "chunks L128", "chunks L256", "W1 I16 G2"]


def _bench():
    """bench_gpu_torch's loop and timers (imported late: it imports this module too)."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import bench_gpu_torch
    return bench_gpu_torch


def build():
    from torch.utils.cpp_extension import load
    t0 = time.perf_counter()
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "scan_peer.cu")
    mod = load(name="seqlab_scan_peer", sources=[src], extra_cuda_cflags=["-O3", "-gencode=arch=compute_90,code=sm_90", "-Xptxas", "-v"], verbose=False)
    print(f"# built scan_peer.cu in {time.perf_counter() - t0:.1f} s", flush=True)
    return mod


def inputs(B, D, T, seed):
    g = torch.Generator(device="cuda").manual_seed(seed)
    r = lambda *shape: torch.randn(*shape, device="cuda", generator=g)
    u, dt, z = r(B, D, T), r(B, D, T) * 1.7 - 4.6, r(B, D, T)
    A = -torch.rand(D, N, device="cuda", generator=g) * N - 0.5
    Bm, Cm, Dskip, bias = r(B, N, T), r(B, N, T), r(D), r(D) * 0.3 - 0.5
    return u, dt, z, A, Bm, Cm, Dskip, bias


CHUNKS = [64, 128, 256, 512]


def plan_list(mod):
    """(name, run): run(u, dt, z, A, B, C, Dskip, bias) in HF layouts -> y (B, D, T), and its inputs' layout change."""
    out = [(name, "block", i) for i, name in enumerate(mod.plans())]
    return out + [(f"chunks L{L}", "chunks", L) for L in CHUNKS]


def prepare(kind, x):
    """The chunk design reads (B, T, D) and (B, T, N): transposed once, outside the timing."""
    if kind == "block":
        return x
    u, dt, z, A, Bm, Cm, Dskip, bias = x
    t = lambda v: v.transpose(1, 2).contiguous()
    return t(u), t(dt), t(z), A, t(Bm), t(Cm), Dskip, bias


def runner(mod, kind, arg):
    if kind == "block":
        return lambda *x: mod.scan_fwd(*x, arg)
    return lambda *x: mod.scan_fwd_chunks(*x, arg)


def check(mod, kind, arg):
    """Largest error relative to the output's scale, against the recurrent loop in float64."""
    worst = 0.0
    run = runner(mod, kind, arg)
    for (B, D, T) in [(2, 40, 999), (1, 24, 4100), (3, 8, 257), (1, 16, 2048 * 3 + 4), (2, 136, 300)]:
        u, dt, z, A, Bm, Cm, Dskip, bias = inputs(B, D, T, seed=T)
        with torch.no_grad():
            y = run(*prepare(kind, (u, dt, z, A, Bm, Cm, Dskip, bias)))
        if kind != "block":
            y = y.transpose(1, 2)
        with torch.no_grad():
            ref = _bench().hf_slow_scan(*(t.double() for t in (u, dt, A, Bm, Cm, Dskip, z, bias)))
        err = ((y.double() - ref).abs().max() / ref.abs().max()).item()
        worst = max(worst, err)
    return worst


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out")
    p.add_argument("--plans", help="comma-separated plan names, spaces optional (W1I16G2,chunksL256; default all)")
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    bench = _bench()
    time_it, bench_copy, scan_bytes = bench.time_it, bench.bench_copy, bench.scan_bytes
    mod = build()
    every = plan_list(mod)
    plans = every if not args.plans else [p for p in every if any(p[0].replace(" ", "") == w.replace(" ", "") for w in args.plans.split(","))]
    adapter = torch.cuda.get_device_name()
    print(f"# torch {torch.__version__} on {adapter}", flush=True)
    copy = bench_copy(2**24 if args.quick else 2**28)  # quick: 64 MiB, past the 50 MB L2
    print(f"copy {copy['rate']:.0f} GB/s", flush=True)
    results = [copy]
    shapes = [(1, 1024)] if args.quick else [(1, 1024), (1, 4096), (1, 16384), (1, 65536), (8, 4096)]
    D = 1536
    for (name, kind, arg) in plans:
        err = check(mod, kind, arg)
        print(f"# plan {name}: worst relative error against float64 {err:.1e}", flush=True)
        run = runner(mod, kind, arg)
        for (B, T) in shapes:
            x = prepare(kind, inputs(B, D, T, seed=T))
            iterations = 20 if B * T <= 16384 else 5
            s = time_it(lambda: run(*x), iterations)
            rate = scan_bytes(B, T, D, N) / s / 1e9
            results.append({"section": "scan", "name": "scan fwd", "shape": f"B{B} D{D} N{N} T{T}", "impl": f"CUDA scan_peer.cu {name}",
                            "plan": name, "ms": s * 1e3, "rate": rate, "unit": "GB/s", "of_copy": rate / copy["rate"], "check": err})
            print(f"scan fwd {name:10} B{B} T{T:6} {s * 1e3:8.3f} ms {rate:7.0f} GB/s {100 * rate / copy['rate']:5.1f}% of copy", flush=True)
            del x
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"adapter": adapter, "torch": torch.__version__, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
