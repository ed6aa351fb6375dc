#!/bin/sh
# contrastive_train_bench.sh - a CLIP training step on CPU (bm-train --mode
# contrastive: ViT-B/16 at 224 + BERT-base, batch 32, captions of about 32
# tokens), with and without --grad-checkpoint, next to PyTorch eager
# (contrastive_train_bench.py: timm ViT-B/16 + HF BertModel + open_clip-style
# projections + CLIP's loss, AdamW) on the same threads; samples/s (steps
# after the first, from bm-train's --log) and peak RSS of each.
# Full size (the default) needs about 6 GB a run (ViT-B keeps ~140 MB of
# activations an image) and a quiet machine: it is the
# lead's to run. SIZE=small tries the plumbing on the tiny test model.
# Environment: SIZE (full|small), THREADS (default: all cores), BATCH (32),
# STEPS (3 timed steps), TORCH_PY, BM_BIN, BM_BUILD.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
BM_BIN=${BM_BIN:-$here/../bin}
BM_BUILD=${BM_BUILD:-$here/../build}
PY=${PY:-/usr/bin/python3}
TORCH_PY=${TORCH_PY:-python3}
THREADS=${THREADS:-$(nproc)}
SIZE=${SIZE:-full}
BATCH=${BATCH:-32}
STEPS=${STEPS:-3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [ "$SIZE" = full ]; then
  model=$BM_BUILD/full-model S=224
  if [ ! -f "$model/open_clip_pytorch_model.bin" ]; then
    "$TORCH_PY" "$here/ref/make_tiny_model.py" full "$model" "$BM_BUILD/full-embed" >&2
  fi
else
  model=$here/fixtures/tiny-model S=48
fi
# (STEPS + 1) batches of pairs: random images, captions of 30 words
"$PY" - "$work/pairs.bmr" $(((STEPS + 1) * BATCH)) "$S" <<'PYEOF'
import sys, msgpack, numpy as np
path, n, S = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(1)
words = "the a chest film shows left right lung opacity small large mass nodule effusion normal heart size with " \
        "without signs of lesion skin red brown border irregular".split()
with open(path, "wb") as f:
    f.write(msgpack.packb({"header": {"task": "pairs"}}))
    for i in range(n):
        a = rng.integers(0, 256, (3, S, S), dtype=np.uint8)
        f.write(msgpack.packb({"id": str(i), "image": {"dtype": "u8", "shape": [3, S, S], "data": a.tobytes()},
                               "text": " ".join(rng.choice(words, 30))}))
PYEOF
run_c() { # OPTS...: samples/s and peak RSS MB of bm-train
  /usr/bin/time -f "%M" -o "$work/rss" "$BM_BIN/bm-train" -q --mode contrastive -m "$model" --epochs 1 \
    --batch "$BATCH" -j "$THREADS" --log "$work/log" -o "$work/c.safetensors" "$@" "$work/pairs.bmr"
  "$PY" -c "
import json
s = [json.loads(l) for l in open('$work/log') if 'samples_per_s' in l][1:]
print('%.2f' % (sum($BATCH for _ in s) / sum($BATCH / x['samples_per_s'] for x in s)), end=' ')"
  awk '{printf "%.0f\n", $1 / 1024}' "$work/rss"
}
c0=$(run_c)
c1=$(run_c --grad-checkpoint)
ntok=32 # the torch peer's caption length, ids included
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $THREADS threads ($(nproc) cores)"
set -- $c0 $c1
echo "contrastive step ($SIZE, batch $BATCH, image ${S}px, captions ~32 tokens): bm-train $1 samples/s (peak RSS $2 MB)," \
  "--grad-checkpoint $3 samples/s (peak RSS $4 MB)"
if "$TORCH_PY" -c 'import torch, timm, transformers' 2>/dev/null; then
  t0=$("$TORCH_PY" "$here/bench/contrastive_train_bench.py" "$SIZE" "$BATCH" "$STEPS" "$THREADS" 0 "$ntok")
  t1=$("$TORCH_PY" "$here/bench/contrastive_train_bench.py" "$SIZE" "$BATCH" "$STEPS" "$THREADS" 1 "$ntok")
  set -- $c0 $c1 $t0 $t1
  echo "PyTorch $7 eager: $5 samples/s (peak RSS $6 MB), checkpointed $8 samples/s (peak RSS $9 MB);" \
    "C/torch samples/s ratio $(awk -v a="$1" -v b="$5" 'BEGIN{printf "%.2f", a/b}')" \
    "(checkpointed $(awk -v a="$3" -v b="$8" 'BEGIN{printf "%.2f", a/b}'))"
else
  echo "torch, timm or transformers missing: C timings only"
fi
