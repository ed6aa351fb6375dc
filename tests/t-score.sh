#!/bin/sh
# bm-score classification figures against scikit-learn 1.2, on fresh random
# streams: ties, heavy imbalance, a class with one target value, one sample
# per class, multiclass and multilabel, prob / scores / both given.
. "$BM_TESTS/lib.sh"
REF="$BM_TESTS/ref/score_ref.py"
seed=$(od -An -N2 -tu2 /dev/urandom | tr -d ' ')
echo "# seed $seed"

run_case() { # task kind n c source
  "$PY" "$REF" gen-class "$T/s.bmr" --task "$1" --kind "$2" --n "$3" --c "$4" --seed "$seed" --source "$5"
  echo poison >"$T/got.json"
  bm-score --json "$T/s.bmr" >"$T/got.json" 2>"$T/err" || { echo "not ok - $1 $2: bm-score failed"; sed 's/^/#   /' "$T/err"; return; }
  mv "$T/s.bmr" "$T/s$i.bmr"
  mv "$T/got.json" "$T/got$i.json"
  echo "check '$T/s$i.bmr' '$T/got$i.json' --what '$1 $2 ($5, n=$3, C=$4)'" >>"$T/checks"
  i=$((i + 1))
}
i=0
: >"$T/checks"
for task in multiclass multilabel; do
  run_case $task continuous 300 5 scores
  run_case $task continuous 250 4 mixed
  run_case $task ties 300 6 prob
  run_case $task imbalance 800 7 scores
  run_case $task degenerate 200 5 prob
  run_case $task onepercls 6 6 prob
done
run_case multiclass onepercls 2 2 scores
run_case multilabel continuous 1 3 prob
"$PY" "$REF" batch "$T/checks"

# thresholds chosen on a validation stream, never on the scored one
"$PY" "$REF" gen-class "$T/val.bmr" --task multilabel --kind ties --n 300 --c 5 --seed $((seed + 1)) --source scores
"$PY" "$REF" gen-class "$T/test.bmr" --task multilabel --kind ties --n 300 --c 5 --seed $((seed + 2)) --source scores
for m in f1 youden; do
  bm-score --json --thresholds-from "$T/val.bmr" --threshold-metric $m "$T/test.bmr" >"$T/got.json"
  "$PY" "$REF" check "$T/test.bmr" "$T/got.json" --val "$T/val.bmr" --metric $m --what "thresholds maximizing $m on a validation stream"
done
"$PY" "$REF" gen-class "$T/dval.bmr" --task multilabel --kind degenerate --n 100 --c 5 --seed $((seed + 3)) --source prob
bm-score --json --thresholds-from "$T/dval.bmr" --threshold 0.4 "$T/test.bmr" >"$T/got.json"
"$PY" "$REF" check "$T/test.bmr" "$T/got.json" --val "$T/dval.bmr" --threshold 0.4 --what "one-valued validation classes keep --threshold 0.4"
check "the note names the class whose validation targets are one-valued" grep -q 'c1_y.*validation stream: threshold left at the default' "$T/got.json"
"$PY" "$REF" gen-class "$T/mc.bmr" --task multiclass --kind ties --n 100 --c 3 --seed $((seed + 4))
check_fails "--thresholds-from refuses a multiclass stream" bm-score --thresholds-from "$T/val.bmr" "$T/mc.bmr"
"$PY" "$REF" gen-class "$T/val6.bmr" --task multilabel --n 50 --c 6 --seed 5
check_fails "--thresholds-from refuses a validation stream with other classes" bm-score --thresholds-from "$T/val6.bmr" "$T/test.bmr"

# bootstrap intervals: the same resamples replayed in Python (splitmix64)
bm-score --json --bootstrap 40 --seed $seed "$T/test.bmr" >"$T/got.json"
"$PY" "$REF" check "$T/test.bmr" "$T/got.json" --bootstrap 40 --seed $seed --what "bootstrap AUROC percentile intervals, 40 resamples"
OMP_NUM_THREADS=1 bm-score --json --bootstrap 40 --seed $seed "$T/test.bmr" >"$T/got1.json"
OMP_NUM_THREADS=3 bm-score --json --bootstrap 40 --seed $seed "$T/test.bmr" >"$T/got3.json"
check "the intervals do not depend on the number of threads" cmp "$T/got1.json" "$T/got3.json"
"$PY" "$REF" gen-class "$T/deg.bmr" --task multiclass --kind degenerate --n 60 --c 4 --seed $seed --source prob
bm-score --json --bootstrap 25 --seed 3 "$T/deg.bmr" >"$T/got.json"
"$PY" "$REF" check "$T/deg.bmr" "$T/got.json" --bootstrap 25 --seed 3 --what "bootstrap with a class that has no positives"
bm-score --json --bootstrap 25 --seed 4 "$T/deg.bmr" >"$T/got2.json"
check "another seed draws other resamples" sh -c "! cmp -s '$T/got.json' '$T/got2.json'"

# a pipe, the table, the notes
bm-score --json <"$T/deg.bmr" >"$T/pipe.json"
bm-score --json "$T/deg.bmr" >"$T/file.json"
check "a pipe and a file give the same JSON" cmp "$T/pipe.json" "$T/file.json"
bm-score "$T/deg.bmr" >"$T/table"
check "the table has a row per class, the averages and the confusion matrix" \
  sh -c "grep -q '^c0_x ' '$T/table' && grep -q '^c3_x ' '$T/table' && grep -q '^macro ' '$T/table' && grep -q '^micro ' '$T/table' && grep -q 'confusion matrix' '$T/table'"
check "the table says which class has no AUROC and why" grep -q 'class "c1_y": no positive targets: auc' "$T/table"
check "the JSON says it in notes" grep -q '"class \\"c1_y\\": no positive targets' "$T/file.json"

# plots: well-formed SVG, a curve per class with an AUROC, a cell per count
bm-score --plot "$T/p" "$T/deg.bmr" >/dev/null
check "--plot writes a ROC and a confusion SVG that parse as XML" "$PY" -c "
import xml.etree.ElementTree as E, sys
ns = '{http://www.w3.org/2000/svg}'
roc = E.parse('$T/p-roc.svg').getroot(); conf = E.parse('$T/p-confusion.svg').getroot()
curves = roc.findall(ns + 'polyline'); cells = [r for r in conf.findall(ns + 'rect') if r.get('stroke') == 'white']
texts = [t.text for t in conf.findall(ns + 'text')]
assert len(curves) == 3, len(curves)   # 4 classes, one without positives
assert len(cells) == 16, len(cells)
assert all(c.get('points').count(',') >= 2 for c in curves)
"
rm -f "$T"/p-*.svg
"$PY" "$REF" bad nan-score "$T/bad.bmr"
bm-score --plot "$T/p" "$T/bad.bmr" >/dev/null 2>&1
check "no plot is written for a bad stream" test ! -e "$T/p-roc.svg"
