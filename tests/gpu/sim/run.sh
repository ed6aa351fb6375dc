#!/bin/sh
# Runs tests/unit/test_cuda_fusion.c on the CPU against a simulation of the
# GPU, for machines without one: the fusion module's own code
# (common/cuda/train_fusion*.cu, converted by conv.py) runs as C++ with
# every warp's 32 lanes as coroutines (shuffles and __syncwarp are real
# rendezvous, so lanes that diverge at a barrier abort), device memory is
# host memory filled with NaN bytes, and the verified kernels it calls
# (bm_cuda_gemm, bmct_layernorm_*, bmct_linear_backward, ...) are replaced
# by plain loops with the same rounding to bf16 / fp16 (sim_impl.cpp).
# What it checks: the module's arithmetic, indexing and buffer sizes
# (SAN="-fsanitize=address,undefined" for out-of-bounds), and the test's
# limits. What it cannot: anything of the real device (cuBLAS, launch
# limits, streams, memory model, host/device pointer mix-ups).
#   sh tests/gpu/sim/run.sh           (env: BM_TEST_QUICK, BM_TEST_PREC, BM_SEED, SAN)
# Quick fp32: ~1 minute; all precisions: ~10 minutes on one core.
set -eu
cd "$(dirname "$0")/../../.."
SAN=${SAN:-}
S=build/fusion-sim${SAN:+-san}
mkdir -p $S
make -s NVCC= BUILD=build/nocuda BIN=build/nocuda/bin -j2 build/nocuda/libbm.a # the CPU module, current
/usr/bin/python3 tests/gpu/sim/conv.py common/cuda $S
cp tests/gpu/sim/train_internal.cuh $S/
for f in $S/train_fusion.cpp $S/train_fusion_attn.cpp tests/gpu/sim/sim_impl.cpp; do
  g++ -std=c++17 -O1 -g $SAN -Wall -Wextra -Wno-unused-parameter -I$S -Icommon/cuda -Icommon -c "$f" \
    -o $S/$(basename "$f" .cpp).o
done
gcc -std=gnu11 -O1 -g $SAN -Wall -Wextra -fopenmp -DBM_HAVE_CUDA -Icommon -c tests/unit/test_cuda_fusion.c -o $S/test.o
g++ $SAN -fopenmp $S/test.o $S/train_fusion.o $S/train_fusion_attn.o $S/sim_impl.o build/nocuda/libbm.a \
  -o $S/test_cuda_fusion_sim $(pkg-config --libs msgpack libarchive openblas libutf8proc jansson) -lm -lpthread
exec $S/test_cuda_fusion_sim
