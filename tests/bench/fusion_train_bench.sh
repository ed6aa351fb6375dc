#!/bin/sh
# fusion_train_bench.sh - a fusion training step (bm-train --mode fusion:
# both towers' tokens, 2 co-attention layers of width 768, concat, head) at
# full size (ViT-B/16 224, BERT-base, texts of ~32 tokens, batch 16): samples/s
# and peak RSS of bm-train with and without --grad-checkpoint, next to PyTorch
# eager (timm ViT + HF BertModel + the reference fusion module + head,
# tests/bench/fusion_train_bench.py) on the same threads. Samples/s of
# bm-train come from its --log (steps after the first).
# Environment: SIZE=full (default; builds build/full-model once, as
# embed_bench.sh) or tiny (the test fixture: only to try the script),
# THREADS (default: all cores), BATCH (16), NIMG (3 batches), TOKENS (32),
# TORCH_PY, BM_BIN, BM_BUILD. Run it on a quiet machine.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
BM_BIN=${BM_BIN:-$here/../bin}
BM_BUILD=${BM_BUILD:-$here/../build}
PY=${PY:-/usr/bin/python3}
TORCH_PY=${TORCH_PY:-python3}
THREADS=${THREADS:-$(nproc)}
SIZE=${SIZE:-full}
BATCH=${BATCH:-16}
NIMG=${NIMG:-$((3 * BATCH))}
TOKENS=${TOKENS:-32}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [ "$SIZE" = tiny ]; then
  model=$here/fixtures/tiny-model
  # image, vit width/depth/heads, bert width/depth/heads, vocab, fusion width/layers/heads
  dims="48 64 2 2 64 2 2 $(wc -l <"$model/vocab.txt") 64 2 2"
else
  model=$BM_BUILD/full-model
  if [ ! -f "$model/open_clip_pytorch_model.bin" ]; then
    "$TORCH_PY" "$here/ref/make_tiny_model.py" full "$model" "$BM_BUILD/full-embed" >&2
  fi
  dims="224 768 12 12 768 12 12 $(wc -l <"$model/vocab.txt") 768 2 12"
fi
set -- $dims
S=$1
"$PY" - "$work/train.bmr" "$NIMG" "$S" "$TOKENS" "$model/vocab.txt" <<'PYEOF'
import sys, msgpack, numpy as np
path, n, S, L, vocab = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
words = [w for w in (l.strip() for l in open(vocab)) if w.isalpha() and len(w) > 2][:500] or ["word"]
rng = np.random.default_rng(1)
with open(path, "wb") as f:
    f.write(msgpack.packb({"header": {"task": "multiclass", "classes": ["a", "b", "c", "d", "e", "f", "g"]}}))
    for i in range(n):
        a = rng.integers(0, 256, (3, S, S), dtype=np.uint8)
        t = np.zeros(7, np.float32); t[i % 7] = 1
        text = " ".join(rng.choice(words, L - 2))  # whole words of the vocab: ~1 token each, + [CLS], [SEP]
        f.write(msgpack.packb({"id": str(i), "image": {"dtype": "u8", "shape": [3, S, S], "data": a.tobytes()},
                               "text": text, "target": {"dtype": "f32", "shape": [7], "data": t.tobytes()}}))
PYEOF
ours() { # OUT [OPTION]: samples/s and peak RSS MB of bm-train --mode fusion
  /usr/bin/time -f "%M" -o "$work/rss" "$BM_BIN/bm-train" -q --mode fusion -m "$model" --text key --epochs 1 \
    --batch "$BATCH" --fusion-layers "${10}" --fusion-width "${9}" --fusion-heads "${11}" -j "$THREADS" \
    --log "$work/log" -o "$work/f.safetensors" ${OPT:-} "$work/train.bmr"
  "$PY" -c "
import json
s = [json.loads(l) for l in open('$work/log') if 'samples_per_s' in l]
s = s[1:] or s
print('%.3f' % (len(s) * $BATCH / sum($BATCH / x['samples_per_s'] for x in s)))"
  awk '{printf "%.0f\n", $1 / 1024}' "$work/rss"
}
set -- $dims
plain=$(OPT= ours "$@" | tr '\n' ' ')
ckpt=$(OPT=--grad-checkpoint ours "$@" | tr '\n' ' ')
t_out=$("$TORCH_PY" "$here/bench/fusion_train_bench.py" "$THREADS" "$NIMG" "$BATCH" "$TOKENS" "$@")
set -- $plain $ckpt $t_out
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $THREADS threads ($(nproc) cores)"
echo "fusion training step ($SIZE; image, vit w/d/h, bert w/d/h, vocab, fusion w/l/h: $dims), batch $BATCH, texts of $TOKENS tokens:"
echo "  bm-train:                   $1 samples/s, peak RSS $2 MB"
echo "  bm-train --grad-checkpoint: $3 samples/s, peak RSS $4 MB"
echo "  PyTorch $7 eager:        $5 samples/s, peak RSS $6 MB"
echo "  ratio bm-train / PyTorch: $(awk -v a="$1" -v b="$5" 'BEGIN{printf "%.2f", a/b}')," \
  "checkpointing saves $(awk -v a="$2" -v b="$4" 'BEGIN{printf "%.0f", a-b}') MB of peak RSS"
