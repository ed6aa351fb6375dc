#!/usr/bin/env python3
"""PyTorch eager twin of fusion_bench.c: the reference fusion module of
tests/ref/make_fusion_fixture.py (padded texts with key masks, float32),
forward + backward at a batch of pairs. Prints one JSON line.
    python3 tests/bench/fusion_bench.py [BATCH [REPS [THREADS [F [LAYERS]]]]]"""
import importlib.util
import json
import sys
import time

import torch

spec = importlib.util.spec_from_file_location(
    "fusion_ref", __file__.rsplit("/tests/", 1)[0] + "/tests/ref/make_fusion_fixture.py")
ref = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ref)

a = [int(x) for x in sys.argv[1:]]
B, reps = (a + [16])[0], (a[1:] + [3])[0]
if len(a) > 2:
    torch.set_num_threads(a[2])
F, L = (a[3:] + [768])[0], (a[4:] + [2])[0]
Ti, D = 197, 768
tlen = [16 + (b * 37) % 49 for b in range(B)]
model = ref.Fusion(D, D, F, L, max(F // 64, 1), 4 * F, "concat")
xi = torch.randn(B, Ti, D, requires_grad=True)
xt = torch.randn(B, max(tlen), D, requires_grad=True)
tmask = torch.zeros(B, max(tlen), dtype=torch.bool)
for b, n in enumerate(tlen):
    tmask[b, :n] = True
dout = torch.randn(B, 2 * F)
tf = tb = 0.0
for rep in range(reps + 1):  # rep 0 warms up
    t0 = time.perf_counter()
    out = model(xi, xt, tmask)
    t1 = time.perf_counter()
    out.backward(dout)
    t2 = time.perf_counter()
    if rep:
        tf += t1 - t0
        tb += t2 - t1
print(json.dumps({"impl": "torch", "batch": B, "threads": torch.get_num_threads(), "F": F, "layers": L,
                  "fwd_s": round(tf / reps, 4), "bwd_s": round(tb / reps, 4),
                  "step_s": round((tf + tb) / reps, 4)}))
