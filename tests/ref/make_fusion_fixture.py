#!/usr/bin/env python3
"""Reference outputs and gradients of the co-attention fusion module
(common/fusion.h), from PyTorch autograd in float64.

    python3 tests/ref/make_fusion_fixture.py tests/fixtures/fusion.bmr

The torch module below is the module fusion.h describes, written
independently of the C code: padded batches with key masks (as one would in
PyTorch) where the C code packs the texts. Its state_dict keys are exactly the
C checkpoint names ("fusion.img_in.weight", "fusion.layers.0.img.cross.kv.weight",
...), so a trained torch state dict loads into bm_fusion_load 1:1.

Writes one record per combine mode ("case": "concat" / "mean"), each with the
config (Di, Dt, F, layers, heads, mlp, combine), the inputs xi [B*Ti, Di] and
xt [Nt, Dt] packed (tstart, tlen), R = dL/d(out) for L = sum(out * R), torch's
out, dxi, dxt, every parameter under its name and its gradient under
"d" + name. Weights are rounded to float32 first, then everything runs in
float64, so the C float32 result should agree to float32 rounding."""
import math
import sys

import numpy as np
import torch
from torch import nn

sys.path.insert(0, __file__.rsplit("/tests/", 1)[0] + "/examples")
import read_records as rr  # noqa: E402

EPS = 1e-5


def attend(q, k, v, heads, key_mask=None):
    """q [B,Tq,F], k, v [B,Tk,F]; key_mask [B,Tk] bool (True = real key)."""
    B, Tq, F = q.shape
    Tk, hd = k.shape[1], F // heads
    q = q.view(B, Tq, heads, hd).transpose(1, 2)
    k = k.view(B, Tk, heads, hd).transpose(1, 2)
    v = v.view(B, Tk, heads, hd).transpose(1, 2)
    s = q @ k.transpose(-1, -2) / math.sqrt(hd)
    if key_mask is not None:
        s = s.masked_fill(~key_mask[:, None, None, :], float("-inf"))
    return (s.softmax(-1) @ v).transpose(1, 2).reshape(B, Tq, F)


class SelfAttn(nn.Module):
    def __init__(self, F, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(F, 3 * F)
        self.proj = nn.Linear(F, F)

    def forward(self, x, mask):
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        return self.proj(attend(q, k, v, self.heads, mask))


class CrossAttn(nn.Module):
    def __init__(self, F, heads):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(F, F)
        self.kv = nn.Linear(F, 2 * F)
        self.proj = nn.Linear(F, F)

    def forward(self, x, other, other_mask):
        k, v = self.kv(other).chunk(2, dim=-1)
        return self.proj(attend(self.q(x), k, v, self.heads, other_mask))


class Mlp(nn.Module):
    def __init__(self, F, M):
        super().__init__()
        self.fc1 = nn.Linear(F, M)
        self.fc2 = nn.Linear(M, F)

    def forward(self, x):
        return self.fc2(nn.functional.gelu(self.fc1(x)))  # erf form


class Stream(nn.Module):
    def __init__(self, F, heads, M):
        super().__init__()
        self.ln1 = nn.LayerNorm(F, eps=EPS)
        self.self = SelfAttn(F, heads)
        self.ln2 = nn.LayerNorm(F, eps=EPS)
        self.cross = CrossAttn(F, heads)
        self.ln3 = nn.LayerNorm(F, eps=EPS)
        self.mlp = Mlp(F, M)


class Layer(nn.Module):
    def __init__(self, F, heads, M):
        super().__init__()
        self.img = Stream(F, heads, M)
        self.txt = Stream(F, heads, M)

    def forward(self, hi, ht, tmask):
        yi = hi + self.img.self(self.img.ln1(hi), None)
        yt = ht + self.txt.self(self.txt.ln1(ht), tmask)
        ni, nt = self.img.ln2(yi), self.txt.ln2(yt)
        zi = yi + self.img.cross(ni, nt, tmask)
        zt = yt + self.txt.cross(nt, ni, None)
        return zi + self.img.mlp(self.img.ln3(zi)), zt + self.txt.mlp(self.txt.ln3(zt))


class Fusion(nn.Module):
    def __init__(self, Di, Dt, F, layers, heads, M, combine):
        super().__init__()
        self.combine = combine
        self.img_in = nn.Linear(Di, F)
        self.txt_in = nn.Linear(Dt, F)
        self.layers = nn.ModuleList(Layer(F, heads, M) for _ in range(layers))
        self.img_norm = nn.LayerNorm(F, eps=EPS)
        self.txt_norm = nn.LayerNorm(F, eps=EPS)

    def forward(self, xi, xt, tmask):
        hi, ht = self.img_in(xi), self.txt_in(xt)
        for layer in self.layers:
            hi, ht = layer(hi, ht, tmask)
        pi, pt = self.img_norm(hi[:, 0]), self.txt_norm(ht[:, 0])
        return torch.cat([pi, pt], -1) if self.combine == "concat" else (pi + pt) / 2


class Model(nn.Module):  # the "fusion." prefix of the checkpoint names
    def __init__(self, *a):
        super().__init__()
        self.fusion = Fusion(*a)


def randomize(model, gen):
    """Values large enough that every path matters (norm gains and biases too),
    rounded to float32 (what the C side holds)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            r = torch.randn(p.shape, generator=gen, dtype=torch.float64)
            if ("ln" in name or "norm" in name) and name.endswith("weight"):
                v = 1 + 0.3 * r
            elif name.endswith("bias"):
                v = 0.3 * r
            else:
                v = r / math.sqrt(p.shape[1])  # unit-scale outputs
            p.copy_(v.float().double())


def f32(t):
    return t.detach().cpu().numpy().astype(np.float32)


def case(combine, seed):
    Di, Dt, F, L, heads, M = 24, 20, 16, 2, 2, 40
    B, Ti, tlen = 4, 5, [1, 3, 7, 2]
    gen = torch.Generator().manual_seed(seed)
    model = Model(Di, Dt, F, L, heads, M, combine).double()
    randomize(model, gen)
    Tmax = max(tlen)
    xi = torch.randn(B, Ti, Di, generator=gen, dtype=torch.float64).float().double().requires_grad_()
    xt = torch.randn(B, Tmax, Dt, generator=gen, dtype=torch.float64).float().double()
    tmask = torch.zeros(B, Tmax, dtype=torch.bool)
    for b, n in enumerate(tlen):
        tmask[b, :n] = True
    xt = (xt * tmask[..., None]).requires_grad_()
    out = model.fusion(xi, xt, tmask)
    R = torch.randn(out.shape, generator=gen, dtype=torch.float64).float().double()
    (out * R).sum().backward()
    tstart = np.cumsum([0] + tlen[:-1]).astype(np.int32)
    pack = lambda t: np.concatenate([f32(t[b, :n]) for b, n in enumerate(tlen)])  # noqa: E731
    rec = {"case": combine, "Di": Di, "Dt": Dt, "F": F, "layers": L, "heads": heads, "mlp": M,
           "combine": 0 if combine == "concat" else 1, "B": B, "Ti": Ti,
           "tstart": tstart, "tlen": np.array(tlen, np.int32),
           "xi": f32(xi).reshape(B * Ti, Di), "xt": pack(xt), "R": f32(R), "out": f32(out),
           "dxi": f32(xi.grad).reshape(B * Ti, Di), "dxt": pack(xt.grad)}
    names = []
    for name, p in model.named_parameters():
        rec[name] = f32(p)
        rec["d" + name] = f32(p.grad)
        names.append(name)
    rec["names"] = names
    return rec


if __name__ == "__main__":  # tests/bench/fusion_bench.py imports the module
    recs = [case("concat", 11), case("mean", 12)]
    with open(sys.argv[1], "wb") as f:
        rr.write(f, {"version": 1, "task": "reference", "producer": "tests/ref/make_fusion_fixture.py",
                     "torch": torch.__version__}, recs)
    print(f"wrote {len(recs)} cases to {sys.argv[1]}")
