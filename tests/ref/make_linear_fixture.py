#!/usr/bin/env python3
"""Reference losses of bm-train --mode linear, from PyTorch.

    python3 tests/ref/make_linear_fixture.py tests/fixtures/linear

For a multiclass case (features img_emb + txt_emb concatenated, clipping,
weight decay, warm-up) and a multilabel one (BCE with inverse-frequency
positive weights), writes CASE.bmr (the training records), CASE.init.safetensors
(non-zero initial head.weight / head.bias, given to bm-train --init) and one
ref.json with bm-train's arguments and torch's losses of 10 AdamW steps. The
order of the samples is bm-train's: the seeded Fisher-Yates permutation of
recfile.h (splitmix64), reproduced here. tests/t-train-linear.sh compares."""
import json
import math
import os
import sys

import numpy as np
import torch
from safetensors.numpy import save_file

sys.path.insert(0, __file__.rsplit("/tests/", 1)[0] + "/examples")
import read_records as rr  # noqa: E402

M = (1 << 64) - 1
GOLD = 0x9E3779B97F4A7C15


def permutation(n, seed):
    """bm_permutation: Fisher-Yates with splitmix64 (common/util.c)."""
    p, s = list(range(n)), seed & M
    for i in range(n - 1, 0, -1):
        s = (s + GOLD) & M
        z = s
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M
        z ^= z >> 31
        j = z % (i + 1)
        p[i], p[j] = p[j], p[i]
    return p


def epoch_seed(seed, e):
    return seed ^ ((GOLD * (e + 1)) & M)


def cosine_warmup(step, warmup, total):
    if step < warmup:
        return (step + 1) / warmup
    e, es = step - warmup, total - warmup
    if es <= 0:
        return 1.0
    return 0.5 * (1 + math.cos(math.pi * e / es)) if e < es else 0.0


def case(out, name, rng, task, dims, C, n, batch, epochs, lr, wd, warmup, clip, seed):
    D = sum(dims)
    X = rng.standard_normal((n, D)).astype(np.float32)
    if task == "multiclass":
        lab = rng.integers(0, C, n)
        Y = np.zeros((n, C), np.float32)
        Y[np.arange(n), lab] = 1
    else:
        Y = (rng.random((n, C)) < 0.3).astype(np.float32)
        Y[0, :] = 1  # every class has a positive
    classes = [f"{name}{k}" for k in range(C)]
    recs = []
    for i in range(n):
        r = {"id": f"{name}-{i}", "target": Y[i], "img_emb": X[i, :dims[0]]}
        if len(dims) > 1:
            r["txt_emb"] = X[i, dims[0]:]
        recs.append(r)
    with open(os.path.join(out, name + ".bmr"), "wb") as f:
        rr.write(f, {"version": 1, "task": task, "classes": classes,
                     "producer": "tests/ref/make_linear_fixture.py"}, recs)
    W0 = (rng.standard_normal((C, D)) * 0.3).astype(np.float32)
    b0 = (rng.standard_normal(C) * 0.3).astype(np.float32)
    save_file({"head.weight": W0, "head.bias": b0}, os.path.join(out, name + ".init.safetensors"))

    W = torch.tensor(W0, requires_grad=True)
    b = torch.tensor(b0, requires_grad=True)
    opt = torch.optim.AdamW([{"params": [W], "weight_decay": wd}, {"params": [b], "weight_decay": 0.0}],
                            lr=lr, betas=(0.9, 0.999), eps=1e-8, foreach=False)
    Xt, Yt = torch.tensor(X), torch.tensor(Y)
    if task == "multilabel":
        npos = Y.sum(0)
        lossf = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor((n - npos) / npos, dtype=torch.float32))
    else:
        lossf = torch.nn.CrossEntropyLoss()
    spe = (n + batch - 1) // batch
    total, step, losses = epochs * spe, 0, []
    for e in range(epochs):
        perm = permutation(n, epoch_seed(seed, e))
        for s in range(spe):
            idx = torch.tensor(perm[s * batch:(s + 1) * batch])
            logits = Xt[idx] @ W.T + b
            loss = lossf(logits, Yt[idx])
            opt.zero_grad()
            loss.backward()
            if clip > 0:
                torch.nn.utils.clip_grad_norm_([W, b], clip)
            for g in opt.param_groups:
                g["lr"] = lr * cosine_warmup(step, warmup, total)
            opt.step()
            losses.append(loss.item())
            step += 1
    feats = "both" if len(dims) > 1 else "img"
    args = ["--features", feats, "--epochs", str(epochs), "--batch", str(batch), "--lr", repr(lr),
            "--weight-decay", repr(wd), "--warmup", str(warmup), "--clip", repr(clip), "--seed", str(seed),
            "--init", name + ".init.safetensors"]
    return {"args": args, "losses": losses, "final_weight_sum": float(W.detach().double().sum())}


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(20261123)
    ref = {"producer": "tests/ref/make_linear_fixture.py", "torch": torch.__version__,
           "mc": case(out, "mc", rng, "multiclass", [12, 8], 5, 37, 8, 2, 0.05, 0.1, 3, 0.5, 7),
           "ml": case(out, "ml", rng, "multilabel", [16], 4, 37, 8, 2, 0.05, 0.01, 2, 0.0, 11)}
    with open(os.path.join(out, "ref.json"), "w") as f:
        json.dump(ref, f, indent=1)


main()
