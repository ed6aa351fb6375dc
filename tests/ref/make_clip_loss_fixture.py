#!/usr/bin/env python3
"""Reference values for CLIP's symmetric contrastive loss, from PyTorch.

    python3 tests/ref/make_clip_loss_fixture.py tests/fixtures/clip_loss.bmr

The loss as open_clip's ClipLoss computes it on one process:
logits = exp(log_scale) * img @ txt.T, then the mean of
F.cross_entropy(logits, arange) and F.cross_entropy(logits.T, arange);
gradients by autograd (float64, so the fixture is exact to float32).
tests/unit/test_clip_loss.c replays each case in C."""
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, __file__.rsplit("/tests/", 1)[0] + "/examples")
import read_records as rr  # noqa: E402

rng = np.random.default_rng(20261123)
recs = []


def unit_rows(B, E):
    x = rng.standard_normal((B, E))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


# (B, E, log_scale): the open_clip init, BiomedCLIP's ln 100, a tiny scale, B = 1
for B, E, ls in [(6, 16, np.log(1 / 0.07)), (9, 8, np.log(100.0)), (4, 5, 0.3), (1, 7, 1.0),
                 (17, 12, 2.0)]:
    img, txt = unit_rows(B, E), unit_rows(B, E)
    if B == 9:  # pull some pairs together so that the diagonal dominates some rows
        txt[:4] = img[:4] + 0.1 * txt[:4]
        txt /= np.linalg.norm(txt, axis=1, keepdims=True)
    ls = np.float32(ls)
    ti = torch.tensor(img, dtype=torch.float64, requires_grad=True)
    tt = torch.tensor(txt, dtype=torch.float64, requires_grad=True)
    tl = torch.tensor(float(ls), dtype=torch.float64, requires_grad=True)
    logits = tl.exp() * ti @ tt.T
    labels = torch.arange(B)
    loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
    loss.backward()
    recs.append({"case": "clip_loss", "img": img, "txt": txt,
                 "log_scale": np.array(ls, np.float32),
                 "loss": float(loss.item()),  # a msgpack float64
                 "dimg": ti.grad.numpy().astype(np.float32),
                 "dtxt": tt.grad.numpy().astype(np.float32),
                 "dlog_scale": np.array(tl.grad.item(), np.float32)})

with open(sys.argv[1], "wb") as f:
    rr.write(f, {"version": 1, "task": "reference",
                 "producer": "tests/ref/make_clip_loss_fixture.py", "torch": torch.__version__}, recs)
print(f"wrote {len(recs)} cases to {sys.argv[1]}")
