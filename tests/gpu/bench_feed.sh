#!/bin/sh
# tests/gpu/bench_feed.sh - what bm-train --device cuda's batch prefetch
# gains: the full-size fine-tuning step (bf16, batch 256) fed from generated
# records as bm-train feeds it (bench_train --feed): the read of a batch on
# one thread, steps with the batch read before each (serial,
# BM_TRAIN_PREFETCH=0) and with the next batch read by R threads during each
# (the default: -j threads), for records stored at 224 (normalize only) and
# at 256 (random-resized crops to 224, bm-decode --size 256).
#   sh tests/gpu/bench_feed.sh [READERS ...]   (default: "1 8 $(nproc)")
# BENCH_TRAIN (the driver), BATCH (256), STEPS (10) change what runs.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
BIN=${BENCH_TRAIN:-${BM_GPU:-$root/.gpu}/bin/bench_train}
B=${BATCH:-256}
STEPS=${STEPS:-10}
[ -x "$BIN" ] || { echo "bench_feed: no driver at $BIN (run tests/gpu/pack.sh here and carry .gpu)" >&2; exit 1; }
readers=${*:-"1 8 $(nproc)"}
val() { sed -n "s/^$1 //p" "$2" | tail -n 1; }
printf '%-7s %-7s %9s %9s %10s %12s %10s %12s\n' stored readers read1_ms readR_ms serial_ms serial_sps pref_ms pref_sps
out=$(mktemp)
for size in 224 256; do
  for r in $readers; do
    if "$BIN" --batch "$B" --steps "$STEPS" --prec bf16 --feed "$size" --readers "$r" >"$out" 2>&1; then
      printf '%-7s %-7s %9s %9s %10s %12s %10s %12s\n' "$size" "$r" "$(val read_ms_one_thread "$out")" \
        "$(val read_ms_readers "$out")" "$(val serial_ms_per_step "$out")" "$(val serial_samples_per_s "$out")" \
        "$(val prefetch_ms_per_step "$out")" "$(val prefetch_samples_per_s "$out")"
    else
      echo "stored $size readers $r: failed:"; sed 's/^/  /' "$out" | tail -5
    fi
  done
done
rm -f "$out"
