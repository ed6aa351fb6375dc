#!/bin/sh
# tests/bench/run.sh - run every tests/bench/*_bench.sh (make bench).
here=$(cd "$(dirname "$0")" && pwd)
status=0
for b in "$here"/*_bench.sh; do
  echo "== $(basename "$b")"
  sh "$b" || status=1
done
exit $status
