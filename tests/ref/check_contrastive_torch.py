#!/usr/bin/env python3
"""One step of bm-train --mode contrastive against PyTorch autograd.

    python3 tests/ref/check_contrastive_torch.py PAIRS.bmr WORKDIR

Runs `bm-train --mode contrastive --epochs 1 --batch N` (N: every record of
PAIRS.bmr, so one step whose batch is the whole file: CLIP's loss does not
depend on the order of the pairs) on the tiny model, then the same step in
PyTorch: open_clip's tiny model (make_finetune_fixture.load_model), captions
tokenized with transformers' BertTokenizer on the model's vocab.txt, CLIP's
symmetric cross-entropy with exp(logit_scale), backward. Compares the
gradient of every parameter (the first moment the checkpoint keeps is
(1 - beta1) g after one step) and the loss of the log. Needs torch, timm,
open_clip, transformers, safetensors (the pyenv python, not CI's) and the
programs on PATH. Exit status 0 when every gradient agrees within 1e-3 of
its largest value and the loss within 1e-4."""
import json
import os
import subprocess
import sys

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.numpy import load_file
from transformers import BertTokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, __file__.rsplit("/tests/", 1)[0] + "/examples")
import make_finetune_fixture as mff  # noqa: E402
import read_records as rr  # noqa: E402


def main():
    pairs, work = sys.argv[1], sys.argv[2]
    recs = [r for _, r in rr.read(open(pairs, "rb")) if "image" in r]
    n = len(recs)
    out = os.path.join(work, "one.safetensors")
    log = os.path.join(work, "one.log")
    subprocess.run(["bm-train", "-q", "-j", "1", "--mode", "contrastive", "-m", mff.MODEL, "--epochs", "1",
                    "--batch", str(n), "--log", log, "-o", out, pairs], check=True)
    c_loss = json.loads(open(log).readline())["loss"]
    ck = load_file(os.path.join(work, "one.last.safetensors"))
    model = mff.load_model()
    tok = BertTokenizer(os.path.join(mff.MODEL, "vocab.txt"), do_lower_case=True)
    enc = tok([r["text"] for r in recs], padding=True, return_tensors="pt")
    x = mff.normalize(np.stack([r["image"] for r in recs]))
    img = F.normalize(model.visual(x), dim=-1)
    txt = F.normalize(model.text(enc["input_ids"]), dim=-1)
    logits = model.logit_scale.exp() * img @ txt.T
    lab = torch.arange(n)
    loss = (F.cross_entropy(logits, lab) + F.cross_entropy(logits.T, lab)) / 2
    loss.backward()
    worst, names = 0.0, 0
    top = max(float(p.grad.abs().max()) for p in model.parameters() if p.grad is not None)
    for name, p in model.named_parameters():
        key = "optim.m." + name
        if key not in ck:
            continue
        g = ck[key].reshape(p.shape) / 0.1
        ref = p.grad.numpy()
        if name.endswith("key.bias"):
            # zero in exact arithmetic (softmax ignores a shift of every key
            # of a query): both are rounding noise, small next to the rest
            err = float(max(np.abs(g).max(), np.abs(ref).max()) / top) * 10
        else:
            err = float(np.abs(g - ref).max() / max(np.abs(ref).max(), 1e-12))
        worst, names = max(worst, err), names + 1
        if err > 1e-3:
            print(f"{name}: gradient differs by {err:.2e} of its largest value")
    dl = abs(c_loss - loss.item())
    print(json.dumps({"pairs": n, "tensors": names, "max_rel_grad_diff": worst, "loss": loss.item(), "loss_diff": dl}))
    sys.exit(0 if names > 20 and worst < 1e-3 and dl < 1e-4 else 1)


if __name__ == "__main__":
    main()
