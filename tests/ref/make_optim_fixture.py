#!/usr/bin/env python3
"""Reference values for the losses and AdamW, from PyTorch.

    python3 tests/ref/make_optim_fixture.py tests/fixtures/optim.bmr

Writes a record stream (man 5 bm-records): one record per case with the inputs
and PyTorch's outputs. tests/unit/test_optim.c replays them in C."""
import math
import sys

import numpy as np
import torch

sys.path.insert(0, __file__.rsplit("/tests/", 1)[0] + "/examples")
import read_records as rr  # noqa: E402

torch.manual_seed(1234)
rng = np.random.default_rng(1234)
recs = []

# softmax cross-entropy, one-hot and soft targets
for B, C in [(5, 7), (1, 3), (16, 2)]:
    x = torch.tensor(rng.standard_normal((B, C)) * 4, dtype=torch.float32, requires_grad=True)
    y = np.zeros((B, C), np.float32)
    y[np.arange(B), rng.integers(0, C, B)] = 1
    loss = torch.nn.functional.cross_entropy(x, torch.tensor(y))
    loss.backward()
    recs.append({"case": "softmax_xent", "logits": x.detach().numpy(), "target": y,
                 "loss": np.array(loss.item(), np.float32), "dlogits": x.grad.numpy()})

# BCE with logits and positive weights, including large |x|
for B, C in [(6, 14), (3, 7)]:
    xs = rng.standard_normal((B, C)) * 5
    xs[0, 0], xs[-1, -1] = 40.0, -40.0
    x = torch.tensor(xs, dtype=torch.float32, requires_grad=True)
    y = (rng.random((B, C)) < 0.3).astype(np.float32)
    pw = (rng.random(C) * 10 + 0.1).astype(np.float32)
    loss = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(pw))(x, torch.tensor(y))
    loss.backward()
    recs.append({"case": "bce_logits", "logits": x.detach().numpy(), "target": y,
                 "pos_weight": pw, "loss": np.array(loss.item(), np.float32),
                 "dlogits": x.grad.numpy()})

# AdamW: two groups (encoder 1e-5 wd 0.1, head 1e-3 wd 0), cosine warm-up,
# clipping at 1.0, 10 steps with given gradients.
steps, warmup = 10, 3
shapes = [(4, 6), (6,), (3, 4)]
groups = [0, 1, 1]
lrs, wds = [1e-5, 1e-3], [0.1, 0.0]
params = [torch.tensor(rng.standard_normal(s), dtype=torch.float32, requires_grad=True)
          for s in shapes]
init = [p.detach().numpy().copy() for p in params]
opt = torch.optim.AdamW(
    [{"params": [p for p, g in zip(params, groups) if g == k], "lr": lrs[k],
      "weight_decay": wds[k]} for k in range(2)],
    betas=(0.9, 0.98), eps=1e-6, foreach=False)
grads = rng.standard_normal((steps, sum(int(np.prod(s)) for s in shapes))).astype(np.float32)
norms, factors = [], []
for t in range(steps):
    f = (t + 1) / warmup if t < warmup else 0.5 * (1 + math.cos(math.pi * (t - warmup) / (steps - warmup)))
    factors.append(f)
    for k, pg in enumerate(opt.param_groups):
        pg["lr"] = lrs[k] * f
    off = 0
    for p in params:
        n = p.numel()
        p.grad = torch.tensor(grads[t, off:off + n].reshape(p.shape))
        off += n
    norms.append(torch.nn.utils.clip_grad_norm_(params, 1.0).item())
    opt.step()
rec = {"case": "adamw", "grads": grads, "norms": np.array(norms, np.float32),
       "factors": np.array(factors, np.float32)}
for i, (a, p) in enumerate(zip(init, params)):
    rec[f"init{i}"] = a
    rec[f"final{i}"] = p.detach().numpy()
recs.append(rec)

with open(sys.argv[1], "wb") as f:
    rr.write(f, {"version": 1, "task": "reference", "producer": "tests/ref/make_optim_fixture.py",
                 "torch": torch.__version__}, recs)
print(f"wrote {len(recs)} cases to {sys.argv[1]}")
