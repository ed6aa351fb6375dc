#!/usr/bin/env python3
"""PyTorch peer of bm-train --mode contrastive (contrastive_train_bench.sh):
timm ViT-B/16 + a linear projection, HF BertModel + open_clip's MLP
projection head (CLS token, Linear-GELU-Linear without biases), a learnable
log logit scale, CLIP's symmetric cross-entropy (open_clip's ClipLoss on one
process, written out here), AdamW (0.9, 0.98), eps 1e-6, wd 0.2 on matrices
only. Random weights; times steps after a warm-up step.

    contrastive_train_bench.py full|small BATCH STEPS THREADS CKPT(0|1) TOKENS
prints: samples/s, peak RSS MB, torch version."""
import math
import resource
import sys
import time
import warnings

import timm
import torch
import torch.nn.functional as F
from transformers import BertConfig, BertModel

size, B, steps, threads, ckpt, ntok = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), \
    int(sys.argv[5]), int(sys.argv[6])
torch.set_num_threads(threads)
torch.manual_seed(0)
if size == "full":
    img, vw, vd, vh, tw, td, th, E = 224, 768, 12, 12, 768, 12, 12, 512
else:  # about the tiny test model's sizes
    img, vw, vd, vh, tw, td, th, E = 48, 64, 2, 2, 64, 2, 2, 32
vit = timm.models.vision_transformer.VisionTransformer(img_size=img, patch_size=16, embed_dim=vw, depth=vd,
                                                       num_heads=vh, num_classes=0)
bert = BertModel(BertConfig(vocab_size=30522, hidden_size=tw, num_hidden_layers=td, num_attention_heads=th,
                            intermediate_size=4 * tw, max_position_embeddings=512), add_pooling_layer=False)
if ckpt:
    vit.set_grad_checkpointing(True)
    with warnings.catch_warnings():  # the name changes across transformers versions
        warnings.simplefilter("ignore")
        bert.gradient_checkpointing_enable()
    bert.config.use_cache = False
vproj = torch.nn.Linear(vw, E, bias=False)
hid = (tw + E) // 2
tproj = torch.nn.Sequential(torch.nn.Linear(tw, hid, bias=False), torch.nn.GELU(), torch.nn.Linear(hid, E, bias=False))
logit_scale = torch.nn.Parameter(torch.tensor(math.log(1 / 0.07)))
named = [(n, p) for m in (vit, vproj, bert, tproj) for n, p in m.named_parameters()] + [("logit_scale", logit_scale)]
nodecay = lambda n, p: p.ndim < 2 or "norm" in n.lower() or "bias" in n or "embed" in n or n == "logit_scale"
opt = torch.optim.AdamW([{"params": [p for n, p in named if not nodecay(n, p)], "weight_decay": 0.2},
                         {"params": [p for n, p in named if nodecay(n, p)], "weight_decay": 0.0}],
                        lr=5e-4, betas=(0.9, 0.98), eps=1e-6)
x = torch.randn(B, 3, img, img)
ids = torch.randint(1000, 30000, (B, ntok))
ids[:, 0], ids[:, -1] = 2, 3
labels = torch.arange(B)


def step():
    opt.zero_grad()
    ie = F.normalize(vproj(vit(x)), dim=-1)
    te = F.normalize(tproj(bert(input_ids=ids).last_hidden_state[:, 0]), dim=-1)
    logits = logit_scale.exp() * ie @ te.T
    loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
    loss.backward()
    opt.step()
    with torch.no_grad():
        logit_scale.clamp_(0, math.log(100))


step()
t = time.perf_counter()
for _ in range(steps):
    step()
print(f"{steps * B / (time.perf_counter() - t):.2f} {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} "
      f"{torch.__version__}")
