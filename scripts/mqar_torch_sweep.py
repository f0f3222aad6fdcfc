"""What does a tiny Llama need to learn MQAR within the showdown's budget? A PyTorch sweep on a GPU.

seqlab's showdown trains a 2-layer, width-64 Llama-style Transformer on multi-query associative
recall (src/tasks/mqar.ts) and, at the settings of src/experiments/plan.ts, it stays on the
"recalling nothing" plateau (bench/results/mqar-sweep-2026-11-27.jsonl, 33 runs on the CPU).
This script asks the same question of Hugging Face's LlamaForCausalLM (and MambaForCausalLM for
the other side of the gap) over many settings at once, many processes on one GPU, so the task
can be sized from an independent implementation before seqlab spends CPU hours on it.

The task is seqlab's MQAR format (not a copy of its generator, so its random streams differ):
vocabulary 2A + 16 (keys 0..A-1, values A..2A-1, 16 filler tokens), `pairs` key-value pairs
first, then each key queried once, at a random even slot after the context as (key, value); the
loss and accuracy are on the value predicted at the key's position.

Usage: python3 scripts/mqar_torch_sweep.py OUT.jsonl [PROCESSES] [GRID]
GRID: "default" (the sizing grid), a JSON list of settings, or a .json file holding one
Each line of OUT.jsonl: the settings, parameters, held-out accuracy every `eval_every` steps,
the first step at which it passed 90%, the final loss and seconds.
"""
import itertools, json, math, multiprocessing as mp, sys, time

FILLER = 16


def mqar_batch(torch, B, T, pairs, A, g):
    x = torch.randint(2 * A, 2 * A + FILLER, (B, T), generator=g)
    y = torch.full((B, T), -100, dtype=torch.long)
    slots = (T - 2 * pairs) // 2
    for b in range(B):
        keys = torch.randperm(A, generator=g)[:pairs]
        vals = torch.randint(A, 2 * A, (pairs,), generator=g)
        x[b, 0:2 * pairs:2] = keys
        x[b, 1:2 * pairs:2] = vals
        chosen = torch.randperm(slots, generator=g)[:pairs]
        order = torch.randperm(pairs, generator=g)
        pos = 2 * pairs + 2 * chosen
        x[b, pos] = keys[order]
        x[b, pos + 1] = vals[order]
        y[b, pos] = vals[order]
    return x, y


def make_model(T, s):
    V = 2 * s["alphabet"] + FILLER
    if s["arch"] == "llama":
        c = T.LlamaConfig(vocab_size=V, hidden_size=s["width"], intermediate_size=s.get("ffn", 171), num_hidden_layers=s["layers"],
                          num_attention_heads=s["heads"], num_key_value_heads=s["heads"], max_position_embeddings=4096,
                          tie_word_embeddings=True, initializer_range=s["init"], rms_norm_eps=1e-5, rope_theta=10000.0)
        return T.LlamaForCausalLM(c)
    c = T.MambaConfig(vocab_size=V, hidden_size=s["width"], state_size=s["state"], num_hidden_layers=s["layers"], expand=2,
                      tie_word_embeddings=True, use_mambapy=False, initializer_range=s["init"])
    return T.MambaForCausalLM(c)


def run(s):
    import torch, transformers as T
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.manual_seed(s["seed"])
    g = torch.Generator().manual_seed(s["seed"])
    ge = torch.Generator().manual_seed(10_000 + s["seed"])
    held = [mqar_batch(torch, 128, s["length"], s["pairs"], s["alphabet"], ge) for _ in range(4)]
    m = make_model(T, s).cuda()
    decay = [p for n, p in m.named_parameters() if p.dim() >= 2]
    keep = [p for n, p in m.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": s["wd"]}, {"params": keep, "weight_decay": 0.0}], lr=s["lr"], betas=(0.9, 0.95))
    warm = max(1, int(s["steps"] * s["warmup"]))

    def lr_at(step):
        if step < warm:
            return (step + 1) / warm
        p = (step - warm) / max(1, s["steps"] - warm)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    curve, first90, t0 = [], None, time.time()

    def evaluate():
        m.eval()
        right = total = 0
        with torch.no_grad():
            for x, y in held:
                x, y = x.cuda(), y.cuda()
                pred = m(input_ids=x).logits.argmax(-1)
                mask = y != -100
                right += (pred[mask] == y[mask]).sum().item()
                total += mask.sum().item()
        m.train()
        return right / total

    for step in range(s["steps"]):
        x, y = mqar_batch(torch, s["batch"], s["length"], s["pairs"], s["alphabet"], g)
        x, y = x.cuda(), y.cuda()
        logits = m(input_ids=x).logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), ignore_index=-100)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        opt.step()
        sched.step()
        if (step + 1) % s["eval_every"] == 0 or step + 1 == s["steps"]:
            acc = evaluate()
            curve.append([step + 1, round(acc, 4)])
            if first90 is None and acc >= 0.9:
                first90 = step + 1
    params = sum(p.numel() for p in m.parameters())
    return {**s, "params": params, "acc": curve[-1][1], "first90": first90, "curve": curve, "loss": round(loss.item(), 4), "s": round(time.time() - t0, 1)}


def default_grid():
    base = {"arch": "llama", "width": 64, "layers": 2, "heads": 4, "init": 0.1, "wd": 0.01, "warmup": 0.1, "batch": 32,
            "steps": 3000, "length": 32, "pairs": 4, "alphabet": 32, "lr": 3e-3, "seed": 0, "eval_every": 250, "state": 16}
    grid = []
    for lr, A, pairs, init in itertools.product([1e-3, 3e-3, 1e-2], [8, 16, 32], [4, 8], [0.02, 0.1]):
        length = 32 if pairs == 4 else 64
        grid.append({**base, "lr": lr, "alphabet": A, "pairs": pairs, "length": length, "init": init})
    for A in [8, 32]:
        grid.append({**base, "alphabet": A, "batch": 128})
        grid.append({**base, "alphabet": A, "steps": 8000})
        grid.append({**base, "alphabet": A, "heads": 1})
        grid.append({**base, "alphabet": A, "layers": 3})
        grid.append({**base, "alphabet": A, "width": 128, "ffn": 342})
    for A, state, lr in itertools.product([8, 32], [4, 16], [1e-3, 3e-3]):
        grid.append({**base, "arch": "mamba", "layers": 3, "alphabet": A, "state": state, "lr": lr})
    return grid


if __name__ == "__main__":
    out = sys.argv[1]
    procs = int(sys.argv[2]) if len(sys.argv) > 2 else 8
    spec = sys.argv[3] if len(sys.argv) > 3 else "default"
    grid = default_grid() if spec == "default" else json.load(open(spec)) if spec.endswith(".json") else json.loads(spec)
    t0 = time.time()
    with open(out, "w") as f, mp.get_context("spawn").Pool(procs) as pool:
        for r in pool.imap_unordered(run, grid):
            f.write(json.dumps(r) + "\n")
            f.flush()
            print(f"{time.time() - t0:6.0f}s {r['arch']} lr={r['lr']} A={r['alphabet']} pairs={r['pairs']} init={r['init']} "
                  f"B={r['batch']} steps={r['steps']} heads={r.get('heads')} L={r['layers']} W={r['width']} state={r['state']}: "
                  f"acc {r['acc']} first90 {r['first90']} ({r['s']}s)", flush=True)
