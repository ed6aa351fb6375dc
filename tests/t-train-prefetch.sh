# t-train-prefetch.sh - bm-train --mode finetune reads the next batch on a
# worker thread while one computes (common/train_prefetch.c); with
# BM_TRAIN_PREFETCH=0 it reads each batch when it is needed. Both must be the
# same run, bit for bit: checkpoints (best and last, with the moments) and
# the log (but its timings), with random-resized crops (images larger than
# the model's), a short last batch, --accum, validation, --stop-after and
# --resume (whose first batch is read, not prefetched).
. "$BM_TESTS/lib.sh"
MODEL="$BM_TESTS/fixtures/tiny-model"
seed=$(od -An -N2 -tu2 /dev/urandom | tr -d ' ')
echo "# seed $seed"

$PY "$BM_TESTS/../examples/make_demo_data.py" "$T/HAM" --per-class 6 --seed "$seed" >/dev/null
# 56 > the model's 48: every training image is cropped, per record and epoch
bm-decode --format ham10000 --size 56 --split train --test-fraction 0.2 -q --max-warnings 0 "$T/HAM" >"$T/train.bmr" 2>/dev/null
bm-decode --format ham10000 --size 48 --split test --test-fraction 0.2 -q --max-warnings 0 "$T/HAM" >"$T/val.bmr" 2>/dev/null
FT="bm-train -q --mode finetune -m $MODEL --lr-encoder 1e-3 --lr-head 1e-2 --dropout 0.1 --seed $seed -j 2"

# the log without its timings
log_sans_time() { $PY -c "
import json, sys
for l in open(sys.argv[1]):
    j = json.loads(l); j.pop('samples_per_s', None); print(json.dumps(j, sort_keys=True))" "$1"; }

same_run() { # WHAT OPTIONS...: with and without prefetch, the same files
  what=$1; shift
  rm -f "$T"/p.* "$T"/s.*
  BM_TRAIN_PREFETCH=1 $FT "$@" --log "$T/p.log" -o "$T/p.safetensors" "$T/train.bmr" &&
    BM_TRAIN_PREFETCH=0 $FT "$@" --log "$T/s.log" -o "$T/s.safetensors" "$T/train.bmr"
  check "$what: trains with and without prefetch" test $? = 0
  check "  ... the same checkpoint, byte for byte" cmp "$T/p.safetensors" "$T/s.safetensors"
  check "  ... the same last checkpoint (with the moments)" cmp "$T/p.last.safetensors" "$T/s.last.safetensors"
  log_sans_time "$T/p.log" >"$T/p.steps"
  log_sans_time "$T/s.log" >"$T/s.steps"
  check "  ... the same log ($(grep -c grad_norm "$T/s.log") steps) but the timings" cmp "$T/p.steps" "$T/s.steps"
}
same_run "batches of 5 (the last one short), 3 epochs, --val" --batch 5 --epochs 3 --val "$T/val.bmr"
same_run "--accum 2 --batch 4 --fraction 0.6" --batch 4 --accum 2 --fraction 0.6 --epochs 2

# --stop-after then --resume, each way: the same as the other
for v in 1 0; do
  rm -f "$T"/r$v.*
  BM_TRAIN_PREFETCH=$v $FT --batch 6 --epochs 3 --stop-after 1 -o "$T/r$v.safetensors" "$T/train.bmr" &&
    BM_TRAIN_PREFETCH=$v bm-train -q -j 2 --mode finetune --resume "$T/r$v.last.safetensors" -o "$T/r$v.safetensors" "$T/train.bmr"
  check "--stop-after 1, --resume (BM_TRAIN_PREFETCH=$v)" test $? = 0
done
check "  ... the resumed runs' checkpoints are the same bytes" cmp "$T/r1.safetensors" "$T/r0.safetensors"
check "  ... and their last checkpoints" cmp "$T/r1.last.safetensors" "$T/r0.last.safetensors"
# the comparison can fail: one thing changed (the seed) is another run
$FT --batch 5 --epochs 1 -o "$T/o1.safetensors" "$T/train.bmr"
$FT --batch 5 --epochs 1 --seed $((seed + 1)) -o "$T/o2.safetensors" "$T/train.bmr"
check_fails "another --seed gives another checkpoint (cmp sees it)" cmp -s "$T/o1.safetensors" "$T/o2.safetensors"
