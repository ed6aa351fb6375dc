#!/usr/bin/env python3
"""PyTorch eager peer of bm-train --mode fusion (tests/bench/fusion_train_bench.sh):
timm ViT (all tokens after the final norm) + HF BertModel (last hidden state)
+ the reference fusion module of tests/ref/make_fusion_fixture.py (concat) +
a linear head, cross-entropy, AdamW with bm-train's four groups; float32
eager, padded texts with a key mask. Steps after a warm-up step are timed.
Prints: samples/s, peak RSS MB, torch version.
    python3 fusion_train_bench.py THREADS NIMG BATCH TOKENS IMG VW VD VH TW TD TH VOCAB FW FL FH"""
import importlib.util
import resource
import sys
import time

import timm
import torch
from transformers import BertConfig, BertModel

spec = importlib.util.spec_from_file_location(
    "fusion_ref", __file__.rsplit("/tests/", 1)[0] + "/tests/ref/make_fusion_fixture.py")
ref = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ref)

(threads, n, B, L, S, vw, vd, vh, tw, td, th, vocab, F, FL, FH) = (int(x) for x in sys.argv[1:16])
torch.set_num_threads(threads)
torch.manual_seed(0)
vit = timm.models.vision_transformer.VisionTransformer(
    img_size=S, patch_size=16, embed_dim=vw, depth=vd, num_heads=vh, num_classes=0)
bert = BertModel(BertConfig(vocab_size=vocab, hidden_size=tw, num_hidden_layers=td, num_attention_heads=th,
                            intermediate_size=4 * tw, max_position_embeddings=max(512, L + 2),
                            attn_implementation="eager"), add_pooling_layer=False)
fusion = ref.Fusion(vw, tw, F, FL, FH, 4 * F, "concat")
head = torch.nn.Linear(2 * F, 7)


def groups(mods, lr):
    dec = [p for m in mods for nm, p in m.named_parameters() if p.ndim >= 2 and "embed" not in nm]
    nod = [p for m in mods for nm, p in m.named_parameters() if not (p.ndim >= 2 and "embed" not in nm)]
    return [{"params": dec, "lr": lr, "weight_decay": 1e-4}, {"params": nod, "lr": lr, "weight_decay": 0.0}]


opt = torch.optim.AdamW(groups([vit, bert], 1e-5) + groups([fusion, head], 1e-3))
x = torch.randn(B, 3, S, S)
ids = torch.randint(1000 % vocab, vocab, (B, L))
mask = torch.ones(B, L, dtype=torch.long)
y = torch.randint(0, 7, (B,))


def step():
    opt.zero_grad()
    xi = vit.forward_features(x)
    xt = bert(input_ids=ids, attention_mask=mask).last_hidden_state
    loss = torch.nn.functional.cross_entropy(head(fusion(xi, xt, mask.bool())), y)
    loss.backward()
    opt.step()


step()
steps = max(1, n // B - 1)
t = time.perf_counter()
for _ in range(steps):
    step()
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f"{steps * B / (time.perf_counter() - t):.3f} {rss:.0f} {torch.__version__}")
