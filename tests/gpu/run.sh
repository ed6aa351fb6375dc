#!/bin/sh
# Runs ON the GPU machine, from the repository root, with what pack.sh put
# into .gpu/ (never builds there). Parts, in any order (default: all three):
#   tests      the GPU unit tests and the t-*cuda*.sh shell tests (t-train-cuda.sh too)
#   sanitizer  compute-sanitizer memcheck and racecheck on the kernel tests
#   bench      every tests/gpu/bench_*.sh
#   sh tests/gpu/run.sh tests            (each part fits in a 10-minute call)
# Logs go to $OUT (or gpu-out/); a summary table is printed last.
# To add tests: GPU_TESTS / GPU_SAN_TESTS below take more files (or set them
# in the environment); a new tests/gpu/bench_*.sh is picked up by itself.
set -u
root=$PWD
G=$root/.gpu
[ -d "$G/bin" ] || { echo "run.sh: no .gpu/ here: run tests/gpu/pack.sh first and carry .gpu" >&2; exit 1; }
export LD_LIBRARY_PATH="$G/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PYTHONPATH="$G/py${PYTHONPATH:+:$PYTHONPATH}"
export BM_BIN="$G/bin" BM_BUILD="$G" BM_GPU="$G" PY="${PY:-python3}"
export PATH="$G/bin:$PATH:/usr/local/cuda/bin"
OUT=${OUT:-$root/gpu-out}
export OUT
mkdir -p "$OUT"
GPU_TESTS=${GPU_TESTS:-"$(ls $G/tests/test_cuda_* 2>/dev/null) $(ls $root/tests/t-*cuda*.sh 2>/dev/null)"}
GPU_SAN_TESTS=${GPU_SAN_TESTS:-"$(ls $G/tests/test_cuda_* 2>/dev/null)"}
summary=$OUT/summary.txt
: > "$summary"
say() { echo "$*" | tee -a "$summary" >/dev/null; }

nvidia-smi -L > "$OUT/gpu.txt" 2>&1 || echo "nvidia-smi failed" >> "$OUT/gpu.txt"
missing=$(ldd $G/bin/* $G/tests/* 2>/dev/null | grep "not found" | sort -u)
if [ -n "$missing" ]; then
  echo "run.sh: libraries missing on this machine (add them to pack.sh):" >&2
  echo "$missing" >&2
  exit 1
fi
say "$(printf '%-28s %s' part result)"
say "$(printf '%-28s %s' gpu "$(head -1 "$OUT/gpu.txt")")"

for part in ${*:-tests sanitizer bench}; do
  case $part in
  tests)
    sh tests/run.sh $GPU_TESTS > "$OUT/tests.log" 2>&1
    say "$(printf '%-28s %s' tests "$(tail -1 "$OUT/tests.log")")"
    grep -E "^(FAIL|pass)|# skip|# seed" "$OUT/tests.log" | sed 's/^/    /' >> "$summary"
    ;;
  sanitizer)
    for t in $GPU_SAN_TESTS; do
      for tool in memcheck racecheck; do
        log=$OUT/sanitizer-$tool-$(basename "$t").log
        BM_TEST_QUICK=1 compute-sanitizer --tool $tool --error-exitcode 99 --print-limit 20 "$t" > "$log" 2>&1
        rc=$?
        res=$(grep -E "ERROR SUMMARY|RACECHECK SUMMARY" "$log" | tail -1)
        nok=$(grep -c "^not ok" "$log")
        say "$(printf '%-28s rc %s, %s not ok, %s' "$tool $(basename "$t")" "$rc" "$nok" "${res:-no summary line}")"
      done
    done
    ;;
  bench)
    for b in tests/gpu/bench_*.sh; do
      n=$(basename "$b" .sh)
      sh "$b" > "$OUT/$n.log" 2>&1
      say "$(printf '%-28s rc %s' "$n" "$?")"
      sed 's/^/    /' "$OUT/$n.log" >> "$summary"
    done
    ;;
  *) echo "run.sh: unknown part $part (tests, sanitizer, bench)" >&2; exit 2 ;;
  esac
done
echo
cat "$summary"
