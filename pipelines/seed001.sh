#!/bin/sh
# pipelines/seed001.sh - BiomedCLIP's evaluations (seed 001): zero-shot
# classification, few-shot linear probes, image-text retrieval, and
# contrastive fine-tuning on image-caption pairs followed by retrieval.
set -eu
. "$(cd "$(dirname "$0")" && pwd)/lib.sh"

usage() {
  cat <<'EOF'
Usage: seed001.sh [OPTION]... DATA_DIR MODEL_DIR OUTDIR

Seed 001's evaluations of a BiomedCLIP model (MODEL_DIR: hub folder, .bin or
.safetensors) on a classification data set as released (DATA_DIR, --dataset)
and on image-caption pairs (--pairs):
  zero-shot    class prompts in seed 001's templates (bm-embed-txt --classes)
               against the test images (bm-fuse --classes | bm-score)
  few-shot     linear probes on frozen image embeddings trained on 1%, 10%
               and 100% of the training split (bm-train --mode linear
               --fraction), each over the seeds, aggregated
  retrieval    Recall@1/5/10 image->text and text->image on the test pairs
               (bm-embed-img | bm-embed-txt | bm-score --retrieval)
  contrastive  CLIP training on the training pairs (bm-train --mode
               contrastive), then retrieval on the test pairs again: before
               and after side by side

Options:
  --parts "LIST"        what to run (default "zero-shot few-shot retrieval
                        contrastive"); retrieval and contrastive need --pairs
  --dataset nih|ham10000  DATA_DIR's layout (default ham10000)
  --pairs PATH          image-caption pairs as bm-decode --format pairs reads
                        them (a CSV/TSV filepath,title or a webdataset tar)
  --classes FILE        zero-shot class prompts, "name<TAB>prompt[<TAB>negative]"
                        (default examples/DATASET-classes.txt)
  --templates FILE      prompt templates (default: bm-embed-txt's, seed 001's
                        "this is an image of {}" and "{} presented in image")
  --fractions "LIST"    few-shot fractions (default "0.01 0.1 1.0")
  --seeds "LIST"        few-shot seeds (default "0 1 2")
  --probe-epochs N      linear probe epochs (default 100)
  --probe-lr X          linear probe learning rate (default 1e-2)
  --epochs N            contrastive epochs (default 10)
  --batch N             contrastive batch (default 32)
  --lr X                contrastive learning rate (default 1e-5)
  --train-opts "OPTS"   more bm-train options for the contrastive run
                        (e.g. "--lock-image" or "--patch-dropout 0.5")
  --size N              image size (default: the model's)
  --threads N           threads of every program (default: all cores)
  --decode-opts "OPTS"  more bm-decode options for DATA_DIR
  --pairs-opts "OPTS"   more bm-decode options for the pairs
  -h, --help            this text

Outputs in OUTDIR: data/ (decoded splits), zero-shot.json,
few-shot/FRACTION/seedS.json and FRACTION/aggregate.json,
retrieval-before.json, contrastive/model.safetensors,
retrieval-after.json, results.json and table.md.
EOF
}

dataset=ham10000 parts="zero-shot few-shot retrieval contrastive" pairs='' classes='' templates=''
fractions="0.01 0.1 1.0" seeds="0 1 2" probe_epochs=100 probe_lr=1e-2 epochs=10 batch=32 lr=1e-5
train_opts='' size='' threads='' decode_opts='' pairs_opts=''
while [ $# -gt 0 ]; do
  case $1 in
  -h | --help) usage; exit 0 ;;
  --parts) parts=${2?}; shift ;;
  --dataset) dataset=${2?}; shift ;;
  --pairs) pairs=${2?}; shift ;;
  --classes) classes=${2?}; shift ;;
  --templates) templates=${2?}; shift ;;
  --fractions) fractions=${2?}; shift ;;
  --seeds) seeds=${2?}; shift ;;
  --probe-epochs) probe_epochs=${2?}; shift ;;
  --probe-lr) probe_lr=${2?}; shift ;;
  --epochs) epochs=${2?}; shift ;;
  --batch) batch=${2?}; shift ;;
  --lr) lr=${2?}; shift ;;
  --train-opts) train_opts=${2?}; shift ;;
  --size) size=${2?}; shift ;;
  --threads) threads=${2?}; shift ;;
  --decode-opts) decode_opts=${2?}; shift ;;
  --pairs-opts) pairs_opts=${2?}; shift ;;
  --) shift; break ;;
  -*) usage_die "unknown option $1" ;;
  *) break ;;
  esac
  shift
done
[ $# -eq 3 ] || usage_die "expected DATA_DIR MODEL_DIR OUTDIR, got $# arguments"
data=$1 model=$2 out=$3
case $dataset in nih | ham10000) ;; *) usage_die "unknown --dataset $dataset (nih or ham10000)" ;; esac
for p in $parts; do
  in_list "$p" "zero-shot few-shot retrieval contrastive" || usage_die "unknown part $p"
done
[ -n "$parts" ] || usage_die "--parts is empty"
need bm-decode bm-embed-img bm-embed-txt bm-fuse bm-train bm-score
need_model "$model"
if in_list zero-shot "$parts" || in_list few-shot "$parts"; then need_dir "$data" "DATA_DIR"; fi
if in_list retrieval "$parts" || in_list contrastive "$parts"; then
  [ -n "$pairs" ] || usage_die "retrieval and contrastive need --pairs PATH"
  [ -e "$pairs" ] || die "pairs $pairs: no such file or folder"
fi
[ -n "$classes" ] || classes=$pipelines_dir/../examples/$dataset-classes.txt
if in_list zero-shot "$parts"; then [ -f "$classes" ] || die "class prompts $classes: no such file"; fi
[ -n "$size" ] || size=$(model_size "$model")
thr=${threads:+--threads $threads}
D=$out/data
mkdir -p "$D" "$out/pairs" || die "cannot make $out"

# NIH is multi-label: thresholds are chosen on the val split's scores
score() { # VAL_SCORED TEST_SCORED OUT.json
  if [ "$dataset" = nih ]; then
    run "bm-score" bm-score -q --json --thresholds-from "$1" "$2" >"$3.tmp"
  else
    run "bm-score" bm-score -q --json "$2" >"$3.tmp"
  fi
  mv "$3.tmp" "$3"
}

zero_shot() {
  decode_splits "$dataset" "$data" "$D" "$size" "val test" --text $thr $decode_opts
  embed_splits "$model" "$D" "val test" $thr
  step "zero-shot: class embeddings from $classes"
  run "bm-embed-txt --classes" bm-embed-txt -q -m "$model" --classes "$classes" \
    ${templates:+--templates "$templates"} $thr >"$out/classes.bmr"
  for split in val test; do
    run "bm-fuse --classes ($split)" bm-fuse -q --classes "$out/classes.bmr" "$D/$split-emb.bmr" >"$out/zs-$split.bmr"
  done
  score "$out/zs-val.bmr" "$out/zs-test.bmr" "$out/zero-shot.json"
  rm -f "$out/zs-val.bmr" "$out/zs-test.bmr"
}

few_shot() {
  decode_splits "$dataset" "$data" "$D" "$size" "train val test" --text $thr $decode_opts
  embed_splits "$model" "$D" "train val test" $thr
  for f in $fractions; do
    dir=$out/few-shot/$f
    mkdir -p "$dir"
    set --
    for s in $seeds; do
      if [ ! -s "$dir/seed$s.json" ]; then
        step "few-shot: fraction $f seed $s"
        run "bm-train --mode linear --fraction $f" bm-train -q --mode linear --fraction "$f" --seed "$s" \
          --epochs "$probe_epochs" --lr "$probe_lr" --batch 64 --val "$D/val-emb.bmr" \
          -o "$dir/seed$s.safetensors" "$D/train-emb.bmr"
        for split in val test; do
          run "bm-fuse -m" bm-fuse -q -m "$dir/seed$s.safetensors" "$D/$split-emb.bmr" >"$dir/$split.bmr"
        done
        score "$dir/val.bmr" "$dir/test.bmr" "$dir/seed$s.json"
        rm -f "$dir/val.bmr" "$dir/test.bmr"
      fi
      set -- "$@" "$dir/seed$s.json"
    done
    run "bm-score --aggregate" bm-score --aggregate --json "$@" >"$dir/aggregate.json"
  done
}

# retrieval MODEL OUT.json: Recall@k both ways on the test pairs
retrieval() {
  decode_splits pairs "$pairs" "$out/pairs" "$size" "test" $thr $pairs_opts
  step "retrieval with $1"
  st bm-embed-img -q -m "$1" $thr "$out/pairs/test.bmr" | st bm-embed-txt -q -m "$1" $thr |
    st bm-score -q --json --retrieval >"$2.tmp" || :
  pipe_ok "retrieval"
  mv "$2.tmp" "$2"
}

contrastive() {
  [ -s "$out/retrieval-before.json" ] || retrieval "$model" "$out/retrieval-before.json"
  decode_splits pairs "$pairs" "$out/pairs" "$size" "train val" $thr $pairs_opts
  mkdir -p "$out/contrastive"
  if [ ! -s "$out/contrastive/model.safetensors" ]; then
    step "contrastive training on the training pairs"
    run "bm-train --mode contrastive" bm-train -q --mode contrastive -m "$model" --epochs "$epochs" \
      --batch "$batch" --lr "$lr" $thr $train_opts --val "$out/pairs/val.bmr" \
      --log "$out/contrastive/train.log" -o "$out/contrastive/model.safetensors" "$out/pairs/train.bmr"
  fi
  retrieval "$out/contrastive/model.safetensors" "$out/retrieval-after.json"
}

set --
for p in $parts; do
  case $p in
  zero-shot) zero_shot; set -- "$@" "zero-shot=$out/zero-shot.json" ;;
  few-shot)
    few_shot
    for f in $fractions; do set -- "$@" "few-shot $f=$out/few-shot/$f/aggregate.json"; done ;;
  retrieval) retrieval "$model" "$out/retrieval-before.json"; set -- "$@" "retrieval=$out/retrieval-before.json" ;;
  contrastive)
    contrastive
    in_list retrieval "$parts" || set -- "$@" "retrieval before=$out/retrieval-before.json"
    set -- "$@" "retrieval after contrastive=$out/retrieval-after.json" ;;
  esac
done
step "table: $out/table.md, $out/results.json"
run "table" "$PYTHON" "$pipelines_dir/papers-table.py" --paper 001 --out "$out" --json "$out/results.json" "$@" >"$out/table.md"
cat "$out/table.md" >&2
step "done"
