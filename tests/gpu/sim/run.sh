#!/bin/sh
# Runs the GPU modules' unit tests on the CPU against a simulation of the
# GPU, for machines without one:
#   fusion  test_cuda_fusion.c      train_fusion.cu train_fusion_attn.cu
#   vit     test_cuda_vit_train.c   train_vit.cu
#   bert    test_cuda_bert_train.c  train_bert.cu train_bert_attn.cu train_bert_embed.cu
#   opt     test_cuda_opt.c         train_opt.cu
# The module's own code (converted by conv.py) runs as C++ with every
# warp's lanes as coroutines (shuffles and __syncwarp are real rendezvous,
# so lanes that diverge at a barrier abort; no __syncthreads yet: a module
# using it does not compile here, see the README), device memory
# is host memory filled with NaN bytes, and the verified kernels it calls
# (bm_cuda_gemm, bmct_layernorm_*, bmct_linear_backward, the ViT attention,
# the flash kernels, bmct_adamw, ...) are replaced by plain loops with the
# same rounding to bf16 / fp16 (sim_impl.cpp).
# What it checks: the module's arithmetic, indexing and buffer sizes
# (SAN="-fsanitize=address,undefined" for out-of-bounds), and the test's
# limits. What it cannot: anything of the real device (cuBLAS, launch
# limits, streams, memory model, host/device pointer mix-ups), nor the
# verified kernels themselves.
#   sh tests/gpu/sim/run.sh [fusion|vit|bert|opt]...   (default: all four)
#   env: BM_TEST_QUICK, BM_TEST_PREC, BM_SEED, SAN
# One core: opt 1 s, vit 20 s, fusion quick 30 s, bert quick 40 s / all
# 5 minutes; SAN (lanes on swapcontext) several times slower. More, and
# the list of stand-ins: tests/gpu/sim/README.
set -eu
cd "$(dirname "$0")/../../.."
SAN=${SAN:-}
S=build/gpu-sim${SAN:+-san}
mkdir -p $S
make -s NVCC= BUILD=build/nocuda BIN=build/nocuda/bin -j2 build/nocuda/libbm.a # the CPU module, current
cp tests/gpu/sim/train_internal.cuh $S/
g++ -std=c++17 -O1 -g $SAN -Wall -Wextra -Wno-unused-parameter -I$S -Icommon/cuda -Icommon \
  -c tests/gpu/sim/sim_impl.cpp -o $S/sim_impl.o
rc=0
for t in ${@:-opt vit bert fusion}; do
  case $t in
  fusion) test=test_cuda_fusion; cu="train_fusion train_fusion_attn" ;;
  vit) test=test_cuda_vit_train; cu="train_vit" ;;
  bert) test=test_cuda_bert_train; cu="train_bert train_bert_attn train_bert_embed" ;;
  opt) test=test_cuda_opt; cu="train_opt" ;;
  *) echo "run.sh: unknown test '$t' (fusion, vit, bert, opt)" >&2; exit 2 ;;
  esac
  objs=
  for f in $cu; do
    /usr/bin/python3 tests/gpu/sim/conv.py $S common/cuda/$f.cu
    g++ -std=c++17 -O1 -g $SAN -Wall -Wextra -Wno-unused-parameter -I$S -Icommon/cuda -Icommon -c $S/$f.cpp -o $S/$f.o
    objs="$objs $S/$f.o"
  done
  gcc -std=gnu11 -O1 -g $SAN -Wall -Wextra -fopenmp -DBM_HAVE_CUDA -Icommon -c tests/unit/$test.c -o $S/$test.o
  g++ $SAN -fopenmp $S/$test.o $objs $S/sim_impl.o build/nocuda/libbm.a \
    -o $S/${test}_sim $(pkg-config --libs msgpack libarchive openblas libutf8proc jansson) -lm -lpthread
  echo "# sim: $test"
  $S/${test}_sim || rc=1
done
exit $rc
