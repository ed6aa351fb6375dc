#!/bin/sh
# examples/demo.sh - the whole story on generated data (make demo), in about a minute.
#
# Makes a small data set in the HAM10000 release layout (coloured lesions a
# model can tell apart, metadata text with a hint but never the diagnosis)
# and image-caption pairs, then: zero-shot classification, a linear probe on
# frozen embeddings, end-to-end fine-tuning, cross-modal fusion with the
# metadata text, the regularized model with learned prompts, and contrastive
# training with retrieval before and after. Prints a short table at the end.
#
# Each step is one function; DEMO_STEPS="zero_shot finetune" runs only those
# (data and embed always run, named or not). A step that fails is marked in the table and
# the others go on; the exit status is 1 when any failed.
# MODEL=path/to/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224 SIZE=224 runs
# it with the real model; the default is the tiny random test model: its
# zero-shot and retrieval numbers before training are chance, and its
# learning rates are far above the paper's (a random tower must move a lot in
# a few epochs). It shows the plumbing, not the science.
set -eu
: "${BM_BIN:?run it as make demo}"
PATH="$BM_BIN:$PATH"
here=$(cd "$(dirname "$0")" && pwd)
PY=${PY:-/usr/bin/python3}
top=$(cd "$here/.." && pwd)
MODEL=${MODEL:-$top/tests/fixtures/tiny-model}
SIZE=${SIZE:-48}
work=${DEMO_DIR:-$top/build/demo}
steps=${DEMO_STEPS:-zero_shot linear_probe finetune fusion regularized contrastive}
rm -rf "$work"
mkdir -p "$work"
summary=$work/summary.tsv
: >"$summary"
say() { printf '\n== %s\n' "$*"; }
# the tiny model learns only with large steps; BiomedCLIP takes the paper's
# (the fusion modes' fresh attention layers take a smaller head rate than a
# linear head: at 3e-2 the tiny model's fusion does not learn)
if [ "$SIZE" = 48 ]; then LR_ENC=3e-3 LR_HEAD=3e-2 LR_FUSE=3e-3 EPOCHS=8 CLIP_EPOCHS=30; else LR_ENC=1e-5 LR_HEAD=1e-3 LR_FUSE=1e-3 EPOCHS=3 CLIP_EPOCHS=10; fi

# record NAME SCORE.json: a table row from bm-score --json output
record() {
  $PY - "$1" "$2" >>"$summary" <<'PY'
import json, sys
r = json.load(open(sys.argv[2]))
if r["task"] == "retrieval":
    print(f"{sys.argv[1]}\tR@1 i2t {r['i2t_r1']:.3f}  t2i {r['t2i_r1']:.3f}  R@5 i2t {r['i2t_r5']:.3f}  t2i {r['t2i_r5']:.3f}  ({r['n']} pairs)")
else:
    print(f"{sys.argv[1]}\taccuracy {r['accuracy']:.3f}  balanced {r['balanced_accuracy']:.3f}  AUC {r['auc_macro']:.3f}  ({r['n']} test images)")
PY
}

data() {
  say "data: a small HAM10000 release (2 zips + metadata CSV) and image-caption pairs"
  $PY "$here/make_demo_data.py" "$work/HAM10000" --per-class 40
  $PY "$here/make_demo_data.py" "$work/pairs" --dataset pairs --per-class 30
  ls -l "$work/HAM10000"
  head -3 "$work/pairs/pairs.csv"
  say "bm-decode: archives as released -> records (split by lesion, stratified; text from metadata)"
  for split in train val test; do
    bm-decode --format ham10000 --size "$SIZE" --split $split --test-fraction 0.2 --text -q --max-warnings 3 \
      "$work/HAM10000" >"$work/$split.bmr"
  done
  bm-inspect --summary "$work/train.bmr" "$work/val.bmr" "$work/test.bmr" | grep records
  bm-inspect --head 1 "$work/test.bmr" | tail -1 | cut -c1-400
}

embed() {
  say "bm-embed-img | bm-embed-txt: frozen towers -> img_emb, txt_emb (of the metadata text)"
  for split in train val test; do
    bm-embed-img -q -m "$MODEL" <"$work/$split.bmr" | bm-embed-txt -q -m "$MODEL" >"$work/$split-emb.bmr"
  done
  bm-inspect --head 1 "$work/test-emb.bmr" | tail -1 |
    $PY -c 'import json,sys; r=json.loads(sys.stdin.read()); print("img_emb:", r["img_emb"]); print("txt_emb:", r["txt_emb"])'
}

zero_shot() {
  say "zero-shot: class prompts -> bm-embed-txt --classes -> bm-fuse -> bm-score"
  bm-embed-txt -q -m "$MODEL" --classes "$here/ham10000-classes.txt" >"$work/classes.bmr"
  bm-fuse -q --classes "$work/classes.bmr" <"$work/test-emb.bmr" >"$work/zeroshot.bmr"
  bm-score "$work/zeroshot.bmr"
  bm-score --json "$work/zeroshot.bmr" >"$work/zero_shot.json"
}

linear_probe() {
  say "linear probe (baseline): bm-train --mode linear on frozen img_emb, chosen on val"
  bm-train --mode linear --epochs 100 --batch 16 --lr 0.2 --val "$work/val-emb.bmr" -q \
    -o "$work/head.safetensors" "$work/train-emb.bmr"
  bm-fuse -q -m "$work/head.safetensors" <"$work/test-emb.bmr" | bm-score --json >"$work/linear_probe.json"
}

finetune() {
  say "finetune: image tower + head end to end (bm-train --mode finetune)"
  bm-train --mode finetune -m "$MODEL" --epochs "$EPOCHS" --batch 16 --lr-encoder "$LR_ENC" --lr-head "$LR_HEAD" \
    --val "$work/val.bmr" -q -o "$work/ft.safetensors" "$work/train.bmr"
  bm-embed-img -q -m "$work/ft.safetensors" <"$work/test.bmr" | bm-fuse -q -m "$work/ft.safetensors" |
    bm-score --json >"$work/finetune.json"
}

# apply_fused CKPT OUT.json: a fusion checkpoint on the test split
apply_fused() {
  bm-embed-img -q -m "$1" --tokens <"$work/test.bmr" | bm-embed-txt -q -m "$1" --tokens |
    bm-fuse -q -m "$1" | bm-score --json >"$2"
}

fusion() {
  say "fusion: towers + co-attention on image and metadata-text tokens (bm-train --mode fusion --text key)"
  bm-train --mode fusion -m "$MODEL" --text key --epochs "$EPOCHS" --batch 16 \
    --lr-encoder "$LR_ENC" --lr-head "$LR_FUSE" --val "$work/val.bmr" -q -o "$work/fusion.safetensors" "$work/train.bmr"
  apply_fused "$work/fusion.safetensors" "$work/fusion.json"
}

regularized() {
  say "regularized: learned prompts, averaged fusion, dropout, weight decay (bm-train --mode regularized --text prompt)"
  bm-train --mode regularized -m "$MODEL" --text prompt --epochs "$EPOCHS" --batch 16 \
    --lr-encoder "$LR_ENC" --lr-head "$LR_FUSE" --dropout 0.1 --weight-decay 1e-4 \
    --val "$work/val.bmr" -q -o "$work/regularized.safetensors" "$work/train.bmr"
  apply_fused "$work/regularized.safetensors" "$work/regularized.json"
}

# retrieval MODEL OUT.json: Recall@k both ways on the held-out pairs
retrieval() {
  bm-embed-img -q -m "$1" <"$work/pairs-test.bmr" | bm-embed-txt -q -m "$1" | bm-score --retrieval --json >"$2"
}

contrastive() {
  say "contrastive: bm-decode --format pairs, retrieval, bm-train --mode contrastive, retrieval again"
  for split in train val test; do
    bm-decode --format pairs --size "$SIZE" --split $split --test-fraction 0.3 -q "$work/pairs/pairs.csv" \
      >"$work/pairs-$split.bmr"
  done
  retrieval "$MODEL" "$work/retrieval_before.json"
  bm-train --mode contrastive -m "$MODEL" --epochs "$CLIP_EPOCHS" --batch 32 --lr "$LR_ENC" --warmup 10 \
    --val "$work/pairs-val.bmr" -q -o "$work/clip.safetensors" "$work/pairs-train.bmr"
  retrieval "$work/clip.safetensors" "$work/retrieval_after.json"
}

data
embed
failed=0
for s in $steps; do
  case $s in data | embed) continue ;; esac # they always run, once
  # a subshell with set -e, outside any if (where sh ignores set -e), so
  # that a failing step stops itself and leaves the others to run
  set +e
  (set -e; $s)
  rc=$?
  set -e
  if [ "$rc" -eq 0 ]; then
    case $s in
    contrastive)
      record "retrieval before" "$work/retrieval_before.json"
      record "retrieval after contrastive" "$work/retrieval_after.json" ;;
    *) record "$s" "$work/$s.json" ;;
    esac
  else
    printf '%s\tFAILED (see above)\n' "$s" >>"$summary"
    failed=$((failed + 1))
  fi
done

say "summary (test split; chance: accuracy 0.14, R@1 1/n)"
column -t -s "$(printf '\t')" "$summary" 2>/dev/null || cat "$summary"
printf '\nAll outputs are in %s\n' "$work"
[ "$failed" -eq 0 ]
