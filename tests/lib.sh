# tests/lib.sh - sourced by the shell tests.
#   check "what" command...        ok when the command exits 0
#   check_fails "what" command...  ok when it exits non-zero
#   check_eq "what" got expected
# $T is a fresh temporary folder removed at exit; programs are in $BM_BIN.
set -u
PATH="$BM_BIN:$PATH"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
check() {
  what=$1; shift
  if "$@" >"$T/.out" 2>&1; then echo "ok - $what"; else
    echo "not ok - $what"; sed 's/^/#   /' "$T/.out" | tail -n 20; fi
}
check_fails() {
  what=$1; shift
  if "$@" >"$T/.out" 2>&1; then echo "not ok - $what (expected failure, got success)"
    sed 's/^/#   /' "$T/.out" | tail -n 20; else echo "ok - $what"; fi
}
check_eq() {
  if [ "$2" = "$3" ]; then echo "ok - $1"; else
    echo "not ok - $1"; echo "#   got:      $2"; echo "#   expected: $3"; fi
}
# grep_in FILE PATTERN: the file has a line matching the extended regex
grep_in() { grep -Eq -- "$2" "$1"; }
# check_refused "what" STATUS 'message regex' command...: the command exits
# with STATUS, says something matching the regex on stderr, and leaves no
# $T/bad.safetensors or $T/bad.last.safetensors behind (bm-train's outputs
# in the tests that use it: nothing is written by a refused run).
check_refused() {
  what=$1 want=$2 msg=$3; shift 3
  rm -f "$T/bad.safetensors" "$T/bad.last.safetensors"
  "$@" >"$T/bad.out" 2>"$T/bad.err"
  check_eq "$what: status $want" "$?" "$want"
  check "  ... says: $msg" grep -Eq -- "$msg" "$T/bad.err"
  check "  ... writes nothing" test ! -e "$T/bad.safetensors" -a ! -e "$T/bad.last.safetensors"
}
