#!/bin/sh
# CLIP's contrastive loss, forward + backward, at batch B x width E, in C
# (common/clip_loss.c) and in PyTorch on the same threads; prints both JSON
# lines and the ratio torch/C (above 1: C is faster).
#   sh tests/bench/clip_loss_bench.sh [B [E [REPS [THREADS]]]]
# Needs `make` first (build/libbm.a); torch from the pyenv python3 (skipped
# when absent). Timings on a shared machine are noise: re-run quietly.
set -e
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$(dirname "$here")")
build=${BM_BUILD:-$root/build}
B=${1:-4096} E=${2:-512} reps=${3:-3} threads=${4:-$(nproc)}
if [ -z "$OPENBLAS_CORETYPE" ] && grep -qw avx512f /proc/cpuinfo; then
  export OPENBLAS_CORETYPE=SkylakeX
  echo "note: OPENBLAS_CORETYPE=SkylakeX (set it yourself to override)"
fi
bin=$build/bench/clip_loss_bench
mkdir -p "$build/bench"
${CC:-gcc} -std=gnu11 -O2 -march=x86-64-v2 -fopenmp -I"$root/common" \
  $(pkg-config --cflags openblas) "$here/clip_loss_bench.c" "$build/libbm.a" -o "$bin" \
  $(pkg-config --libs msgpack openblas) -lm
c=$(OMP_NUM_THREADS=$threads "$bin" "$B" "$E" "$reps")
echo "$c"
if python3 -c 'import torch' 2>/dev/null; then
  t=$(python3 "$here/clip_loss_bench.py" "$B" "$E" "$reps" "$threads")
  echo "$t"
  python3 -c 'import json,sys; c=json.loads(sys.argv[1]); t=json.loads(sys.argv[2]); print("torch/C time ratio: %.2f; loss C %.6f torch %.6f" % (t["step_s"]/c["step_s"], c["loss"], t["loss"]))' "$c" "$t"
else
  echo "torch missing: C timing only"
fi
