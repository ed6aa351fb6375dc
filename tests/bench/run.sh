#!/bin/sh
# tests/bench/run.sh - run every tests/bench/*_bench.sh (make bench).
# Benchmarks print numbers; they do not pass or fail.
here=$(cd "$(dirname "$0")" && pwd)
for b in "$here"/*_bench.sh; do
  [ -f "$b" ] || continue
  echo "== $(basename "$b")"
  sh "$b" || echo "$(basename "$b") exited with status $?"
done
