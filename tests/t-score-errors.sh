#!/bin/sh
# bm-score on bad input: a message naming the input and the record on
# stderr, exit status 1, nothing on stdout; usage errors exit 2.
. "$BM_TESTS/lib.sh"
REF="$BM_TESTS/ref/score_ref.py"

bad_case() { # kind expected-message-regex
  "$PY" "$REF" bad "$1" "$T/bad.bmr"
  echo poison >"$T/out"
  bm-score --json "$T/bad.bmr" >"$T/out" 2>"$T/err"
  rc=$?
  if [ $rc -eq 1 ] && [ ! -s "$T/out" ] && grep -Eq -- "$2" "$T/err"; then echo "ok - $1: exit 1, no output, says: $(cat "$T/err")"
  else echo "not ok - $1: exit $rc, $(wc -c <"$T/out") bytes on stdout, stderr: $(cat "$T/err")"; fi
}
bad_case no-target 'bad\.bmr: record 3 \(byte [0-9]+\): no "target"'
bad_case no-scores 'bad\.bmr: record 3 .*no "scores" or "prob"'
bad_case short-scores 'bad\.bmr: record 3 .*"scores" has 2 values, expected 3'
bad_case nan-score 'bad\.bmr: record 3 .*"scores"\[1\] is nan: not a finite number'
bad_case inf-score 'bad\.bmr: record 3 .*"scores"\[2\] is inf: not a finite number'
bad_case half-target 'bad\.bmr: record 3 .*"target"\[0\] is 0\.5: targets must be 0 or 1'
bad_case two-hot 'bad\.bmr: record 3 .*"target" has 2 ones: a multiclass target is one-hot'
bad_case prob-range 'bad\.bmr: record 3 .*"prob"\[1\] is 1\.5: not a probability'
bad_case bad-tensor 'bad\.bmr: record 3 .*"scores": data has 5 bytes'
bad_case class-count 'bad\.bmr: record 1 .*"target" has 3 values, expected 4 \(the header names 4 classes\)'
bad_case dup-class 'bad\.bmr: header "classes" names "a" twice'
bad_case empty 'bad\.bmr: empty stream'
bad_case no-task 'bad\.bmr: the header names no task'
bad_case emb-width 'bad\.bmr: record 3 .*"txt_emb" has 3 values, expected 4'

: >"$T/zero.bmr"
bm-score "$T/zero.bmr" >"$T/out" 2>"$T/err"
check_eq "an empty file: exit 1" "$? $(wc -c <"$T/out")" "1 0"
"$PY" "$REF" gen-class "$T/ok.bmr" --task multiclass --n 20 --c 3 --seed 1
head -c 300 "$T/ok.bmr" | bm-score --json >"$T/out" 2>"$T/err"
check_eq "a truncated pipe: exit 1, nothing on stdout" "$? $(wc -c <"$T/out")" "1 0"
check "a truncated pipe names stdin" grep -q '<stdin>: record' "$T/err"
bm-score --task multilabel --json "$T/ok.bmr" >"$T/out" 2>"$T/err"
check_eq "--task multilabel on one-hot targets works" "$?" "0"
"$PY" "$REF" bad no-task "$T/nt.bmr"
check "--task fills in a header without one" bm-score --task multiclass "$T/nt.bmr"

bm-score --bogus >"$T/out" 2>&1
check_eq "an unknown option: exit 2" "$?" "2"
for args in "--threshold 1.5" "--threshold-metric auc" "--bootstrap -1" "--ties random" "--task binary" "--block 0"; do
  bm-score $args "$T/ok.bmr" >"$T/out" 2>&1
  check_eq "bm-score $args: exit 2" "$?" "2"
done
bm-score "$T/ok.bmr" "$T/ok.bmr" >/dev/null 2>&1
check_eq "two streams: exit 2" "$?" "2"
bm-score --aggregate >/dev/null 2>&1
check_eq "--aggregate with no files: exit 2" "$?" "2"
bm-score "$T/missing.bmr" >/dev/null 2>"$T/err"
check_eq "a missing file: exit 1" "$?" "1"
check "a missing file is named" grep -q 'missing\.bmr' "$T/err"
bm-score --help >"$T/out"
check_eq "--help: exit 0" "$?" "0"
check "--help prints usage on stdout" grep -q '^Usage: bm-score' "$T/out"
