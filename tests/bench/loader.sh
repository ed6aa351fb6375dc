#!/bin/sh
# tests/bench/loader.sh - time and peak memory of loading a full-size
# BiomedCLIP checkpoint (torch.save zip and safetensors), random weights made
# by tests/ref/make_full_checkpoint.py (needs PyTorch; skipped without it).
# Numbers, not pass/fail: the goal is peak RSS <= 1.3x the tensor bytes.
: "${BM_BUILD:=build}"
PYT=${PYTORCH_PY:-python3}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
if ! "$PYT" -c 'import torch, safetensors' 2>/dev/null; then
  echo "loader bench: skipped (no PyTorch in $PYT)"; exit 0
fi
"$PYT" tests/ref/make_full_checkpoint.py "$dir/full.bin" "$dir/full.safetensors" || exit 1
for f in full.bin full.safetensors; do
  /usr/bin/time -v "$BM_BUILD/tests/test_weights" --load "$dir/$f" 2>"$dir/time.txt" | tee "$dir/out.txt"
  bytes=$(sed -n 's/.* tensors, \([0-9]*\) bytes.*/\1/p' "$dir/out.txt")
  rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$dir/time.txt")
  wall=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$dir/time.txt")
  awk -v f="$f" -v b="$bytes" -v r="$rss" -v w="$wall" 'BEGIN {
    printf "loader bench: %s: %.1f MB of tensors, peak RSS %.1f MB = %.3fx, wall %s\n",
           f, b / 1e6, r * 1024 / 1e6, r * 1024 / b, w }'
done
