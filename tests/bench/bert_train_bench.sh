#!/bin/sh
# The text tower's training step (bert_train.h) at BERT-base width, plain and
# checkpointed, in C and in PyTorch eager (HF BertModel) on the same threads;
# prints both JSON lines and the ratio torch/C of the step time (above 1: C
# is faster). Activation MiB are what bm_bt_acts_bytes reports.
#   sh tests/bench/bert_train_bench.sh [TEXTS [LEN [DEPTH [REPS [THREADS]]]]]  (32 64 12 3 all)
# Full size needs about 3 GB of memory. Needs `make` first (build/libbm.a);
# torch and transformers from the pyenv python3 (skipped when absent).
# Timings on a shared machine are noise: re-run quietly.
set -e
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$(dirname "$here")")
build=${BM_BUILD:-$root/build}
texts=${1:-32} len=${2:-64} depth=${3:-12} reps=${4:-3} threads=${5:-$(nproc)}
bin=$build/bench/bert_train_bench
mkdir -p "$build/bench"
${CC:-gcc} -std=gnu11 -O2 -march=x86-64-v2 -fopenmp -I"$root/common" \
  $(pkg-config --cflags openblas) "$here/bert_train_bench.c" "$build/libbm.a" -o "$bin" \
  $(pkg-config --libs msgpack openblas) -lm
c=$(OMP_NUM_THREADS=$threads "$bin" "$texts" "$len" "$depth" "$reps" "$threads")
echo "$c"
if python3 -c 'import torch, transformers' 2>/dev/null; then
  t=$(python3 "$here/bert_train_bench.py" "$texts" "$len" "$depth" "$reps" "$threads")
  echo "$t"
  python3 -c 'import json,sys; c=json.loads(sys.argv[1]); t=json.loads(sys.argv[2]); print("torch/C step time ratio: %.2f (checkpointed %.2f)" % (t["step_s"]/c["step_s"], t["ckpt_step_s"]/c["ckpt_step_s"]))' "$c" "$t"
else
  echo "torch or transformers missing: C timing only"
fi
