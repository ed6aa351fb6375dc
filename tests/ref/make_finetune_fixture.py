#!/usr/bin/env python3
"""Reference of one end-to-end fine-tuning step of the tiny model, from PyTorch.

    python3 tests/ref/make_finetune_fixture.py tests/fixtures/finetune.bmr

The model is tests/fixtures/tiny-model (open_clip's CustomTextCLIP as
tests/ref/make_tiny_model.py builds it; its open_clip_pytorch_model.bin is
loaded into the same architecture). A linear classification head on the
L2-normalized image embedding (head.weight [C,E], head.bias [C], the layout of
bm-train --mode linear) is drawn at random. On a fixed batch of u8 images:

case "mc": softmax cross-entropy; the loss, the gradient of every parameter of
    the image tower ("d" + open_clip name) and of the head, then 10 AdamW steps
    on the same batch (groups: tower lr 1e-5, head lr 1e-3; weight decay 0.1
    on matrices only, not on norms, biases, cls_token, pos_embed) and their 10
    losses (each before its step).
case "ml": BCE-with-logits with pos_weight; the loss and the gradients of the
    head, the projection, the final norm and block 0's qkv (the tower's
    backward is the same code as in "mc"; this case checks the loss's).

To stay under 500 KB, the gradient of visual.trunk.patch_embed.proj.weight
[W,3,P,P] is stored for its first 16 output channels only (key
"dvisual.trunk.patch_embed.proj.weight[:16]"); every other gradient whole.
tests/unit/test_vit_train.c compares."""
import json
import os
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, __file__.rsplit("/tests/", 1)[0] + "/examples")
import make_tiny_model as mtm  # noqa: E402
import read_records as rr  # noqa: E402

ROOT = __file__.rsplit("/tests/", 1)[0]
MODEL = os.path.join(ROOT, "tests/fixtures/tiny-model")
B, C = 4, 3
LR_ENC, LR_HEAD, WD = 1e-5, 1e-3, 0.1
PATCH_ROWS = 16


def f32(t):
    return np.ascontiguousarray(t.detach().cpu().numpy().astype(np.float32))


def load_model():
    with open(os.path.join(MODEL, "vocab.txt")) as f:
        nvocab = len(f.read().splitlines())
    with tempfile.TemporaryDirectory() as hf:
        model = mtm.build(mtm.SIZES["tiny"], hf, nvocab)
    sd = torch.load(os.path.join(MODEL, "open_clip_pytorch_model.bin"), map_location="cpu")
    sd.pop("text.transformer.embeddings.position_ids", None)
    missing, unexpected = model.load_state_dict(sd, strict=False)
    assert not [k for k in missing if k.startswith("visual")], missing
    return model.eval()


def normalize(u8):
    x = torch.from_numpy(u8).float().div(255)
    return (x - torch.tensor(mtm.MEAN).view(1, 3, 1, 1)) / torch.tensor(mtm.STD).view(1, 3, 1, 1)


def run(model, head, x, y, multilabel, pw):
    emb = model.visual(x)
    emb = torch.nn.functional.normalize(emb, dim=-1)
    logits = head(emb)
    if multilabel:
        return torch.nn.functional.binary_cross_entropy_with_logits(logits, y, pos_weight=pw)
    return torch.nn.functional.cross_entropy(logits, y.argmax(1))


def grads(model, head):
    out = {}
    for n, p in model.visual.named_parameters():
        g = f32(p.grad)
        if n == "trunk.patch_embed.proj.weight":
            out["dvisual." + n + "[:16]"] = g[:PATCH_ROWS]
        else:
            out["dvisual." + n] = g
    out["dhead.weight"] = f32(head.weight.grad)
    out["dhead.bias"] = f32(head.bias.grad)
    return out


def main():
    torch.manual_seed(7)
    rng = np.random.default_rng(7)
    model = load_model()
    E, S = mtm.SIZES["tiny"]["embed"], mtm.SIZES["tiny"]["image"]
    imgs = rng.integers(0, 256, size=(B, 3, S, S), dtype=np.uint8)
    x = normalize(imgs)
    head = torch.nn.Linear(E, C)
    with torch.no_grad():
        head.weight.copy_(torch.randn(C, E) * 2.0)
        head.bias.copy_(torch.randn(C) * 0.5)
    w0, b0 = f32(head.weight), f32(head.bias)
    recs = []

    # ---- multilabel: one step's loss and gradients ----
    yml = torch.tensor([[1, 0, 1], [0, 0, 1], [1, 1, 0], [0, 0, 0]], dtype=torch.float32)
    pw = torch.tensor([1.0, 3.0, 0.5])
    model.zero_grad(), head.zero_grad()
    loss = run(model, head, x, yml, True, pw)
    loss.backward()
    rec = {"case": "ml", "images": imgs, "target": f32(yml), "pos_weight": f32(pw),
           "head.weight": w0, "head.bias": b0, "loss": float(loss.item())}
    keep = ("dhead.", "dvisual.head.", "dvisual.trunk.norm.", "dvisual.trunk.blocks.0.attn.qkv.")
    rec.update({k: v for k, v in grads(model, head).items() if k.startswith(keep)})
    recs.append(rec)

    # ---- multiclass: one step, then 10 AdamW steps ----
    ymc = torch.eye(C)[torch.tensor([0, 2, 1, 2])]
    model.zero_grad(), head.zero_grad()
    loss = run(model, head, x, ymc, False, None)
    loss.backward()
    rec = {"case": "mc", "images": imgs, "target": f32(ymc), "head.weight": w0, "head.bias": b0,
           "loss": float(loss.item())}
    rec.update(grads(model, head))
    decay, no_decay = [], []
    for n, p in model.visual.named_parameters():
        (decay if p.ndim >= 2 and "pos_embed" not in n and "cls_token" not in n else no_decay).append(p)
    opt = torch.optim.AdamW([
        {"params": decay, "lr": LR_ENC, "weight_decay": WD},
        {"params": no_decay, "lr": LR_ENC, "weight_decay": 0.0},
        {"params": [head.weight], "lr": LR_HEAD, "weight_decay": WD},
        {"params": [head.bias], "lr": LR_HEAD, "weight_decay": 0.0}], betas=(0.9, 0.999), eps=1e-8)
    losses = []
    for _ in range(10):
        opt.zero_grad()
        loss = run(model, head, x, ymc, False, None)
        loss.backward()
        losses.append(loss.item())
        opt.step()
    rec["losses"] = [float(v) for v in losses]
    rec["config"] = json.dumps({"lr_encoder": LR_ENC, "lr_head": LR_HEAD, "weight_decay": WD})
    recs.append(rec)
    with open(sys.argv[1], "wb") as f:
        rr.write(f, {"version": 1, "task": "reference", "producer": "tests/ref/make_finetune_fixture.py",
                     "torch": torch.__version__}, recs)
    print(f"wrote {sys.argv[1]}: losses {losses[0]:.6f} .. {losses[-1]:.6f}")


if __name__ == "__main__":
    main()
