#!/bin/sh
# tests/gpu/bench_bert_train.sh - the text tower's training step on the GPU
# (bm_cuda_bt, tests/gpu/bench_bert_train.c) at PubMedBERT's size: texts/s of
# zero_grad + forward + backward, full fine-tuning and frozen with prompt
# vectors (CoOp), bf16 and fp32. No PyTorch peer: the GPU machine has no
# transformers.
# tests/gpu/pack.sh builds the driver here (.gpu/bin/bench_bert_train); on
# the GPU machine, from the repository root:
#   sh tests/gpu/bench_bert_train.sh [BATCH ...]   (default: 256)
# LEN (tokens a text, default 64), STEPS (timed steps, default 20) and
# BENCH_BERT_TRAIN (the driver's path) change what runs; full outputs go to
# $OUT if set.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
BIN=${BENCH_BERT_TRAIN:-${BM_GPU:-$root/.gpu}/bin/bench_bert_train}
LEN=${LEN:-64}
STEPS=${STEPS:-20}
OUTDIR=${OUT:-$(mktemp -d)}
mkdir -p "$OUTDIR"
[ -x "$BIN" ] || { echo "bench_bert_train: no driver at $BIN (run tests/gpu/pack.sh here and carry .gpu)" >&2; exit 1; }
val() { sed -n "s/^$1 //p" "$2" | tail -n 1; }
rc=0
printf '%-8s %-8s %6s %5s %10s %10s %9s\n' prec mode batch len ms/step texts/s TFLOP/s
for b in ${*:-256}; do
  for prec in bf16 fp32; do
    for mode in full prompts; do
      f=$OUTDIR/bert_train_${prec}_${mode}_$b.txt
      if "$BIN" --batch "$b" --len "$LEN" --steps "$STEPS" --prec $prec --mode $mode >"$f" 2>&1; then
        printf '%-8s %-8s %6s %5s %10s %10s %9s\n' $prec $mode "$b" "$LEN" "$(val ms_per_step "$f")" \
          "$(val texts_per_s "$f")" "$(val model_tflops "$f")"
      else
        printf '%-8s %-8s %6s %5s failed: %s\n' $prec $mode "$b" "$LEN" "$(tail -n 1 "$f")"
        rc=1
      fi
    done
  done
done
exit $rc
