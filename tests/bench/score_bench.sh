#!/bin/sh
# tests/bench/score_bench.sh - bm-score at scale (numbers, not pass/fail):
#  1. retrieval Recall@1/5/10 both ways on N random pairs of D-dim unit
#     embeddings (default 100000 x 512): wall time, GEMM rate, peak RSS;
#  2. the classification figures on M records (default 100000, 14 classes
#     multilabel and 7 multiclass): bm-score against scikit-learn computing
#     the same figures (score_ref.py, load and compute timed apart).
# BENCH_PAIRS, BENCH_DIM, BENCH_RECORDS change the sizes; the streams go to
# a temporary folder (TMPDIR) and are removed (100k pairs: ~410 MB).
# BENCH_CORETYPES="Prescott SkylakeX" repeats the retrieval with each
# OPENBLAS_CORETYPE (OpenBLAS 0.3.21 runs its slow SSE3 kernels on Xeons it
# does not know by model, e.g. in a VM; bm-score warns when it sees that).
# Needs /usr/bin/time (Debian package time, in tests/deps.sh).
: "${BM_BIN:?set BM_BIN}"
PY=${PY:-/usr/bin/python3}
N=${BENCH_PAIRS:-100000}
D=${BENCH_DIM:-512}
M=${BENCH_RECORDS:-100000}
REF=$(cd "$(dirname "$0")/.." && pwd)/ref/score_ref.py
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
PATH="$BM_BIN:$PATH"

timed() { # label command...: wall seconds and peak RSS from /usr/bin/time -v
  label=$1; shift
  /usr/bin/time -v "$@" >"$T/out" 2>"$T/time" || { echo "$label: failed"; tail -n 5 "$T/time"; return 1; }
  wall=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$T/time" |
    awk -F: '{ s = 0; for (i = 1; i <= NF; i++) s = s * 60 + $i; print s }')
  rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$T/time")
  echo "$label: ${wall}s wall, peak RSS $((rss / 1024)) MiB"
}

# the last Core line: bm-score re-executes itself when OpenBLAS chose its fallback
core=$(OPENBLAS_VERBOSE=2 bm-score --help 2>&1 | sed -n 's/^Core: //p' | tail -n 1)
echo "# $(nproc) cores, OpenBLAS $(pkg-config --modversion openblas 2>/dev/null) ($core kernels), $(date -u +%FT%TZ)"
"$PY" "$REF" gen-pairs "$T/pairs.bmr" --n "$N" --d "$D" --seed 1 --kind random
echo "retrieval: $N pairs x $D dims, stream $(($(wc -c <"$T/pairs.bmr") / 1048576)) MiB"
for ct in ${BENCH_CORETYPES:-default}; do
  if [ "$ct" = default ]; then set --; label="bm-score retrieval"
  else set -- "OPENBLAS_CORETYPE=$ct"; label="bm-score retrieval (OPENBLAS_CORETYPE=$ct)"; fi
  timed "$label" env "$@" bm-score --json --quiet "$T/pairs.bmr" &&
    awk -v n="$N" -v d="$D" -v s="$wall" 'BEGIN { printf "  %.1f GFLOP/s over the N x N similarities (2*N*N*D / wall)\n", 2 * n * n * d / s / 1e9 }' &&
    "$PY" -c "import json,sys; r=json.load(open(sys.argv[1])); print('  i2t R@1/5/10 %.4f %.4f %.4f, t2i %.4f %.4f %.4f' % tuple(r[k] for k in ('i2t_r1','i2t_r5','i2t_r10','t2i_r1','t2i_r5','t2i_r10')))" "$T/out"
done
rm -f "$T/pairs.bmr"

for task in multilabel:14 multiclass:7; do
  "$PY" "$REF" gen-class "$T/c.bmr" --task "${task%:*}" --n "$M" --c "${task#*:}" --seed 2 --source scores
  timed "bm-score ${task%:*}, $M records, ${task#*:} classes" bm-score --json --quiet "$T/c.bmr"
  timed "  the same with --bootstrap 200" bm-score --json --quiet --bootstrap 200 "$T/c.bmr"
  "$PY" "$REF" bench-sklearn "$T/c.bmr" | sed 's/^/  /'
done
