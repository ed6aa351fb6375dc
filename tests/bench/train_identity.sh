# train_identity.sh - bm-train's checkpoints, bit for bit, against another
# build of it (a refactor must not change a bit):
#   REF_BIN=/path/to/old/bin sh tests/bench/train_identity.sh
# REF_BIN holds the reference bm-train and bm-decode; NEW_BIN (default bin/)
# the ones to check. Prints "identical ..." per run; stops at the first
# difference (cmp says where). Six runs of linear and finetune (val, accum,
# dropout, fraction, init, unlock, freeze, crops) and two resumed runs.
if [ -z "${REF_BIN:-}" ]; then echo "train_identity: set REF_BIN to a reference build's bin/ (skipped)"; exit 0; fi
set -e
NEW_BIN=${NEW_BIN:-$(cd "$(dirname "$0")/../.." && pwd)/bin}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

W=$(cd "$(dirname "$0")/../.." && pwd); PY=${PY:-/usr/bin/python3}; G="$PY $W/tests/linear_gen.py"; MODEL=$W/tests/fixtures/tiny-model
D=$OUT/data; mkdir -p $D
$G data $D/tr.bmr 7 300 multiclass 5 32
$G data $D/va.bmr 8 100 multiclass 5 32
$G data $D/mtr.bmr 9 300 multilabel 4 24,16
$G data $D/mva.bmr 10 100 multilabel 4 24,16
$PY $W/examples/make_demo_data.py $D/HAM --per-class 10 --seed 3 >/dev/null
for s in train val; do PATH=$REF_BIN:$PATH bm-decode --format ham10000 --size 48 --split $s --test-fraction 0.2 -q --max-warnings 0 $D/HAM >$D/$s.bmr 2>/dev/null; done
$PY $W/examples/make_demo_data.py $D/HAM2 --per-class 8 --seed 4 >/dev/null
PATH=$REF_BIN:$PATH bm-decode --format ham10000 --size 56 --split train --test-fraction 0.2 -q --max-warnings 0 $D/HAM2 >$D/big.bmr 2>/dev/null
n=0
cmpone() { # args...
  n=$((n+1)); for v in ref new; do B=$REF_BIN/bm-train; [ $v = new ] && B=$NEW_BIN/bm-train
    mkdir -p $OUT/$v; $B -q "$@" -o $OUT/$v/c$n.safetensors --log $OUT/$v/c$n.log; done
  cmp $OUT/ref/c$n.safetensors $OUT/new/c$n.safetensors && cmp $OUT/ref/c$n.last.safetensors $OUT/new/c$n.last.safetensors && echo "identical $n: $*"
}
cmpone --mode linear --epochs 3 --lr 0.01 --warmup 5 --clip 1 --weight-decay 0.05 --seed 5 --batch 16 --val $D/va.bmr --select accuracy $D/tr.bmr
cmpone --mode linear --epochs 3 --features both --accum 2 --batch 8 --dropout 0.3 --fraction 0.5 --val $D/mva.bmr --select auc_macro $D/mtr.bmr
cmpone --mode linear --epochs 2 --features both --pos-weight none --init $OUT/ref/c1.safetensors --features img $D/tr.bmr
cmpone --mode finetune -m $MODEL --epochs 2 --batch 8 --lr-encoder 3e-3 --lr-head 3e-2 --warmup 3 -j 2 --val $D/val.bmr $D/train.bmr
cmpone --mode finetune -m $MODEL --epochs 2 --batch 4 --accum 2 --dropout 0.2 --unlock-last 1 --clip 1 -j 2 --weight-decay 0.1 $D/big.bmr
cmpone --mode finetune -m $MODEL --epochs 1 --batch 8 --freeze-tower -j 2 $D/train.bmr
# resume: stop after 1 epoch then resume
for v in ref new; do B=$REF_BIN/bm-train; [ $v = new ] && B=$NEW_BIN/bm-train
  $B -q --mode finetune -m $MODEL --epochs 3 --batch 8 -j 2 --val $D/val.bmr --stop-after 1 -o $OUT/$v/r.safetensors $D/train.bmr
  $B -q --mode finetune --resume $OUT/$v/r.last.safetensors -j 2 -o $OUT/$v/r.safetensors $D/train.bmr
  $B -q --mode linear --epochs 4 --stop-after 2 --batch 16 --val $D/mva.bmr --features both -o $OUT/$v/q.safetensors $D/mtr.bmr
  $B -q --mode linear --resume $OUT/$v/q.last.safetensors -o $OUT/$v/q.safetensors $D/mtr.bmr
done
for f in r.safetensors r.last.safetensors q.safetensors q.last.safetensors; do cmp $OUT/ref/$f $OUT/new/$f && echo "identical resumed $f"; done
