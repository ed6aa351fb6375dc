#!/bin/sh
# The co-attention fusion module (fusion.h), forward + backward at batch 16
# (197 image tokens, texts of 16..64 tokens, inputs 768 wide, F 768, 2
# layers), in C and in PyTorch eager (the reference module of
# tests/ref/make_fusion_fixture.py, padded texts with key masks) on the same
# threads; prints both JSON lines and the ratio torch/C of the step time
# (above 1: C is faster).
#   sh tests/bench/fusion_bench.sh [BATCH [REPS [THREADS [F [LAYERS]]]]]
# Needs `make` first (build/libbm.a); torch from the pyenv python3
# (skipped when absent). Timings on a shared machine are noise: re-run quietly.
set -e
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$(dirname "$here")")
build=${BM_BUILD:-$root/build}
batch=${1:-16} reps=${2:-3} threads=${3:-$(nproc)} width=${4:-768} layers=${5:-2}
# OpenBLAS 0.3.21 takes some virtualized AVX-512 CPUs for a Prescott and runs
# its SSE3 kernels, 5x slower: name the core unless the caller did.
if [ -z "$OPENBLAS_CORETYPE" ] && grep -qw avx512f /proc/cpuinfo; then
  export OPENBLAS_CORETYPE=SkylakeX
  echo "note: OPENBLAS_CORETYPE=SkylakeX (set it yourself to override)"
fi
bin=$build/bench/fusion_bench
mkdir -p "$build/bench"
${CC:-gcc} -std=gnu11 -O2 -march=x86-64-v2 -fopenmp -I"$root/common" \
  $(pkg-config --cflags openblas) "$here/fusion_bench.c" "$build/libbm.a" -o "$bin" \
  $(pkg-config --libs msgpack libarchive vips openblas libutf8proc jansson) -lm
c=$(OMP_NUM_THREADS=$threads "$bin" "$batch" "$reps" "$threads" "$width" "$layers")
echo "$c"
if python3 -c 'import torch' 2>/dev/null; then
  t=$(python3 "$here/fusion_bench.py" "$batch" "$reps" "$threads" "$width" "$layers")
  echo "$t"
  python3 -c 'import json,sys; c=json.loads(sys.argv[1]); t=json.loads(sys.argv[2]); print("torch/C step time ratio: %.2f (fwd %.2f, bwd %.2f)" % (t["step_s"]/c["step_s"], t["fwd_s"]/c["fwd_s"], t["bwd_s"]/c["bwd_s"]))' "$c" "$t"
else
  echo "torch missing: C timing only"
fi
