#!/bin/sh
# pipelines/seed000.sh - the fine-tuning paper's four experiments (seed 000:
# baseline linear probe, end-to-end fine-tuning, cross-modal fusion, the
# regularized multimodal model) on NIH ChestX-ray14 or HAM10000, each over
# several seeds, aggregated into the paper's tables.
set -eu
. "$(cd "$(dirname "$0")" && pwd)/lib.sh"

usage() {
  cat <<'EOF'
Usage: seed000.sh --dataset nih|ham10000 [OPTION]... DATA_DIR MODEL_DIR OUTDIR

Runs seed 000's experiments on a data set as released (DATA_DIR, read by
bm-decode) with a BiomedCLIP model folder (MODEL_DIR, or a .bin/.safetensors):
  baseline     frozen image tower + linear probe (bm-train --mode linear)
  finetune     image tower + head end to end (bm-train --mode finetune)
  fusion       towers + co-attention fusion + head, text from the metadata
               (bm-train --mode fusion --text key)
  regularized  learned text prompts, averaged fusion, weighted BCE, dropout,
               weight decay (bm-train --mode regularized --text prompt)
Each is trained once per seed and evaluated on the test split (NIH: the
thresholds chosen on the val split); bm-score --aggregate gives mean and std
over the seeds. The data set is decoded once.

Steps (default: all three, in order; an HPC array runs them apart, see
pipelines/seed000.sbatch):
  --step prepare   decode train/val/test into OUTDIR/data (and embed them
                   for the baseline)
  --step run       train and evaluate each experiment x seed of --experiments
                   and --seeds: OUTDIR/EXP/seedS/metrics.json
  --step table     aggregate: OUTDIR/EXP/aggregate.json, OUTDIR/results.json,
                   OUTDIR/table.md

Options:
  --dataset nih|ham10000   the data set's layout (required)
  --experiments "LIST"     default "baseline finetune fusion regularized"
  --seeds "LIST"           training seeds (default "0 1 2")
  --epochs N               epochs of the trained-tower experiments (default 10)
  --probe-epochs N         epochs of the linear probe (default 100)
  --probe-lr X             the probe's learning rate (default 1e-2)
  --batch N                batch of the trained-tower experiments (default 16)
  --lr-encoder X           towers' learning rate (default 1e-5, the paper's)
  --lr-head X              head/fusion/prompts' learning rate (default 1e-3)
  --dropout P              regularized: dropout (default 0.1)
  --weight-decay X         regularized: weight decay (default 1e-4)
  --size N                 image size (default: the model's, 224 for BiomedCLIP)
  --split-seed N           bm-decode's split seed (default 0; fixed over seeds)
  --threads N              threads of every program (default: all cores)
  --train-opts "OPTS"      more bm-train options for every trained experiment
  --decode-opts "OPTS"     more bm-decode options (e.g. "--test-fraction 0.2")
  --probe-features F       the probe's features: img, txt or both (default img)
  -h, --help               this text

Outputs in OUTDIR: data/{train,val,test}.bmr, EXP/seedS/{model.safetensors,
metrics.json,train.log}, EXP/aggregate.json, results.json (every
experiment's aggregate) and table.md (the paper's Tables I-IV: accuracy
micro/macro; NIH also AUC, F1 and sensitivity, as mean +- std).
Needs bm-decode, bm-embed-img, bm-embed-txt, bm-fuse, bm-train, bm-score on
PATH, and python3 (standard library) for the table.
EOF
}

dataset='' experiments="baseline finetune fusion regularized" seeds="0 1 2"
epochs=10 probe_epochs=100 probe_lr=1e-2 batch=16 lr_enc=1e-5 lr_head=1e-3
dropout=0.1 wd=1e-4 size='' split_seed=0 threads='' train_opts='' decode_opts='' probe_features=img steps="prepare run table"
while [ $# -gt 0 ]; do
  case $1 in
  -h | --help) usage; exit 0 ;;
  --dataset) dataset=${2?}; shift ;;
  --experiments) experiments=${2?}; shift ;;
  --seeds) seeds=${2?}; shift ;;
  --epochs) epochs=${2?}; shift ;;
  --probe-epochs) probe_epochs=${2?}; shift ;;
  --probe-lr) probe_lr=${2?}; shift ;;
  --batch) batch=${2?}; shift ;;
  --lr-encoder) lr_enc=${2?}; shift ;;
  --lr-head) lr_head=${2?}; shift ;;
  --dropout) dropout=${2?}; shift ;;
  --weight-decay) wd=${2?}; shift ;;
  --size) size=${2?}; shift ;;
  --split-seed) split_seed=${2?}; shift ;;
  --threads) threads=${2?}; shift ;;
  --train-opts) train_opts=${2?}; shift ;;
  --decode-opts) decode_opts=${2?}; shift ;;
  --probe-features) probe_features=${2?}; shift ;;
  --step) steps=${2?}; shift ;;
  --) shift; break ;;
  -*) usage_die "unknown option $1" ;;
  *) break ;;
  esac
  shift
done
[ $# -eq 3 ] || usage_die "expected DATA_DIR MODEL_DIR OUTDIR, got $# arguments"
data=$1 model=$2 out=$3
case $dataset in
nih | ham10000) ;;
'') usage_die "--dataset nih|ham10000 is required" ;;
*) usage_die "unknown --dataset $dataset (nih or ham10000)" ;;
esac
for e in $experiments; do
  in_list "$e" "baseline finetune fusion regularized" || usage_die "unknown experiment $e"
done
for s in $steps; do in_list "$s" "prepare run table" || usage_die "unknown --step $s"; done
[ -n "$seeds" ] || usage_die "--seeds is empty"
need_dir "$data" "DATA_DIR"
need_model "$model"
need bm-decode bm-embed-img bm-embed-txt bm-fuse bm-train bm-score
[ -n "$size" ] || size=$(model_size "$model")
thr=${threads:+--threads $threads}
mkdir -p "$out/data" || die "cannot make $out"
D=$out/data

prepare() {
  decode_splits "$dataset" "$data" "$D" "$size" "train val test" --seed "$split_seed" --text $thr $decode_opts
  if in_list baseline "$experiments"; then embed_splits "$model" "$D" "train val test" $thr; fi
}

# score SCORED_VAL SCORED_TEST OUT.json: NIH thresholds come from val
score() {
  if [ "$dataset" = nih ]; then
    run "bm-score" bm-score -q --json --thresholds-from "$1" "$2" >"$3.tmp"
  else
    run "bm-score" bm-score -q --json "$2" >"$3.tmp"
  fi
  mv "$3.tmp" "$3"
}

# apply EXP CKPT IN.bmr OUT.bmr: the trained model's scores on a split
apply() {
  case $1 in
  baseline) run "bm-fuse -m" bm-fuse -q -m "$2" "$3" >"$4" ;;
  finetune)
    st bm-embed-img -q -m "$2" $thr "$3" | st bm-fuse -q -m "$2" >"$4" || :
    pipe_ok "evaluate $1" ;;
  fusion | regularized)
    st bm-embed-img -q -m "$2" --tokens $thr "$3" | st bm-embed-txt -q -m "$2" --tokens $thr |
      st bm-fuse -q -m "$2" >"$4" || :
    pipe_ok "evaluate $1" ;;
  esac
}

run_one() { # EXP SEED
  e=$1 s=$2 dir=$out/$1/seed$2
  [ -s "$dir/metrics.json" ] && { step "$e seed $s: done before"; return; }
  mkdir -p "$dir"
  ck=$dir/model.safetensors
  step "$e seed $s: train"
  case $e in
  baseline)
    run "bm-train --mode linear" bm-train -q --mode linear --epochs "$probe_epochs" --lr "$probe_lr" \
      --batch 64 --features "$probe_features" --seed "$s" --val "$D/val-emb.bmr" --log "$dir/train.log" -o "$ck" "$D/train-emb.bmr"
    vin=$D/val-emb.bmr tin=$D/test-emb.bmr ;;
  finetune)
    run "bm-train --mode finetune" bm-train -q --mode finetune -m "$model" --epochs "$epochs" --batch "$batch" \
      --lr-encoder "$lr_enc" --lr-head "$lr_head" --seed "$s" $thr $train_opts \
      --val "$D/val.bmr" --log "$dir/train.log" -o "$ck" "$D/train.bmr"
    vin=$D/val.bmr tin=$D/test.bmr ;;
  fusion)
    run "bm-train --mode fusion" bm-train -q --mode fusion -m "$model" --text key --epochs "$epochs" \
      --batch "$batch" --lr-encoder "$lr_enc" --lr-head "$lr_head" --seed "$s" $thr $train_opts \
      --val "$D/val.bmr" --log "$dir/train.log" -o "$ck" "$D/train.bmr"
    vin=$D/val.bmr tin=$D/test.bmr ;;
  regularized)
    # the paper's approach 3: learned prompts instead of text that may leak
    # the label; weighted BCE is bm-train's default for multi-label data
    run "bm-train --mode regularized" bm-train -q --mode regularized -m "$model" --text prompt \
      --epochs "$epochs" --batch "$batch" --lr-encoder "$lr_enc" --lr-head "$lr_head" \
      --dropout "$dropout" --weight-decay "$wd" --seed "$s" $thr $train_opts \
      --val "$D/val.bmr" --log "$dir/train.log" -o "$ck" "$D/train.bmr"
    vin=$D/val.bmr tin=$D/test.bmr ;;
  esac
  step "$e seed $s: evaluate on test"
  [ "$dataset" = nih ] && apply "$e" "$ck" "$vin" "$dir/val-scored.bmr"
  apply "$e" "$ck" "$tin" "$dir/test-scored.bmr"
  score "$dir/val-scored.bmr" "$dir/test-scored.bmr" "$dir/metrics.json"
  # the scored streams carry the images: keep only the figures
  rm -f "$dir/val-scored.bmr" "$dir/test-scored.bmr"
}

table() {
  for e in $experiments; do
    set --
    for s in $seeds; do
      [ -s "$out/$e/seed$s/metrics.json" ] || die "$out/$e/seed$s/metrics.json is missing: run --step run first"
      set -- "$@" "$out/$e/seed$s/metrics.json"
    done
    step "$e: aggregate $# seeds"
    run "bm-score --aggregate" bm-score --aggregate --json "$@" >"$out/$e/aggregate.json"
  done
  step "table: $out/table.md, $out/results.json"
  run "table" "$PYTHON" "$pipelines_dir/papers-table.py" --paper 000 --dataset "$dataset" \
    --json "$out/results.json" --out "$out" $experiments >"$out/table.md"
}

if in_list prepare "$steps"; then prepare; fi
if in_list run "$steps"; then
  for e in $experiments; do for s in $seeds; do run_one "$e" "$s"; done; done
fi
if in_list table "$steps"; then table; cat "$out/table.md" >&2; fi
step "done"
