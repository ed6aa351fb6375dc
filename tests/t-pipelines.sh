#!/bin/sh
# pipelines/: the Slurm array script, run as Slurm would run two array tasks,
# gives parts that bm-cat joins into the same records as one unsharded run.
. "$BM_TESTS/lib.sh"
top="$BM_TESTS/.."
M="$top/tests/fixtures/tiny-model"
$PY "$top/examples/make_demo_data.py" "$T/HAM" --per-class 3 --seed 5 >/dev/null
for k in 0 1 2; do
  SLURM_ARRAY_TASK_ID=$k SLURM_ARRAY_TASK_COUNT=3 SLURM_CPUS_PER_TASK=2 \
    bash "$top/pipelines/embed-shards.sbatch" ham10000 "$T/HAM" "$M" "$T/out" --size 48 -q 2>"$T/err$k"
done
check "three array tasks leave three finished parts" test "$(ls "$T/out" | grep -c '^part-000[0-2].bmr$')" -eq 3
check "no temporary part is left" sh -c "! ls '$T/out' | grep -q tmp"
bm-cat "$T"/out/part-*.bmr > "$T/joined.bmr"
bm-decode --format ham10000 --size 48 -q "$T/HAM" | bm-embed-img -q -m "$M" > "$T/whole.bmr"
check "joined parts hold the same records as one run" $PY - "$T/joined.bmr" "$T/whole.bmr" <<'PY'
import sys, msgpack
def recs(p):
    return {r["id"]: msgpack.packb(r) for r in msgpack.Unpacker(open(p, "rb"), raw=False) if "header" not in r}
a, b = recs(sys.argv[1]), recs(sys.argv[2])
assert len(b) == 21 and a == b, (len(a), len(b))
PY
