#!/usr/bin/env python3
"""PyTorch twin of clip_loss_bench.c: open_clip's loss (two cross-entropies
over scale * img @ txt.T) forward + backward to img, txt and the log scale.
    python3 tests/bench/clip_loss_bench.py [B [E [REPS [THREADS]]]]"""
import json
import math
import sys
import time

import torch
import torch.nn.functional as F

B = int(sys.argv[1]) if len(sys.argv) > 1 else 4096
E = int(sys.argv[2]) if len(sys.argv) > 2 else 512
reps = int(sys.argv[3]) if len(sys.argv) > 3 else 3
if len(sys.argv) > 4:
    torch.set_num_threads(int(sys.argv[4]))
img = F.normalize(torch.rand(B, E) - 0.5, dim=1).requires_grad_()
txt = F.normalize(torch.rand(B, E) - 0.5, dim=1).requires_grad_()
ls = torch.tensor(math.log(100.0), requires_grad=True)
labels = torch.arange(B)
best = 1e30
for k in range(reps + 1):
    t0 = time.perf_counter()
    logits = ls.exp() * img @ txt.T
    loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
    loss.backward()
    t = time.perf_counter() - t0
    img.grad = txt.grad = ls.grad = None
    if k:
        best = min(best, t)
print(json.dumps({"impl": "torch", "B": B, "E": E, "threads": torch.get_num_threads(),
                  "loss": round(loss.item(), 6), "step_s": round(best, 4)}))
