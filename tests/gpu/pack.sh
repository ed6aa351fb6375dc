#!/bin/sh
# Build here (needs nvcc, not a GPU) and gather into .gpu/ what
# tests/gpu/run.sh needs on a lent GPU machine, which has the CUDA libraries
# but not every library we link and where nothing is built:
#   .gpu/bin/    the programs (all but bm-decode, which needs libvips) and
#                tests/gpu/*.c built as .gpu/bin/NAME (benches)
#   .gpu/tests/  the GPU unit tests (build/tests/test_cuda_*)
#   .gpu/lib/    the shared libraries they need that the GPU machine lacks
#   .gpu/py/     msgpack (pure Python) for the tests' compare scripts
#   .gpu/train-cuda/  generated train/val/test records for t-train-cuda.sh
# Then: the device tool with carry [".gpu"], command "sh tests/gpu/run.sh PART".
#   sh tests/gpu/pack.sh
# Programs are linked with --as-needed (in their own build folder) so that
# only bm-decode links libvips and its many dependencies.
set -eu
cd "$(dirname "$0")/../.."
B=build/gpu-pack-sm90
# Device code for sm_90 only (the lent H100 / H200): the three targets of a
# normal build (sm_80, sm_90, compute_90 PTX) made .gpu ~83 MB, over what the
# device tool carries. Another GPU: add its -gencode here (a new $B too, as
# make does not see a flags change).
ARCH="-gencode arch=compute_90,code=sm_90"
G=.gpu
# The libraries the GPU machine has (Ubuntu 24.04 + CUDA 13): not carried.
HAVE='^(libc|libm|libdl|librt|libpthread|ld-linux-x86-64|libgcc_s|libstdc\+\+|libgomp|libopenblas|libgfortran|libquadmath|libjansson|libxml2|liblz4|libzstd|libnettle|libacl|libbz2|liblzma|libz|libicu[a-z]*|libcudart|libcublas|libcublasLt|libcuda|libcrypto|libssl|libattr|linux-vdso)\.so'

make -j2 BUILD=$B BIN=$B/bin SAN=-Wl,--as-needed CUDA_ARCH="$ARCH" all >/dev/null
rm -rf $G
mkdir -p $G/bin $G/tests $G/lib $G/py
for p in $B/bin/*; do
  case $(basename "$p") in bm-decode) ;; *) cp "$p" $G/bin/ ;; esac
done
cp $B/tests/test_cuda_* $G/tests/
cuda=$(make -s -f Makefile -f - print-cuda <<'MK'
print-cuda:
	@echo $(CUDA_HOME)
MK
)
for src in tests/gpu/*.c; do
  [ -e "$src" ] || continue
  gcc -std=gnu11 -O2 -g -Wall -Wextra -fopenmp -Icommon -DBM_HAVE_CUDA "$src" $B/libbm.a \
    -o $G/bin/$(basename "$src" .c) -Wl,--as-needed $(pkg-config --libs msgpack libarchive openblas libutf8proc jansson) \
    -lm -lpthread -L"$cuda/lib64" -lcublasLt -lcublas -lcudart -lstdc++
done
# every library ldd resolves that the GPU machine does not have
ldd $G/bin/* $G/tests/* 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// { print $1, $3 }' | sort -u |
  while read -r name path; do
    if ! echo "$name" | grep -Eq "$HAVE"; then cp -L "$path" $G/lib/"$name"; fi
  done
# records for tests/t-train-cuda.sh, made here: bm-decode does not go along
mkdir -p $G/train-cuda
/usr/bin/python3 examples/make_demo_data.py $G/train-cuda/HAM --per-class 40 --seed 7 >/dev/null
for s in train val test; do
  $B/bin/bm-decode --format ham10000 --size 48 --split $s --test-fraction 0.2 --text -q --max-warnings 0 $G/train-cuda/HAM \
    >$G/train-cuda/$s.bmr 2>/dev/null
done
/usr/bin/python3 examples/make_demo_data.py $G/train-cuda/P --dataset pairs --per-class 20 --seed 7 >/dev/null
for s in train test; do
  $B/bin/bm-decode --format pairs --size 48 --split $s --test-fraction 0.3 -q --max-warnings 0 \
    $G/train-cuda/P/pairs.csv >$G/train-cuda/pairs-$s.bmr 2>/dev/null
done
rm -rf $G/train-cuda/HAM $G/train-cuda/P
py=/usr/lib/python3/dist-packages/msgpack
[ -d "$py" ] && cp -r "$py" $G/py/ && rm -f $G/py/msgpack/*.so
# host debug sections only: the device code (and its -lineinfo for
# compute-sanitizer) lives in .nv_fatbin, which --strip-debug keeps
strip --strip-debug $G/lib/* $G/bin/* $G/tests/* 2>/dev/null || true
echo "carried libraries: $(ls $G/lib | tr '\n' ' ')"
du -sh $G
size=$(du -sm $G | cut -f1)
[ "$size" -lt 60 ] || { echo "pack.sh: .gpu is ${size} MB, over 60" >&2; exit 1; }
