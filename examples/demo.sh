#!/bin/sh
# examples/demo.sh - the pipeline end to end on generated data (make demo).
#
# Makes a small data set in the HAM10000 release layout (coloured lesions a
# model can tell apart), decodes it into records, embeds the images, and
# classifies them zero-shot against class prompts, then scores the result.
# MODEL=path/to/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224 SIZE=224 runs
# it with the real model; the default is the tiny random test model, whose
# zero-shot numbers are chance: it shows the plumbing, not the science.
set -eu
: "${BM_BIN:?run it as make demo}"
PATH="$BM_BIN:$PATH"
here=$(cd "$(dirname "$0")" && pwd)
PY=${PY:-/usr/bin/python3}
top=$(cd "$here/.." && pwd)
MODEL=${MODEL:-$top/tests/fixtures/tiny-model}
SIZE=${SIZE:-48}
work=${DEMO_DIR:-$top/build/demo}
rm -rf "$work"
mkdir -p "$work"
step() { printf '\n== %s\n' "$*"; }

step "1. a small data set in the HAM10000 layout (2 zips + metadata CSV)"
$PY "$here/make_demo_data.py" "$work/HAM10000" --per-class 40
ls -l "$work/HAM10000"

step "2. bm-decode: archives as released -> records (split by lesion, stratified)"
for split in train val test; do
  bm-decode --format ham10000 --size "$SIZE" --split $split --test-fraction 0.2 --text -q --max-warnings 3 "$work/HAM10000" > "$work/$split.bmr"
done
bm-inspect --summary "$work/train.bmr" "$work/val.bmr" "$work/test.bmr" | grep records
bm-inspect --head 1 "$work/test.bmr" | tail -1 | cut -c1-400

step "3. bm-embed-img: image tower -> img_emb"
for split in train val test; do
  bm-embed-img -q -m "$MODEL" < "$work/$split.bmr" > "$work/$split-emb.bmr"
done
bm-inspect --head 1 "$work/test-emb.bmr" | tail -1 | $PY -c 'import json,sys; r=json.loads(sys.stdin.read()); print("img_emb:", r["img_emb"])'

step "4. zero-shot: class prompts -> bm-embed-txt --classes -> bm-fuse -> bm-score"
bm-embed-txt -q -m "$MODEL" --classes "$here/ham10000-classes.txt" > "$work/classes.bmr"
bm-fuse -q --classes "$work/classes.bmr" < "$work/test-emb.bmr" > "$work/zeroshot.bmr"
bm-score "$work/zeroshot.bmr"

if [ -x "$BM_BIN/bm-train" ]; then
  step "5. linear probe: bm-train --mode linear on train, chosen on val, scored on test"
  bm-train --mode linear --epochs 100 --batch 16 --lr 0.2 --val "$work/val-emb.bmr" -q \
    -o "$work/head.safetensors" "$work/train-emb.bmr"
  bm-fuse -q -m "$work/head.safetensors" < "$work/test-emb.bmr" | bm-score
fi
printf '\nAll outputs are in %s\n' "$work"
