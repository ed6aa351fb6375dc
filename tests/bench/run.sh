#!/bin/sh
# tests/bench/run.sh - run every benchmark (tests/bench/*_bench.sh) in turn.
here=$(cd "$(dirname "$0")" && pwd)
for b in "$here"/*_bench.sh; do sh "$b" || echo "$(basename "$b") failed"; done
