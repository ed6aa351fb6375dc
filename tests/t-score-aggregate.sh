#!/bin/sh
# bm-score --aggregate: mean and sample standard deviation (ddof=1) of every
# number in several runs' JSON, per_class and confusion included, vs numpy.
. "$BM_TESTS/lib.sh"
REF="$BM_TESTS/ref/score_ref.py"
seed=$(od -An -N2 -tu2 /dev/urandom | tr -d ' ')
echo "# seed $seed"
for r in 1 2 3; do
  "$PY" "$REF" gen-class "$T/s$r.bmr" --task multilabel --n 150 --c 4 --seed $((seed + r)) --source scores
  bm-score --json --bootstrap 5 --seed $r "$T/s$r.bmr" >"$T/run$r.json"
done
echo poison >"$T/agg.json"
bm-score --aggregate --json "$T/run1.json" "$T/run2.json" "$T/run3.json" >"$T/agg.json"
: >"$T/checks"
echo "check-aggregate '$T/agg.json' '$T/run1.json' '$T/run2.json' '$T/run3.json' --what 'aggregate of 3 multilabel runs'" >>"$T/checks"
for r in 1 2; do
  "$PY" "$REF" gen-pairs "$T/p$r.bmr" --n 60 --d 8 --seed $((seed + r))
  bm-score --json "$T/p$r.bmr" >"$T/pr$r.json"
done
bm-score --aggregate --json "$T/pr1.json" "$T/pr2.json" >"$T/pagg.json"
echo "check-aggregate '$T/pagg.json' '$T/pr1.json' '$T/pr2.json' --what 'aggregate of 2 retrieval runs'" >>"$T/checks"
"$PY" "$REF" batch "$T/checks"

# a class undefined in one run: averaged over the others, and said so
"$PY" "$REF" gen-class "$T/d.bmr" --task multilabel --kind degenerate --n 150 --c 4 --seed $seed --source scores
bm-score --json "$T/d.bmr" >"$T/d.json"
bm-score --aggregate --json "$T/run1.json" "$T/d.json" >"$T/dagg.json"
check "a null in one run leaves the mean over the others with a note" "$PY" -c "
import json; a = json.load(open('$T/dagg.json')); r = json.load(open('$T/run1.json'))
assert a['mean']['per_class']['c1_y']['auc'] == r['per_class']['c1_y']['auc']
assert a['std']['per_class']['c1_y']['auc'] is None
assert any('per_class.c1_y.auc: null or absent in 1 of 2 runs' in n for n in a['notes']), a['notes']"
bm-score --aggregate "$T/run1.json" "$T/run2.json" "$T/run3.json" >"$T/table"
check "the aggregate table has mean and std columns" sh -c "grep -q 'mean *std' '$T/table' && grep -q '^auc_macro ' '$T/table' && grep -q '^per_class.c0_x.auc ' '$T/table'"
bm-score --aggregate "$T/run1.json" "$T/pr1.json" >/dev/null 2>"$T/err"
check_eq "runs of different tasks: exit 1" "$?" "1"
echo '{"task": ' >"$T/broken.json"
bm-score --aggregate "$T/run1.json" "$T/broken.json" >"$T/out" 2>"$T/err"
check_eq "a broken JSON file: exit 1, nothing on stdout" "$? $(wc -c <"$T/out")" "1 0"
check "the broken file is named" grep -q 'broken\.json: line' "$T/err"
bm-score --aggregate --json "$T/run1.json" >"$T/one.json"
check "one run: std null" "$PY" -c "
import json; a = json.load(open('$T/one.json')); assert a['std']['auc_macro'] is None and a['n_runs'] == 1"
