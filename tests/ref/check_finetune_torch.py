#!/usr/bin/env python3
"""A bm-train --mode finetune checkpoint taken back to PyTorch.

    python3 tests/ref/check_finetune_torch.py CKPT.safetensors IMAGES.bmr

Loads CKPT with the safetensors package into open_clip's tiny model (the
architecture of tests/fixtures/tiny-model, built as make_tiny_model.py does)
by its open_clip key names, and the head into torch.nn.Linear; then runs the
u8 "image" records of IMAGES.bmr through PyTorch and through
`bm-embed-img -m CKPT | bm-fuse -m CKPT` (on PATH) and compares the
embeddings and the probabilities. Needs torch, timm, open_clip, safetensors
(the pyenv python, not CI's). Exit status 0 when they agree within 1e-4."""
import json
import os
import subprocess
import sys

import numpy as np
import torch
from safetensors.torch import load_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, __file__.rsplit("/tests/", 1)[0] + "/examples")
import make_finetune_fixture as mff  # noqa: E402
import read_records as rr  # noqa: E402


def main():
    ckpt, images = sys.argv[1], sys.argv[2]
    sd = load_file(ckpt)
    model = mff.load_model()
    visual = {k: v for k, v in sd.items() if k.startswith("visual.")}
    missing, unexpected = model.load_state_dict(visual, strict=False)
    assert not [k for k in missing if k.startswith("visual.")] and not unexpected, (missing, unexpected)
    head = torch.nn.Linear(sd["head.weight"].shape[1], sd["head.weight"].shape[0])
    head.load_state_dict({"weight": sd["head.weight"], "bias": sd["head.bias"]})
    recs = [r for _, r in rr.read(open(images, "rb")) if "image" in r]
    x = mff.normalize(np.stack([r["image"] for r in recs]))
    with torch.no_grad():
        emb = torch.nn.functional.normalize(model.visual(x), dim=-1)
        prob = torch.softmax(head(emb), dim=-1).numpy()
    out = subprocess.run(f"bm-embed-img -q -m '{ckpt}' < '{images}' | bm-fuse -q -m '{ckpt}'", shell=True,
                         check=True, capture_output=True).stdout
    import io
    got = [r for _, r in rr.read(io.BytesIO(out)) if "img_emb" in r]
    e = np.abs(np.stack([r["img_emb"] for r in got]) - emb.numpy()).max()
    p = np.abs(np.stack([r["prob"] for r in got]) - prob).max()
    print(json.dumps({"records": len(got), "max_emb_diff": float(e), "max_prob_diff": float(p)}))
    sys.exit(0 if len(got) == len(recs) and e < 1e-4 and p < 1e-4 else 1)


if __name__ == "__main__":
    main()
