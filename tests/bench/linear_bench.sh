#!/bin/sh
# tests/bench/linear_bench.sh - bm-train --mode linear and bm-fuse -m at scale
# (numbers, not pass/fail): N records (default 20000) of D-dim img_emb
# (default 512), 14 multilabel classes; training samples/s (the whole run:
# reading records by offset, forward, backward, AdamW), peak RSS next to the
# file's size (the data set is streamed, so RSS stays far below it), then
# bm-fuse -m records/s. BENCH_RECORDS, BENCH_DIM, BENCH_THREADS change it.
# Needs /usr/bin/time (Debian package time, in tests/deps.sh).
: "${BM_BIN:?set BM_BIN}"
PY=${PY:-/usr/bin/python3}
N=${BENCH_RECORDS:-20000}
D=${BENCH_DIM:-512}
J=${BENCH_THREADS:-$(nproc)}
GEN=$(cd "$(dirname "$0")/.." && pwd)/linear_gen.py
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
PATH="$BM_BIN:$PATH"
$PY "$GEN" data "$T/train.bmr" 1 "$N" multilabel 14 "$D"
size=$(($(stat -c %s "$T/train.bmr") / 1048576))
/usr/bin/time -v bm-train -q --mode linear -o "$T/h.safetensors" --epochs 3 --batch 256 -j "$J" "$T/train.bmr" 2>"$T/time" || { tail -n 5 "$T/time"; exit 1; }
wall=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$T/time" | awk -F: '{ s = 0; for (i = 1; i <= NF; i++) s = s * 60 + $i; print s }')
rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$T/time")
echo "bm-train --mode linear: $N records x $D, 3 epochs, batch 256, $J threads: ${wall}s wall," \
  "$(awk -v n="$N" -v w="$wall" 'BEGIN { printf "%.0f", 3 * n / w }') samples/s (index pass included)," \
  "peak RSS $((rss / 1024)) MiB for a ${size} MiB file"
start=$(date +%s.%N)
bm-fuse -q -m "$T/h.safetensors" "$T/train.bmr" >/dev/null
end=$(date +%s.%N)
echo "bm-fuse -m: $(awk -v n="$N" -v a="$start" -v b="$end" 'BEGIN { printf "%.0f", n / (b - a) }') records/s"
