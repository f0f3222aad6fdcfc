"""PyTorch peer of scripts/bench-gpu.ts: the same shapes in fp32 on the same card.

matmul 4096^3 and 8192^3 (TF32 off), causal F.scaled_dot_product_attention B=1 H=16 K=64 at
T = 1k, 4k, 16k, 64k, forward and forward+backward. CUDA events time each shape after a
warm-up. FLOPs as in bench-gpu.ts. Usage: python scripts/bench_gpu_torch.py --out torch.json
"""
import argparse
import json

import torch
import torch.nn.functional as F


def time_it(fn, iterations):
    fn()  # warm-up
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iterations):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / 1e3 / iterations


def bench_matmul(n):
    a = torch.randn(n, n, device="cuda")
    b = torch.randn(n, n, device="cuda")
    out = torch.empty(n, n, device="cuda")
    iterations = 10 if n <= 4096 else 3
    s = time_it(lambda: torch.mm(a, b, out=out), iterations)
    return {"name": "matmul", "shape": f"{n}x{n}x{n}", "ms": s * 1e3, "tflops": 2 * n**3 / s / 1e12, "iterations": iterations}


def bench_attention(T, backward):
    B, H, K = 1, 16, 64
    q, k, v = (torch.randn(B, H, T, K, device="cuda", requires_grad=backward) for _ in range(3))
    dout = torch.randn(B, H, T, K, device="cuda")

    def step():
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        if backward:
            q.grad = k.grad = v.grad = None
            out.backward(dout)

    iterations = 10 if T <= 4096 else (3 if T <= 16384 else 1)
    with torch.set_grad_enabled(backward):
        s = time_it(step, iterations)
    forward_flops = 4 * T * (T + 1) / 2 * K * H * B
    flops = 3.5 * forward_flops if backward else forward_flops
    name = "attention fwd+bwd" if backward else "attention fwd"
    return {"name": name, "shape": f"B{B} H{H} K{K} T{T} causal", "ms": s * 1e3, "tflops": flops / s / 1e12, "iterations": iterations}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--only", choices=["matmul", "attention"])
    args = p.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    adapter = torch.cuda.get_device_name()
    print(f"# torch {torch.__version__} on {adapter}, fp32, TF32 off")
    results = []
    if args.only != "attention":
        for n in [256, 512] if args.quick else [4096, 8192]:
            results.append(bench_matmul(n))
    if args.only != "matmul":
        for T in [128, 256] if args.quick else [1024, 4096, 16384, 65536]:
            for backward in (False, True):
                try:
                    results.append(bench_attention(T, backward))
                except torch.cuda.OutOfMemoryError:
                    results.append({"name": "attention fwd+bwd" if backward else "attention fwd", "shape": f"T{T}", "error": "out of memory"})
                torch.cuda.empty_cache()
    for r in results:
        if "error" in r:
            print(f"{r['name']:18} {r['shape']:24} {r['error']}")
        else:
            print(f"{r['name']:18} {r['shape']:24} {r['ms']:10.3f} ms {r['tflops']:7.2f} TFLOP/s")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"backend": "torch", "adapter": adapter, "torch": torch.__version__, "results": results}, f, indent=2)
        print(f"# wrote {args.out}")


if __name__ == "__main__":
    main()
