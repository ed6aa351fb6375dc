#!/bin/sh
# prefetch_bench.sh - bm-train's batch prefetch (common/train_prefetch.c):
# (1) the time to read, crop and normalize a batch of 224x224 images from
# generated records (stored at 224, and at 256 as random-resized crops), and
# steps of STEP_MS (default 105: a GPU step of 256 images measured on an
# H100) with serial vs prefetched reads (prefetch_bench.c); (2) the tiny
# model's CPU fine-tuning, wall time with BM_TRAIN_PREFETCH=0 and 1.
#   sh tests/bench/prefetch_bench.sh [BATCH [REPS [STEP_MS]]]
# Needs `make` first (build/libbm.a, bin/). Run on a quiet machine.
set -e
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$(dirname "$here")")
build=${BM_BUILD:-$root/build}
BM_BIN=${BM_BIN:-$root/bin}
PY=${PY:-/usr/bin/python3}
bin=$build/bench/prefetch_bench
mkdir -p "$build/bench"
${CC:-gcc} -std=gnu11 -O2 -march=x86-64-v2 -fopenmp -I"$root/common" $(pkg-config --cflags msgpack) \
  "$here/prefetch_bench.c" "$build/libbm.a" -o "$bin" \
  $(pkg-config --libs msgpack libarchive vips openblas libutf8proc jansson) -lm -lpthread \
  $(if nm "$build/libbm.a" 2>/dev/null | grep -q " U cudaMalloc$"; then # built with CUDA
      echo "-L${CUDA_HOME:-/usr/local/cuda}/lib64 -lcublasLt -lcublas -lcudart -lstdc++"; fi)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for size in 224 256; do "$bin" "$work" "${1:-256}" $size "${2:-5}" "${3:-105}"; done
# (2) the tiny model's fine-tuning on the CPU, 2 threads, 3 runs each way
"$PY" "$root/examples/make_demo_data.py" "$work/HAM" --per-class 30 --seed 1 >/dev/null
"$BM_BIN/bm-decode" --format ham10000 --size 56 --split train --test-fraction 0.2 -q --max-warnings 0 "$work/HAM" \
  >"$work/train.bmr" 2>/dev/null
for pf in 0 1 0 1 0 1; do
  t0=$(date +%s.%N)
  BM_TRAIN_PREFETCH=$pf "$BM_BIN/bm-train" -q -j 2 --mode finetune -m "$root/tests/fixtures/tiny-model" --batch 16 \
    --epochs 3 -o "$work/ft.safetensors" "$work/train.bmr"
  echo "{\"what\": \"tiny finetune on the CPU, 3 epochs\", \"prefetch\": $pf, \"seconds\": $(echo "$(date +%s.%N) - $t0" | bc)}"
done
