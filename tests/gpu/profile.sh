#!/bin/sh
# Where the GPU time goes: Nsight Compute times every kernel of a window of
# launches (one forward or training step after warm-up), and the table sums
# them by kernel name. Runs ON the GPU machine with what pack.sh carried.
#   sh tests/gpu/profile.sh [embed|train] [BATCH]
# Kernels run serialized under ncu, so only the shares mean anything.
set -u
what=${1:-embed} B=${2:-256}
G=${BM_GPU:-$PWD/.gpu}
export LD_LIBRARY_PATH="$G/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
OUT=${OUT:-.}
NCU=${NCU:-ncu}
command -v "$NCU" >/dev/null || NCU=$(ls /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
case $what in
embed) cmd="$G/bin/bench_embed --batch $B --reps 1"; skip=${SKIP:-400}; count=${COUNT:-400} ;;
train) cmd="$G/bin/bench_train --batch $B --steps 2 --prec bf16"; skip=${SKIP:-1500}; count=${COUNT:-900} ;;
*) echo "profile.sh: embed or train" >&2; exit 2 ;;
esac
csv=$OUT/profile_$what.csv
$NCU --launch-skip "$skip" --launch-count "$count" --metrics gpu__time_duration.sum --csv \
  --print-units base $cmd > "$csv" 2> "$OUT/profile_$what.err" || { tail -5 "$OUT/profile_$what.err"; }
python3 - "$csv" <<'PY'
import csv, sys, collections
rows = [r for r in csv.reader(l for l in open(sys.argv[1]) if l.startswith('"'))]
h = rows[0]; k = h.index("Kernel Name"); v = h.index("Metric Value")
t = collections.defaultdict(float); n = collections.Counter()
for r in rows[1:]:
    name = r[k].split("(")[0].split("<")[0][:60]
    t[name] += float(r[v].replace(",", "")) / 1e6; n[name] += 1
tot = sum(t.values())
print(f"{'kernel':60s} {'calls':>6s} {'ms':>9s} {'share':>6s}")
for name, ms in sorted(t.items(), key=lambda x: -x[1])[:25]:
    print(f"{name:60s} {n[name]:6d} {ms:9.3f} {100*ms/tot:5.1f}%")
print(f"{'total':60s} {sum(n.values()):6d} {tot:9.3f}")
PY
