#!/bin/sh
# make parity-full: BiomedCLIP at its full size (ViT-B/16 at 224, 12-layer
# BERT-base with a 30522-token vocab, context 256, 512-d) with random weights,
# built by open_clip (tests/ref/make_tiny_model.py full), run by the C towers
# and by PyTorch on the same images and texts; prints the largest absolute
# differences. Needs the torch python (TORCH_PY, default python3 on PATH);
# the model (~800 MB) is made once into build/full-model.
set -eu
BM_BIN=${BM_BIN:-bin}
PY=${PY:-/usr/bin/python3}
TORCH_PY=${TORCH_PY:-python3}
here=$(cd "$(dirname "$0")/.." && pwd)
model=${BM_BUILD:-build}/full-model
data=${BM_BUILD:-build}/full-embed
if [ ! -f "$data/classes-ref.bmr" ] || [ "$here/ref/make_tiny_model.py" -nt "$data/classes-ref.bmr" ]; then
  echo "parity-full: generating the full-size model and references with open_clip..."
  "$TORCH_PY" "$here/ref/make_tiny_model.py" full "$model" "$data"
fi
status=0
t0=$(date +%s)
"$BM_BIN/bm-embed-img" -q -m "$model" --tokens < "$data/images.bmr" > "$data/img.bmr"
t1=$(date +%s)
"$BM_BIN/bm-embed-txt" -q -m "$model" --tokens < "$data/texts.bmr" > "$data/txt.bmr" 2>/dev/null
"$BM_BIN/bm-embed-txt" -m "$model" --classes "$data/classes.txt" --templates "$data/templates.txt" > "$data/cls.bmr"
echo "image tower ($(( t1 - t0 ))s with loading):"
"$PY" "$here/bmr_compare.py" "$data/img.bmr" "$data/images-ref.bmr" --tensors img_emb,img_tokens || status=1
echo "text tower:"
"$PY" "$here/bmr_compare.py" "$data/txt.bmr" "$data/texts-ref.bmr" --tensors txt_emb,txt_tokens || status=1
echo "class embeddings (templates averaged):"
"$PY" "$here/bmr_compare.py" "$data/cls.bmr" "$data/classes-ref.bmr" --key class --tensors txt_emb --only templates=file || status=1
[ $status = 0 ] && echo "parity-full: ok (within 1e-4)" || echo "parity-full: FAILED"
exit $status
