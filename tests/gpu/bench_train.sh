#!/bin/sh
# tests/gpu/bench_train.sh - the full-size fine-tuning step (ViT-B/16 224 +
# linear head) on the GPU: ours (bm_cuda_ft, tests/gpu/bench_train.c) next to
# PyTorch AMP (tests/gpu/peer_train.py: eager, and torch.compile), samples/s
# and MFU = 3 x 35.1 GFLOP x samples/s / the bf16 GEMM rate measured in the
# same run.
# tests/gpu/pack.sh builds the driver here (.gpu/bin/bench_train); on the
# GPU machine, from the repository root:
#   sh tests/gpu/bench_train.sh [BATCH ...]   (default: 256; "128 256" for both)
# BENCH_TRAIN (the driver's path), TORCH_PY (python with torch + timm),
# STEPS (timed steps, default 20) and NO_COMPILE=1 (skip torch.compile)
# change what runs. The table goes to stdout, full outputs to $OUT if set.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

BIN=${BENCH_TRAIN:-${BM_GPU:-$root/.gpu}/bin/bench_train}
PY=${TORCH_PY:-python3}
STEPS=${STEPS:-20}
OUTDIR=${OUT:-$(mktemp -d)}
mkdir -p "$OUTDIR"
batches=${*:-256}
[ -x "$BIN" ] || { echo "bench_train: no driver at $BIN (run tests/gpu/pack.sh here and carry .gpu)" >&2; exit 1; }

val() { sed -n "s/^$1 //p" "$2" | tail -n 1; }
row() { # name file peak
  sps=$(val samples_per_s "$2"); ms=$(val ms_per_step "$2"); tf=$(val model_tflops "$2")
  if [ -n "$sps" ]; then
    mfu=$(awk -v t="$tf" -v p="$3" 'BEGIN { if (p > 0) printf "%.1f%%", 100 * t / p; else print "?" }')
    printf '%-22s %6s %10s %10s %9s %7s\n' "$1" "$b" "$ms" "$sps" "$tf" "$mfu"
  else
    printf '%-22s %6s %s\n' "$1" "$b" "failed (see $2)"
  fi
}

for b in $batches; do
  "$BIN" --batch "$b" --steps "$STEPS" --prec bf16 >"$OUTDIR/ours_bf16_$b.txt" 2>&1
  "$PY" "$here/peer_train.py" --batch "$b" --steps "$STEPS" >"$OUTDIR/torch_eager_$b.txt" 2>&1
  [ "${NO_COMPILE:-0}" = 1 ] || "$PY" "$here/peer_train.py" --batch "$b" --steps "$STEPS" --compile \
    >"$OUTDIR/torch_compile_$b.txt" 2>&1
done

peak=$(val bf16_gemm_tflops "$OUTDIR/ours_bf16_$(echo "$batches" | awk '{print $1}').txt")
tpeak=$(val bf16_gemm_tflops "$OUTDIR/torch_eager_$(echo "$batches" | awk '{print $1}').txt")
echo "device: $(val device "$OUTDIR/ours_bf16_$(echo "$batches" | awk '{print $1}').txt")"
echo "bf16 GEMM 8192^3: ours (cuBLAS) ${peak:-?} TFLOP/s, torch ${tpeak:-?} TFLOP/s; MFU uses ours"
printf '%-22s %6s %10s %10s %9s %7s\n' what batch ms/step samples/s TFLOP/s MFU
for b in $batches; do
  row "bm_cuda_ft bf16" "$OUTDIR/ours_bf16_$b.txt" "${peak:-0}"
  row "torch AMP eager" "$OUTDIR/torch_eager_$b.txt" "${peak:-0}"
  [ "${NO_COMPILE:-0}" = 1 ] || row "torch AMP compile" "$OUTDIR/torch_compile_$b.txt" "${peak:-0}"
done
