#!/usr/bin/env python3
"""Reference gradients of one ViT block and one BERT layer, from PyTorch.

    python3 tests/ref/make_backward_fixture.py tests/fixtures/backward.bmr

Writes a record stream (man 5 bm-records) with two records:
  case "vit_block": a timm Block (pre-norm, LayerNorm eps 1e-6, erf GELU,
      fused qkv with bias), input x [B,T,C], upstream gradient dy, and torch's
      output, dx and every parameter gradient ("d" + parameter name);
  case "bert_layer": a transformers BertLayer (post-norm, eps 1e-12, separate
      query/key/value), a batch padded to L with an attention mask, dy zero on
      padding rows (as when only real tokens reach the loss), same outputs.
tests/unit/test_block_grad.c composes the C backward functions into the same
blocks and compares. Sizes are small (width 24, 3 heads) to keep the file
small; the layer code does not depend on them."""
import functools
import sys

import numpy as np
import torch
from timm.models.vision_transformer import Block
from transformers import BertConfig
from transformers.models.bert.modeling_bert import BertLayer

sys.path.insert(0, __file__.rsplit("/tests/", 1)[0] + "/examples")
import read_records as rr  # noqa: E402

torch.manual_seed(5)
C, HEADS, MLP = 24, 3, 96


def randomize(module):
    """Weights large enough that every path matters (norm gains and biases too)."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "norm" in name.lower() and name.endswith("weight"):
                p.copy_(1 + 0.3 * torch.randn_like(p))
            else:
                p.copy_(0.3 * torch.randn_like(p))


def f32(t):
    return t.detach().cpu().numpy().astype(np.float32)


recs = []

# ---- ViT pre-norm block ----
B, T = 2, 9
blk = Block(C, HEADS, mlp_ratio=MLP / C, qkv_bias=True,
            norm_layer=functools.partial(torch.nn.LayerNorm, eps=1e-6)).eval()
randomize(blk)
x = torch.randn(B, T, C, requires_grad=True)
dy = torch.randn(B, T, C)
out = blk(x)
out.backward(dy)
rec = {"case": "vit_block", "x": f32(x), "dy": f32(dy), "out": f32(out), "dx": f32(x.grad)}
for name, p in blk.named_parameters():  # norm1.weight, attn.qkv.weight, ...
    rec[name] = f32(p)
    rec["d" + name] = f32(p.grad)
recs.append(rec)

# ---- BERT post-norm layer with padding ----
lens = [7, 4, 2]
B, L = len(lens), max(lens)
cfg = BertConfig(hidden_size=C, num_attention_heads=HEADS, intermediate_size=MLP,
                 hidden_act="gelu", layer_norm_eps=1e-12, hidden_dropout_prob=0.0,
                 attention_probs_dropout_prob=0.0)
cfg._attn_implementation = "eager"
layer = BertLayer(cfg).eval()
randomize(layer)
mask = np.zeros((B, L), np.uint8)
for b, n in enumerate(lens):
    mask[b, :n] = 1
ext = (1.0 - torch.tensor(mask, dtype=torch.float32))[:, None, None, :] * torch.finfo(torch.float32).min
x = torch.randn(B, L, C, requires_grad=True)
dy = torch.randn(B, L, C) * torch.tensor(mask, dtype=torch.float32)[:, :, None]
out = layer(x, attention_mask=ext)
out = out[0] if isinstance(out, tuple) else out
out.backward(dy)
rec = {"case": "bert_layer", "x": f32(x), "dy": f32(dy), "out": f32(out), "dx": f32(x.grad),
       "mask": mask, "len": np.array(lens, np.int32)}
for name, p in layer.named_parameters():  # attention.self.query.weight, ...
    rec[name] = f32(p)
    rec["d" + name] = f32(p.grad)
recs.append(rec)

with open(sys.argv[1], "wb") as f:
    rr.write(f, {"version": 1, "task": "reference", "producer": "tests/ref/make_backward_fixture.py",
                 "torch": torch.__version__}, recs)
print(f"wrote {len(recs)} cases to {sys.argv[1]}")
