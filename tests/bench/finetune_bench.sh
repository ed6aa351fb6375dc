#!/bin/sh
# finetune_bench.sh - end-to-end fine-tuning speed of the full-size image
# tower on CPU (bm-train --mode finetune, batch 16) next to PyTorch eager
# (timm ViT-B/16 + linear projection + L2 normalize + a linear head,
# cross-entropy, AdamW with two groups) on the same machine and threads; peak
# memory of both. Full-size BiomedCLIP with random weights, built once into
# build/full-model as embed_bench.sh does. Training samples/s are taken from
# bm-train's --log (steps after the first), and from PyTorch's steps after a
# warm-up step.
# Environment: THREADS (default: all cores), NIMG (default 64), TORCH_PY,
# BM_BIN, BM_BUILD.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
BM_BIN=${BM_BIN:-$here/../bin}
BM_BUILD=${BM_BUILD:-$here/../build}
PY=${PY:-/usr/bin/python3}
TORCH_PY=${TORCH_PY:-python3}
THREADS=${THREADS:-$(nproc)}
NIMG=${NIMG:-64}
model=$BM_BUILD/full-model
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [ ! -f "$model/open_clip_pytorch_model.bin" ]; then
  "$TORCH_PY" "$here/ref/make_tiny_model.py" full "$model" "$BM_BUILD/full-embed" >&2
fi
"$PY" - "$work/train.bmr" "$NIMG" <<'PYEOF'
import sys, msgpack, numpy as np
path, n = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(1)
with open(path, "wb") as f:
    f.write(msgpack.packb({"header": {"task": "multiclass", "classes": ["a", "b", "c", "d", "e", "f", "g"]}}))
    for i in range(n):
        a = rng.integers(0, 256, (3, 224, 224), dtype=np.uint8)
        t = np.zeros(7, np.float32); t[i % 7] = 1
        f.write(msgpack.packb({"id": str(i), "image": {"dtype": "u8", "shape": [3, 224, 224], "data": a.tobytes()},
                               "target": {"dtype": "f32", "shape": [7], "data": t.tobytes()}}))
PYEOF
/usr/bin/time -f "%M" -o "$work/rss" "$BM_BIN/bm-train" -q --mode finetune -m "$model" --epochs 1 --batch 16 \
  -j "$THREADS" --log "$work/log" -o "$work/ft.safetensors" "$work/train.bmr"
c=$("$PY" -c "
import json
s = [json.loads(l) for l in open('$work/log') if 'samples_per_s' in l][1:]
print('%.2f' % (sum(16 for _ in s) / sum(16 / x['samples_per_s'] for x in s)))")
c_mb=$(awk '{printf "%.0f", $1 / 1024}' "$work/rss")
t_out=$("$TORCH_PY" - "$THREADS" "$NIMG" <<'PYEOF'
import resource, sys, time
import torch, timm
threads, n = int(sys.argv[1]), int(sys.argv[2])
torch.set_num_threads(threads)
vit = timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=0)
proj = torch.nn.Linear(768, 512, bias=False)
head = torch.nn.Linear(512, 7)
enc = list(vit.parameters()) + list(proj.parameters())
opt = torch.optim.AdamW([{"params": enc, "lr": 1e-5}, {"params": head.parameters(), "lr": 1e-3}])
x, y = torch.randn(16, 3, 224, 224), torch.randint(0, 7, (16,))
def step():
    opt.zero_grad()
    loss = torch.nn.functional.cross_entropy(head(torch.nn.functional.normalize(proj(vit(x)), dim=-1)), y)
    loss.backward()
    opt.step()
step()
steps = max(1, n // 16 - 1)
t = time.perf_counter()
for _ in range(steps):
    step()
print(f"{steps * 16 / (time.perf_counter() - t):.2f} {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} {torch.__version__}")
PYEOF
)
set -- $t_out
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $THREADS threads ($(nproc) cores)"
echo "fine-tuning the image tower + head, batch 16, 224x224: bm-train $c samples/s (peak RSS $c_mb MB)," \
  "PyTorch $3 eager $1 samples/s (peak RSS $2 MB): ratio $(awk -v a="$c" -v b="$1" 'BEGIN{printf "%.2f", a/b}')"
