#!/bin/sh
# tests/bench/run.sh - run every benchmark script tests/bench/*.sh (make bench).
# Numbers, not pass/fail; take them on a quiet machine.
here=$(cd "$(dirname "$0")" && pwd)
status=0
for b in "$here"/*.sh; do
  [ "$(basename "$b")" = run.sh ] && continue
  echo "== $(basename "$b")"
  sh "$b" || { echo "$(basename "$b") failed" >&2; status=1; }
done
exit $status
