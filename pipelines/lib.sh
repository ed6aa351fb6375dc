# pipelines/lib.sh - sourced by the pipeline scripts (POSIX sh).
# Sets $prog from the script's name; gives progress lines, clear errors and
# the checks every script makes before it starts.

prog=$(basename "$0" .sh)
pipelines_dir=$(cd "$(dirname "$0")" && pwd)
PYTHON=${PYTHON:-python3}

die() { printf '%s: %s\n' "$prog" "$*" >&2; exit 1; }
usage_die() { printf '%s: %s\n(try %s --help)\n' "$prog" "$*" "$prog" >&2; exit 2; }
# one line per step on stderr, with the time since the start
t0=$(date +%s)
step() { printf '%s: [%4ds] %s\n' "$prog" $(( $(date +%s) - t0 )) "$*" >&2; }

# need PROGRAM...: each must be on PATH
need() {
  for p in "$@"; do
    command -v "$p" >/dev/null 2>&1 || die "$p not found on PATH (build with make and add bin/ to PATH)"
  done
}
need_dir() { [ -d "$1" ] || die "$2 $1: no such folder"; }
# need_model PATH: a hub folder, a .bin or a .safetensors
need_model() { [ -e "$1" ] || die "model $1: no such folder or file"; }

# the image size of a model folder (open_clip_config.json's vision_cfg.image_size),
# 224 when it says nothing
model_size() {
  cfg=$1/open_clip_config.json
  if [ -f "$cfg" ]; then
    s=$(tr -d ' \n' <"$cfg" | sed -n 's/.*"image_size":\([0-9]*\).*/\1/p')
    [ -n "$s" ] && { echo "$s"; return; }
  fi
  echo 224
}

# run WHAT COMMAND...: a step that must work; on failure say which step failed
run() {
  what=$1; shift
  "$@" || die "step failed: $what (exit $?)"
}

# in_list WORD "LIST": WORD is one of the space-separated words of LIST
in_list() { case " $2 " in *" $1 "*) return 0 ;; esac; return 1; }

# Pipes: POSIX sh has no pipefail, so each stage of a pipe that must work is
# run as `st CMD...`, which records a failure in $failed_stages; after the
# pipe (ended by `|| :` so that set -e leaves the verdict to it), `pipe_ok
# WHAT` stops the script, naming every stage that failed.
failed_stages=${TMPDIR:-/tmp}/bm-pipeline-$$.failed
trap 'rm -f "$failed_stages"' EXIT
st() { "$@" || { echo "$1 (exit $?)" >>"$failed_stages"; exit 1; }; }
pipe_ok() {
  if [ -s "$failed_stages" ]; then
    f=$(tr '\n' ' ' <"$failed_stages"); rm -f "$failed_stages"
    die "step failed: $1: $f"
  fi
}

# decode_splits FORMAT DATA_DIR D SIZE "SPLITS" [bm-decode options...]:
# D/SPLIT.bmr for each split, with the metadata text; a file that exists is
# finished (written under a temporary name, then renamed), so a rerun skips it
decode_splits() {
  fmt=$1 dd=$2 dst=$3 sz=$4 splits=$5; shift 5
  for split in $splits; do
    [ -s "$dst/$split.bmr" ] && continue
    step "decode $fmt $split (size $sz)"
    run "bm-decode --format $fmt --split $split" bm-decode -q --format "$fmt" --size "$sz" \
      --split "$split" --max-warnings 10 "$@" -o "$dst/$split.bmr.tmp" "$dd"
    mv "$dst/$split.bmr.tmp" "$dst/$split.bmr"
  done
}

# embed_splits MODEL D "SPLITS" [thread options]: D/SPLIT-emb.bmr with img_emb
# and (where the records have text) txt_emb of the frozen towers
embed_splits() {
  mdl=$1 dst=$2 splits=$3; shift 3
  for split in $splits; do
    [ -s "$dst/$split-emb.bmr" ] && continue
    step "embed $split with the frozen towers"
    st bm-embed-img -q -m "$mdl" "$@" "$dst/$split.bmr" | st bm-embed-txt -q -m "$mdl" "$@" >"$dst/$split-emb.bmr.tmp" || :
    pipe_ok "embed $split"
    mv "$dst/$split-emb.bmr.tmp" "$dst/$split-emb.bmr"
  done
}
