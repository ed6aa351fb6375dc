#!/usr/bin/env python3
"""PyTorch eager twin of backward_bench.c: one timm ViT-B/16 block, forward +
backward at a batch of images on N threads. Prints one JSON line.
    python3 tests/bench/backward_bench.py [BATCH [REPS [THREADS]]]"""
import functools
import json
import sys
import time

import torch
from timm.models.vision_transformer import Block

B = int(sys.argv[1]) if len(sys.argv) > 1 else 16
reps = int(sys.argv[2]) if len(sys.argv) > 2 else 3
if len(sys.argv) > 3:
    torch.set_num_threads(int(sys.argv[3]))
blk = Block(768, 12, qkv_bias=True, norm_layer=functools.partial(torch.nn.LayerNorm, eps=1e-6))
x = torch.randn(B, 197, 768, requires_grad=True)
dy = torch.randn(B, 197, 768)
tf = tb = 0.0
for rep in range(reps + 1):  # rep 0 warms up
    t0 = time.perf_counter()
    out = blk(x)
    t1 = time.perf_counter()
    out.backward(dy)
    t2 = time.perf_counter()
    if rep:
        tf += t1 - t0
        tb += t2 - t1
print(json.dumps({"impl": "torch", "batch": B, "threads": torch.get_num_threads(),
                  "fwd_s": round(tf / reps, 4), "bwd_s": round(tb / reps, 4),
                  "step_s": round((tf + tb) / reps, 4)}))
