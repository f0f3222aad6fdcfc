"""Check that directories written by `seqlab export --hf DIR ... --reference` load in transformers
and reproduce seqlab's logits.

Each DIR holds config.json, model.safetensors and reference.safetensors (input_ids and the logits
seqlab computed on them). The model is loaded with AutoModelForCausalLM in float32; the check
fails on any missing, unexpected or mis-shaped weight, or a relative logits error above 1e-4.
Usage (transformers >= 5 and PyTorch): python3 scripts/check_hf_export.py DIR [DIR ...]
"""
import os, sys
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

TOL = 1e-4
failed = 0
for d in sys.argv[1:]:
    if not os.path.exists(os.path.join(d, "reference.safetensors")):
        print(f"{d}: no reference.safetensors (export with --reference) FAIL")
        failed += 1
        continue
    ref = load_file(os.path.join(d, "reference.safetensors"))
    try:
        model, info = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32, output_loading_info=True)
    except Exception as e:  # one directory that does not load is reported, the others still checked
        print(f"{d}: does not load: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''} FAIL")
        failed += 1
        continue
    model.eval()
    bad = {k: v for k, v in info.items() if k in ("missing_keys", "unexpected_keys", "mismatched_keys") and v}
    with torch.no_grad():
        logits = model(input_ids=ref["input_ids"].long(), use_cache=False).logits.float()
    want = ref["logits"]
    err = ((logits - want).norm() / want.norm()).item() if logits.shape == want.shape else float("inf")
    ok = not bad and err <= TOL
    failed += not ok
    print(f"{d}: {type(model).__name__} logits rel. error {err:.2e} (tol {TOL:g}){'' if not bad else f' loading: {bad}'} {'ok' if ok else 'FAIL'}")
print("check_hf_export: PASS" if failed == 0 else f"check_hf_export: FAIL ({failed} of {len(sys.argv) - 1})")
sys.exit(1 if failed else 0)
