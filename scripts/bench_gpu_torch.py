"""PyTorch peer of scripts/bench-gpu.ts: the same shapes in fp32 on the same card (TF32 off).

Sections (--only takes a comma-separated subset; default all):
  copy       a 1 GiB device-to-device copy (bytes read + written), the bandwidth ceiling;
  scan       the Mamba selective scan forward, B=1 D=1536 N=16 T = 1k, 4k, 16k, 64k, softplus(dt +
             bias), D skip and z gate. "scan fwd" is the fastest of scripts/scan_peer.cu's fused
             CUDA kernels (built here with nvcc; mamba_ssm's design, seqlab's chunk design, and the
             block design with its loads a chunk ahead), each checked against float64 first;
             without nvcc there is no such row. "scan fwd (HF loop)" is the recurrent loop of
             transformers' mamba_selective_scan (MambaMixer's slow path, what HF runs without the
             mamba_ssm kernels, which are not installed here), copied below so that its version
             does not matter. GB/s counts the bytes bench-gpu.ts counts for the same call, so the
             ratio is the time ratio;
  matvec     none (no peer);
  decode     with --decode-dir DIR: for each DIR/NAME/config.json (bench-gpu.mjs --write-configs
             writes them), HF's AutoModelForCausalLM built from that config with seed 0, saved to
             DIR/NAME/model.safetensors for bench-gpu.mjs --model-dir to load, then greedy decoding
             with the model's cache after a prompt of 16, 2k and 16k tokens: tokens/s over 64
             steps, each step one forward of one token and one host read of the argmax (as
             generate() and bench-gpu.ts do). The greedy tokens go into the JSON for comparison;
  train      with --decode-dir DIR: the same models (loaded from DIR/NAME/model.safetensors, built
             and saved first if absent) trained as src/bench/gpu/train.ts trains them: one batch
             of B x T tokens a step, mean cross-entropy, backward, global-norm clipping, AdamW
             (weight decay on the matrices train/optimizer.ts decays), one untimed step, timed
             steps (median, wall clock; each step reads its loss and gradient norm on the host,
             as seqlab's trainer does) and one more; the losses and the first step's gradient
             norm per parameter go into the JSON for comparison (with --train-fp64 also the first
             step's loss and norms in float64, a batch row at a time: the yardstick for both);
  matmul     4096^3 and 8192^3, and transposed operands (LINEAR_SHAPES);
  attention  causal F.scaled_dot_product_attention B=1 H=16 K=64 at T = 1k, 4k, 16k, 64k,
             forward and forward+backward.
CUDA events time the kernels after a warm-up; decode is timed with torch.cuda.synchronize and the
wall clock. Each result has section, name, shape, ms, rate and unit, as bench-gpu.ts matches them.
Usage: python scripts/bench_gpu_torch.py [--quick] [--only SECTIONS] [--decode-dir DIR] [--train-steps N] [--train-fp64] --out torch.json
"""
import argparse
import json
import os
import re
import time

import torch
import torch.nn.functional as F

SECTIONS = ["copy", "scan", "decode", "train", "matmul", "attention"]

# src/bench/gpu/train.ts TRAIN_SHAPE and QUICK_TRAIN_SHAPE
TRAIN_SHAPE = {"batch": 4, "T": 1024, "steps": 5, "lr": 1e-3, "weight_decay": 0.01, "clip_norm": 1.0}
QUICK_TRAIN_SHAPE = {**TRAIN_SHAPE, "batch": 2, "T": 64, "steps": 2}
# src/train/optimizer.ts NO_DECAY_NAMES: parameters without weight decay (besides vectors)
NO_DECAY = re.compile(r"(^|\.)(A_log|D|Dskip|dt_bias|time_\w+|x_[a-z]|w0|a0|v0|k_k|k_a|r_k)$|norm|(^|\.)ln\w*\.")


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


def bench_copy(floats):
    src = torch.randn(floats, device="cuda")
    dst = torch.empty_like(src)
    s = time_it(lambda: dst.copy_(src), 20)
    return {"section": "copy", "name": "copy", "shape": f"{floats * 4 / 2**30:g} GiB", "ms": s * 1e3, "rate": 2 * floats * 4 / s / 1e9, "unit": "GB/s", "iterations": 20}


def hf_slow_scan(hidden_states, dt, A, B, C, D, z, delta_bias):
    """transformers' mamba_selective_scan, recurrent branch (delta_softplus=True); B, C are (batch, N, T)."""
    batch_size, intermediate_size, seq_len = hidden_states.shape
    input_dtype = hidden_states.dtype
    dt = F.softplus(dt + delta_bias.to(dt.dtype)[..., None])
    B = B.transpose(1, 2)
    C = C.transpose(1, 2)
    discrete_A = torch.exp(A[None, :, None, :] * dt[:, :, :, None])
    discrete_B = dt[:, :, :, None] * B[:, None, :, :].float()
    deltaB_u = discrete_B * hidden_states[:, :, :, None].float()
    ssm_state = torch.zeros(batch_size, intermediate_size, A.shape[-1], dtype=input_dtype, device=hidden_states.device)
    scan_outputs = []
    for index in range(seq_len):
        ssm_state = discrete_A[:, :, index] * ssm_state + deltaB_u[:, :, index]
        scan_output = torch.matmul(ssm_state.to(input_dtype), C[:, index, :].unsqueeze(-1))
        scan_outputs.append(scan_output[:, :, 0])
    scan_output = torch.stack(scan_outputs, dim=-1)
    scan_output = scan_output + hidden_states * D[None, :, None]
    return scan_output * F.silu(z)


def scan_bytes(B, T, D, N, chunk=64):
    """bench-gpu.ts's minimum bytes of the forward (inputs read once, output and checkpoints written once)."""
    K = -(-T // chunk)
    BTD, BTN = B * T * D, B * T * N
    return 4 * (3 * BTD + 2 * BTN + D * N + 2 * D + BTD + B * K * D * N)


def bench_scan(T):
    import scan_peer
    B, D, N = 1, 1536, 16
    u, dt, z, A, Bm, Cm, Dskip, bias = scan_peer.inputs(B, D, T, seed=T)
    iterations = 5 if T <= 4096 else (2 if T <= 16384 else 1)
    with torch.no_grad():
        s = time_it(lambda: hf_slow_scan(u, dt, A, Bm, Cm, Dskip, z, bias), iterations)
    return {
        "section": "scan", "name": "scan fwd (HF loop)", "shape": f"B{B} D{D} N{N} T{T}", "impl": "HF slow path (transformers mamba_selective_scan recurrent loop, fp32)",
        "ms": s * 1e3, "rate": scan_bytes(B, T, D, N) / s / 1e9, "unit": "GB/s", "iterations": iterations,
    }


PEER_CHECKS = {}  # plan name -> relative error against float64, checked once a run


def bench_scan_peer(peer, T):
    """The fastest of scan_peer.cu's plans (scan_peer.PEER_PLANS) at B=1 D=1536 N=16, each checked first."""
    import scan_peer
    B, D, N = 1, 1536, 16
    times, checks = {}, PEER_CHECKS
    for (name, kind, arg) in scan_peer.plan_list(peer):
        if name not in scan_peer.PEER_PLANS:
            continue
        if name not in checks:
            checks[name] = scan_peer.check(peer, kind, arg)
        if not checks[name] < 1e-5:
            raise RuntimeError(f"scan_peer.cu plan {name}: relative error {checks[name]:.1e} against float64")
        x = scan_peer.prepare(kind, scan_peer.inputs(B, D, T, seed=T))
        run = scan_peer.runner(peer, kind, arg)
        times[name] = time_it(lambda: run(*x), 20 if T <= 16384 else 5)
        del x
    best = min(times, key=times.get)
    s = times[best]
    return {
        "section": "scan", "name": "scan fwd", "shape": f"B{B} D{D} N{N} T{T}", "impl": f"CUDA, scripts/scan_peer.cu (nvcc -O3 sm_90), fastest plan: {best}",
        "plan": best, "ms": s * 1e3, "rate": scan_bytes(B, T, D, N) / s / 1e9, "unit": "GB/s", "plans_ms": {k: v * 1e3 for k, v in times.items()}, "check": max(checks.values()),
    }


# (M, N, K, transA, transB): a transposed operand is stored transposed, as seqlab's are (a Linear
# layer's forward x W^T is NT, its weight gradient dy^T x is TN); the NT shapes are the Linear
# layers of a 2048-token prefill of the decode section's 130M Mamba, the TN ones two of its weight
# gradients (src/bench/gpu/dense.ts)
LINEAR_SHAPES = [(4096, 4096, 4096, False, True), (4096, 4096, 4096, True, False),
                 (2048, 3072, 768, False, True), (2048, 768, 1536, False, True), (2048, 80, 1536, False, True),
                 (2048, 50280, 768, False, True), (80, 1536, 2048, True, False), (768, 1536, 2048, True, False)]


def bench_matmul(M, N, K, transA=False, transB=False):
    a = torch.randn(K, M, device="cuda") if transA else torch.randn(M, K, device="cuda")
    b = torch.randn(N, K, device="cuda") if transB else torch.randn(K, N, device="cuda")
    out = torch.empty(M, N, device="cuda")
    a_ = a.t() if transA else a
    b_ = b.t() if transB else b
    flops = 2 * M * N * K
    iterations = 10 if flops <= 2 * 4096**3 else 3
    s = time_it(lambda: torch.mm(a_, b_, out=out), iterations)
    tflops = flops / s / 1e12
    layout = f" {'T' if transA else 'N'}{'T' if transB else 'N'}" if transA or transB else ""
    return {"section": "matmul", "name": "matmul", "shape": f"{M}x{N}x{K}{layout}", "ms": s * 1e3, "rate": tflops, "unit": "TFLOP/s", "tflops": tflops, "iterations": iterations}


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
    tflops = flops / s / 1e12
    return {"section": "attention", "name": name, "shape": f"B{B} H{H} K{K} T{T} causal", "ms": s * 1e3, "rate": tflops, "unit": "TFLOP/s", "tflops": tflops, "iterations": iterations}


def prompt_tokens(n, V):
    """The prompt bench-gpu.ts feeds (src/bench/gpu/decode.ts promptTokens)."""
    return [(i * 7919 + 17) % V for i in range(n)]


def build_decode_model(d):
    """HF's model for DIR/NAME/config.json, seed 0, saved beside it so that bench-gpu.mjs decodes the same weights."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(d)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).to(device="cuda", dtype=torch.float32).eval()
    model.save_pretrained(d)
    return model


def bench_decode(model, name, context, new_tokens):
    V = model.config.vocab_size
    is_mamba = model.config.model_type == "mamba"
    ids = torch.tensor([prompt_tokens(context, V)], device="cuda")

    def forward(x, cache):
        kw = {} if cache is None else ({"cache_params": cache} if is_mamba else {"past_key_values": cache})
        out = model(input_ids=x, use_cache=True, logits_to_keep=1, **kw)
        return out.logits[0, -1].argmax().item(), (out.cache_params if is_mamba else out.past_key_values)

    with torch.no_grad():
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        token, cache = forward(ids, None)
        prefill = time.perf_counter() - t0
        greedy = [token]
        # four untimed steps, as bench-gpu.ts (two plain, two with GPU timestamps) before it times
        for _ in range(4):
            token, cache = forward(torch.tensor([[token]], device="cuda"), cache)
            greedy.append(token)
        torch.cuda.synchronize()
        t1 = time.perf_counter()
        for _ in range(new_tokens):
            token, cache = forward(torch.tensor([[token]], device="cuda"), cache)
            if len(greedy) < 16:
                greedy.append(token)
        torch.cuda.synchronize()
        seconds = time.perf_counter() - t1
    del cache
    torch.cuda.empty_cache()
    return {
        "section": "decode", "name": f"decode {name}", "shape": f"ctx {context}", "impl": f"HF {type(model).__name__} forward with cache, greedy (fp32)",
        "ms": seconds * 1e3 / new_tokens, "rate": new_tokens / seconds, "unit": "tok/s", "iterations": new_tokens,
        "prefill tok/s": context / prefill, "greedy": greedy,
    }


def load_decode_model(d):
    """DIR/NAME's saved weights (written by build_decode_model), or built and saved now."""
    from transformers import AutoModelForCausalLM

    if not os.path.isfile(os.path.join(d, "model.safetensors")):
        return build_decode_model(d)
    return AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).to("cuda")


def first_step_fp64(model, ids, targets):
    """The first step's loss and per-parameter gradient norms in float64: the yardstick both fp32 sides are measured against."""
    import copy

    m = copy.deepcopy(model).double().train()
    # a batch row at a time, the gradients summed (HF's Mamba slow path does not fit B = 4 in float64 on an H100)
    total = 0.0
    for b in range(ids.shape[0]):
        logits = m(input_ids=ids[b : b + 1]).logits
        loss = F.cross_entropy(logits.view(-1, logits.shape[-1]), targets[b].view(-1)) / ids.shape[0]
        loss.backward()
        total += loss.item()
        del logits, loss
    norms = {n: p.grad.norm().item() for n, p in m.named_parameters() if p.grad is not None}
    del m
    torch.cuda.empty_cache()
    return total, norms


def bench_train(model, name, s, fp64=False):
    B, T, V = s["batch"], s["T"], model.config.vocab_size
    seq = torch.tensor(prompt_tokens(B * T + 1, V), device="cuda")
    ids, targets = seq[:-1].view(B, T), seq[1:].view(B, T)
    extra = {}
    if fp64:
        extra["loss fp64"], extra["param grad norms fp64"] = first_step_fp64(model, ids, targets)
    model.train()
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decay = [p for n, p in named if p.dim() >= 2 and not NO_DECAY.search(n)]
    rest = [p for n, p in named if not (p.dim() >= 2 and not NO_DECAY.search(n))]
    groups = [{"params": decay, "weight_decay": s["weight_decay"]}, {"params": rest, "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=s["lr"], betas=(0.9, 0.999), eps=1e-8)
    losses, norms, step_ms, param_norms = [], [], [], {}

    def step():
        logits = model(input_ids=ids).logits
        loss = F.cross_entropy(logits.view(-1, V), targets.view(-1))
        loss.backward()
        if not param_norms:
            param_norms.update({n: p.grad.norm().item() for n, p in named if p.grad is not None})
        norm = torch.nn.utils.clip_grad_norm_([p for _, p in named], s["clip_norm"])
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        norms.append(norm.item())

    step()
    for _ in range(s["steps"]):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        step()
        step_ms.append((time.perf_counter() - t0) * 1e3)
    step()
    del opt
    model.zero_grad(set_to_none=True)
    model.eval()
    median = sorted(step_ms)[len(step_ms) // 2]
    return {
        "section": "train", "name": f"train {name}", "shape": f"B{B} T{T}", "impl": f"HF {type(model).__name__}, F.cross_entropy, clip_grad_norm_, torch.optim.AdamW (fp32)",
        "ms": median, "rate": B * T * 1e3 / median, "unit": "tok/s", "iterations": s["steps"], "losses": losses, "grad norms": norms,
        "param grad norms": param_norms, **extra,
    }


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out")
    p.add_argument("--quick", action="store_true", help="small shapes and models (a smoke run)")
    p.add_argument("--only", help=f"comma-separated sections ({', '.join(SECTIONS)}; default all)")
    p.add_argument("--decode-dir", help="decode: build, save and time the models configured under DIR/NAME/config.json")
    p.add_argument("--train-fp64", action="store_true", help="train: also the first step's loss and gradient norms in float64 (the yardstick for both fp32 sides)")
    p.add_argument("--train-steps", type=int, help="train: timed steps (default: TRAIN_SHAPE's); HF's Mamba takes about 30 s a step on an H100")
    args = p.parse_args()
    if args.train_steps is not None and args.train_steps < 1:
        p.error(f"--train-steps: {args.train_steps} is not a positive number of steps")
    only = SECTIONS if not args.only else args.only.split(",")
    for s in only:
        if s not in SECTIONS:
            p.error(f"--only: unknown section {s!r} (sections: {', '.join(SECTIONS)})")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    adapter = torch.cuda.get_device_name()
    print(f"# torch {torch.__version__} on {adapter}, fp32, TF32 off", flush=True)
    results = []

    def add(r):
        results.append(r)
        if "error" in r:
            print(f"{r['name']:18} {r['shape']:26} {r['error']}", flush=True)
        else:
            print(f"{r['name']:18} {r['shape']:26} {r['ms']:10.3f} ms {r['rate']:9.2f} {r['unit']}", flush=True)

    def guarded(name, shape, f):
        try:
            add(f())
        except torch.cuda.OutOfMemoryError:
            add({"section": name.split()[0], "name": name, "shape": shape, "error": "out of memory"})
        torch.cuda.empty_cache()

    if "copy" in only:
        add(bench_copy(2**18 if args.quick else 2**28))
    if "scan" in only:
        peer = None
        try:
            import scan_peer
            peer = scan_peer.build()
        except Exception as e:  # no nvcc, or it failed: the HF loop stays the only peer
            print(f"# scan peer: scripts/scan_peer.cu not built ({type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e).strip() else ''})", flush=True)
        for T in [256, 1024] if args.quick else [1024, 4096, 16384, 65536]:
            if peer is not None:
                guarded("scan fwd", f"B1 D1536 N16 T{T}", lambda: bench_scan_peer(peer, T))
            guarded("scan fwd (HF loop)", f"B1 D1536 N16 T{T}", lambda: bench_scan(T))
    if "decode" in only and args.decode_dir:
        contexts, new_tokens = ([16, 100], 4) if args.quick else ([16, 2048, 16384], 64)
        for name in sorted(os.listdir(args.decode_dir)):
            d = os.path.join(args.decode_dir, name)
            if not os.path.isfile(os.path.join(d, "config.json")):
                continue
            t0 = time.perf_counter()
            model = build_decode_model(d)
            params = sum(p.numel() for p in model.parameters())
            print(f"# {name}: {type(model).__name__} {params / 1e6:.1f}M parameters, built and saved in {time.perf_counter() - t0:.1f} s", flush=True)
            for c in contexts:
                guarded(f"decode {name}", f"ctx {c}", lambda: bench_decode(model, name, c, new_tokens))
            del model
            torch.cuda.empty_cache()
    if "train" in only and args.decode_dir:
        shape = QUICK_TRAIN_SHAPE if args.quick else TRAIN_SHAPE
        if args.train_steps is not None:
            shape = {**shape, "steps": args.train_steps}
        for name in sorted(os.listdir(args.decode_dir)):
            d = os.path.join(args.decode_dir, name)
            if not os.path.isfile(os.path.join(d, "config.json")):
                continue
            model = load_decode_model(d)
            guarded(f"train {name}", f"B{shape['batch']} T{shape['T']}", lambda: bench_train(model, name, shape, args.train_fp64))
            del model
            torch.cuda.empty_cache()
    if "matmul" in only:
        for shape in [(256, 256, 256), (512, 512, 512)] if args.quick else [(4096, 4096, 4096), (8192, 8192, 8192), *LINEAR_SHAPES]:
            add(bench_matmul(*shape))
    if "attention" in only:
        for T in [128, 256] if args.quick else [1024, 4096, 16384, 65536]:
            for backward in (False, True):
                name = "attention fwd+bwd" if backward else "attention fwd"
                guarded(name, f"B1 H16 K64 T{T} causal", lambda: bench_attention(T, backward))
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"backend": "torch", "adapter": adapter, "torch": torch.__version__, "results": results}, f, indent=2)
        print(f"# wrote {args.out}")


if __name__ == "__main__":
    main()
