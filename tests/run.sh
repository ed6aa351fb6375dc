#!/bin/sh
# tests/run.sh - run every test and count its checks.
# A test is a C program $BM_BUILD/tests/test_* or a script tests/t-*.sh. Each
# prints one line per check: "ok - what" or "not ok - what". A test that exits
# non-zero without printing a failed check counts as one failed check.
# Run one test: sh tests/run.sh tests/t-records.sh
: "${BM_BIN:?set BM_BIN}" "${BM_BUILD:?set BM_BUILD}"
PY=${PY:-/usr/bin/python3}
export BM_BIN BM_BUILD PY
here=$(cd "$(dirname "$0")" && pwd)
export BM_TESTS="$here"
passed=0
failed=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT

if [ $# -gt 0 ]; then tests="$*"; else
  tests="$(ls "$BM_BUILD"/tests/test_* 2>/dev/null | grep -v '\.d$') $(ls "$here"/t-*.sh)"
fi
for t in $tests; do
  name=$(basename "$t")
  start=$(date +%s)
  case "$t" in
  *.sh) sh "$t" >"$log" 2>&1 ;;
  *) "$t" >"$log" 2>&1 ;;
  esac
  rc=$?
  ok=$(grep -c '^ok' "$log")
  bad=$(grep -c '^not ok' "$log")
  if [ "$rc" -ne 0 ] && [ "$bad" -eq 0 ]; then bad=1; echo "not ok - $name exited with status $rc" >>"$log"; fi
  passed=$((passed + ok))
  failed=$((failed + bad))
  secs=$(( $(date +%s) - start ))
  if [ "$bad" -gt 0 ]; then
    echo "FAIL $name ($ok passed, $bad failed, ${secs}s)"
    sed 's/^/    /' "$log" | tail -n 60
  else
    echo "pass $name ($ok checks, ${secs}s)"
  fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
