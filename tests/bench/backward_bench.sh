#!/bin/sh
# One ViT-B/16 block, training forward + backward at batch 16, in C (backward.h)
# and in PyTorch eager (timm Block) on the same threads; prints both JSON lines
# and the ratio torch/C of the step time (above 1: C is faster).
#   sh tests/bench/backward_bench.sh [BATCH [REPS [THREADS]]]
# Needs `make` first (build/libbm.a); torch and timm from the pyenv python3
# (skipped when absent). Timings on a shared machine are noise: re-run quietly.
set -e
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$(dirname "$here")")
build=${BM_BUILD:-$root/build}
batch=${1:-16} reps=${2:-3} threads=${3:-$(nproc)}
# OpenBLAS 0.3.21 takes some virtualized AVX-512 CPUs for a Prescott and runs
# its SSE3 kernels, 5x slower: name the core unless the caller did.
if [ -z "$OPENBLAS_CORETYPE" ] && grep -qw avx512f /proc/cpuinfo; then
  export OPENBLAS_CORETYPE=SkylakeX
  echo "note: OPENBLAS_CORETYPE=SkylakeX (set it yourself to override)"
fi
bin=$build/bench/backward_bench
mkdir -p "$build/bench"
${CC:-gcc} -std=gnu11 -O2 -march=x86-64-v2 -fopenmp -I"$root/common" \
  $(pkg-config --cflags openblas) "$here/backward_bench.c" "$build/libbm.a" -o "$bin" \
  $(pkg-config --libs msgpack openblas) -lm
c=$(OMP_NUM_THREADS=$threads "$bin" "$batch" "$reps" "$threads")
echo "$c"
if python3 -c 'import torch, timm' 2>/dev/null; then
  t=$(python3 "$here/backward_bench.py" "$batch" "$reps" "$threads")
  echo "$t"
  python3 -c 'import json,sys; c=json.loads(sys.argv[1]); t=json.loads(sys.argv[2]); print("torch/C step time ratio: %.2f (fwd %.2f, bwd %.2f)" % (t["step_s"]/c["step_s"], t["fwd_s"]/c["fwd_s"], t["bwd_s"]/c["bwd_s"]))' "$c" "$t"
else
  echo "torch or timm missing: C timing only"
fi
