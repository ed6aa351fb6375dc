#!/bin/sh
# tests/bench/run.sh - run every tests/bench/*_bench.sh (make bench), or only
# those whose name contains $BENCH (make bench BENCH=embed). Benchmarks print
# numbers; they do not pass or fail. Run them on a quiet machine.
here=$(cd "$(dirname "$0")" && pwd)
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB"
status=0
for b in "$here"/*_bench.sh; do
  case "$(basename "$b")" in *"${BENCH:-}"*) ;; *) continue ;; esac
  echo "== $(basename "$b")"
  sh "$b" || { echo "$(basename "$b") exited with status $?"; status=1; }
done
exit $status
