#!/bin/sh
# The image tower's training step with and without gradient checkpointing
# (vit_train.h) on random weights of ViT-B/16's width: step times, the
# activation bytes measured and planned, and the plan for 12 blocks.
#   sh tests/bench/vit_ext_bench.sh [BATCH [DEPTH [REPS [PATCH_DROPOUT]]]]
# Defaults (4 images, 2 blocks) keep it light on a shared machine; on a quiet
# one try 16 2 3, then 16 2 3 0.5. Needs `make` first (build/libbm.a).
set -e
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$(dirname "$here")")
build=${BM_BUILD:-$root/build}
if [ -z "$OPENBLAS_CORETYPE" ] && grep -qw avx512f /proc/cpuinfo; then
  export OPENBLAS_CORETYPE=SkylakeX # see backward_bench.sh
fi
bin=$build/bench/vit_ext_bench
mkdir -p "$build/bench"
${CC:-gcc} -std=gnu11 -O2 -march=x86-64-v2 -fopenmp -I"$root/common" \
  $(pkg-config --cflags openblas) "$here/vit_ext_bench.c" "$build/libbm.a" -o "$bin" \
  $(pkg-config --libs msgpack libarchive vips openblas libutf8proc jansson) -lm
"$bin" "${1:-4}" "${2:-2}" "${3:-2}" "${4:-0}"
