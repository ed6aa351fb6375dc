#!/bin/sh
# t-train-cuda.sh - bm-train --mode finetune --device cuda: the options'
# rules everywhere; without a GPU (or built without nvcc) the refusal (status
# 1, a clear message, nothing written); with one, on generated HAM10000-layout
# records: fp32 on the GPU gives the CPU's checkpoint within a tolerance (the
# same arithmetic in another summation order), bf16 learns, --resume goes on
# on the GPU, checkpoints move between the GPU and the CPU both ways, --accum
# accumulates on the GPU as the CPU does, and the batch prefetch changes no
# bit. --mode contrastive, fusion and regularized on the GPU (behind
# BM_CUDA_UNVERIFIED=1 until these checks have passed on a GPU): fp32 the
# CPU's steps to a tolerance, with --accum, patch dropout and learned prompts
# too, bf16 learns, --resume.
. "$BM_TESTS/lib.sh"
MODEL="$BM_TESTS/fixtures/tiny-model"
seed=$(od -An -N2 -tu2 /dev/urandom | tr -d ' ')

# the records: bm-decode where it exists; on the GPU machine (which cannot
# run bm-decode) those tests/gpu/pack.sh made into $BM_GPU/train-cuda
if command -v bm-decode >/dev/null 2>&1; then
  echo "# seed $seed"
  $PY "$BM_TESTS/../examples/make_demo_data.py" "$T/HAM" --per-class 40 --seed "$seed" >/dev/null
  for s in train val test; do
    bm-decode --format ham10000 --size 48 --split $s --test-fraction 0.2 --text -q --max-warnings 0 "$T/HAM" \
      >"$T/$s.bmr" 2>/dev/null
  done
  $PY "$BM_TESTS/../examples/make_demo_data.py" "$T/P" --dataset pairs --per-class 20 --seed "$seed" >/dev/null
  for s in train test; do
    bm-decode --format pairs --size 48 --split $s --test-fraction 0.3 -q --max-warnings 0 "$T/P/pairs.csv" \
      >"$T/pairs-$s.bmr" 2>/dev/null
  done
  D=$T
elif [ -f "${BM_GPU:-/nonexistent}/train-cuda/train.bmr" ]; then
  D=$BM_GPU/train-cuda
else
  echo "# skip: t-train-cuda.sh: no bm-decode and no \$BM_GPU/train-cuda records (tests/gpu/pack.sh makes them)"
  exit 0
fi
FT="bm-train -q --mode finetune -m $MODEL --batch 16 -j 2"

# the options, whatever the machine
check_refused() { # WHAT STATUS REGEX COMMAND...
  what=$1 want=$2 re=$3; shift 3
  "$@" >"$T/r.out" 2>"$T/r.err"
  got=$?
  if [ "$got" = "$want" ] && grep -Eq -- "$re" "$T/r.err"; then echo "ok - $what"; else
    echo "not ok - $what (status $got, wanted $want and /$re/)"; sed 's/^/#   /' "$T/r.err" | head -5; fi
}
check_refused "--device tpu: usage, status 2" 2 "--device: cpu, cuda or cuda:N, not tpu" \
  $FT --device tpu -o "$T/x.safetensors" "$D/train.bmr"
check_refused "--precision bf16 on the CPU: status 2" 2 "the CPU computes in fp32" \
  $FT --precision bf16 -o "$T/x.safetensors" "$D/train.bmr"
check_refused "--precision fp8: status 2" 2 "fp32, bf16 or fp16, not fp8" \
  $FT --device cuda --precision fp8 -o "$T/x.safetensors" "$D/train.bmr"
check_refused "--device cuda --mode fusion: status 2 until verified on a GPU" 2 \
  "mode fusion on a GPU is written but not yet verified on one; BM_CUDA_UNVERIFIED=1 runs it" \
  bm-train -q --mode fusion -m "$MODEL" --device cuda -o "$T/x.safetensors" "$D/train.bmr"
check_refused "--device cuda --mode contrastive: status 2 until verified on a GPU" 2 \
  "mode contrastive on a GPU is written but not yet verified on one; BM_CUDA_UNVERIFIED=1 runs it" \
  bm-train -q --mode contrastive -m "$MODEL" --device cuda -o "$T/x.safetensors" "$D/train.bmr"
check "no file was written by the refusals" sh -c "! ls '$T'/x* 2>/dev/null"
# the head of --mode linear trains on the CPU whatever --device says
bm-embed-img -q -m "$MODEL" <"$D/train.bmr" >"$T/emb.bmr"
check "--mode linear --device cuda:0 trains (on the CPU) and says so" sh -c "
  bm-train --mode linear --epochs 2 --device cuda:0 -o '$T/lin.safetensors' '$T/emb.bmr' 2>'$T/lin.err' &&
  grep -q 'mode linear trains its head on the CPU' '$T/lin.err'"
check "  ... its checkpoint names the device it ran on: cpu" $PY -c "
import json, struct
b = open('$T/lin.safetensors', 'rb').read(); n = struct.unpack('<Q', b[:8])[0]
o = json.loads(json.loads(b[8:8 + n])['__metadata__']['config'])['options']
assert o['device'] == 'cpu' and o['precision'] == 'fp32', o"

if ! bm-embed-img -q -m "$MODEL" --device cuda </dev/null >/dev/null 2>"$T/probe.err"; then
  mkdir "$T/ng"
  $FT --device cuda:0 --epochs 1 --log "$T/ng/log" -o "$T/ng/a.safetensors" "$D/train.bmr" 2>"$T/ng.err" >/dev/null
  check_eq "no GPU: --device cuda:0 exits 1" "$?" 1
  check "  ... saying why, naming cuda:0: $(head -c 160 "$T/ng.err")" \
    grep -Eq -- "--device cuda:0: (no GPU|built without CUDA|CUDA driver too old)" "$T/ng.err"
  check_eq "  ... and writes nothing (no checkpoint, no log)" "$(ls "$T/ng" | wc -l)" 0
  BM_CUDA_UNVERIFIED=1 bm-train -q --mode contrastive -m "$MODEL" --device cuda:0 --log "$T/ng/log" \
    -o "$T/ng/c.safetensors" "$D/train.bmr" 2>"$T/ng.err" >/dev/null
  check_eq "no GPU: BM_CUDA_UNVERIFIED=1 --mode contrastive --device cuda:0 exits 1" "$?" 1
  check "  ... saying why" grep -Eq -- "--device cuda:0: (no GPU|built without CUDA|CUDA driver too old)" "$T/ng.err"
  check_eq "  ... and writes nothing" "$(ls "$T/ng" | wc -l)" 0
  echo "# skip: bm-train --device cuda tests: $(sed 's/^[^:]*: //' "$T/probe.err" | head -1)"
  exit 0
fi

st_opts() { # CKPT: print the config's options.device/precision and epoch
  $PY -c "
import json, struct
b = open('$1', 'rb').read(); n = struct.unpack('<Q', b[:8])[0]
c = json.loads(json.loads(b[8:8 + n])['__metadata__']['config'])
print(c['options']['device'], c['options']['precision'], c['epoch'], c['step'])"
}
embed() { bm-embed-img -q -m "$1" <"$2" | bm-fuse -q -m "$1"; } # CKPT SET: img_emb and scores (logits), on the CPU

# (1) fp32 on the GPU = the CPU, to a tolerance: N AdamW steps (2 epochs of
# a few batches of 16) of a tiny tower whose GEMMs and reductions sum in
# another order (cuBLAS, double reductions). Measured on an H100 (8 steps):
# img_emb 3.0e-7, scores 1.3e-7 apart; the tolerance 1e-4 leaves room for
# AdamW, which turns a sign flip of a gradient near 0 into a 2 lr difference
SMALL="--epochs 2 --lr-encoder 1e-4 --lr-head 1e-3 --dropout 0.1 --seed 3 --fraction 0.3"
check "fp32: the CPU run" $FT $SMALL -o "$T/cpu.safetensors" --log "$T/cpu.log" "$D/train.bmr"
check "fp32: the same run with --device cuda --precision fp32" \
  $FT $SMALL --device cuda --precision fp32 -o "$T/g32.safetensors" --log "$T/g32.log" "$D/train.bmr"
N=$(grep -c grad_norm "$T/cpu.log") # steps of the 2 epochs
check_eq "  ... its checkpoint records the device and precision" "$(st_opts "$T/g32.safetensors")" "cuda fp32 2 $N"
check "  ... every step's loss within 1e-4 (relative) of the CPU's" $PY -c "
import json
a = [json.loads(l) for l in open('$T/cpu.log') if 'grad_norm' in l]
b = [json.loads(l) for l in open('$T/g32.log') if 'grad_norm' in l]
assert len(a) == len(b) == $N > 1, (len(a), len(b))
for x, y in zip(a, b):
    assert abs(x['loss'] - y['loss']) <= 1e-4 * abs(x['loss']), (x, y)
    assert abs(x['grad_norm'] - y['grad_norm']) <= 1e-3 * x['grad_norm'], (x, y)"
embed "$T/cpu.safetensors" "$D/test.bmr" >"$T/cpu-test.bmr"
embed "$T/g32.safetensors" "$D/test.bmr" >"$T/g32-test.bmr"
for tt in "img_emb 1e-4" "scores 1e-4"; do
  set -- $tt
  check "  ... its checkpoint's test $1 within $2 of the CPU checkpoint's" \
    $PY "$BM_TESTS/bmr_compare.py" "$T/g32-test.bmr" "$T/cpu-test.bmr" --tensors "$1" --tol "$2"
  echo "# $1: $($PY "$BM_TESTS/bmr_compare.py" "$T/g32-test.bmr" "$T/cpu-test.bmr" --tensors "$1" --tol 1 2>&1 | tail -1)"
done

# (2) bf16 (the default on a GPU) learns
LEARN="--epochs 12 --lr-encoder 3e-3 --lr-head 3e-2 --warmup 10"
check "bf16: trains with --val" $FT $LEARN --device cuda --val "$D/val.bmr" --select accuracy -o "$T/bf.safetensors" \
  --log "$T/bf.log" "$D/train.bmr"
check_eq "  ... bf16 is the default on a GPU" "$(st_opts "$T/bf.safetensors" | cut -d' ' -f1-2)" "cuda bf16"
embed "$T/bf.safetensors" "$D/test.bmr" | bm-score -j >"$T/bf.json"
acc=$($PY -c "import json; print(json.load(open('$T/bf.json'))['accuracy'])")
check "  ... test accuracy (the CPU pipeline on its checkpoint) $acc >= 0.5 (chance 1/7)" \
  $PY -c "import sys; sys.exit(not float('$acc') >= 0.5)"
embed "$T/bf.last.safetensors" "$D/val.bmr" | bm-score -j >"$T/bv.json"
check "  ... its last validation AUC (bf16 logits) within 0.05 of the CPU pipeline's (fp32) on its checkpoint" $PY -c "
import json
last = [json.loads(l) for l in open('$T/bf.log') if 'val' in json.loads(l)][-1]['val']
s = json.load(open('$T/bv.json'))
assert abs(last['auc_macro'] - s['auc_macro']) < 0.05, (last, s)"

# (3) --resume on the GPU goes on, and checkpoints cross between devices
check "resume: 1 epoch of 2 on the GPU (--stop-after 1)" \
  $FT $SMALL --device cuda --precision fp32 --stop-after 1 -o "$T/r.safetensors" "$D/train.bmr"
check "  ... --resume on the GPU ends the run" \
  bm-train -q --mode finetune --device cuda --precision fp32 --resume "$T/r.last.safetensors" -o "$T/r.safetensors" "$D/train.bmr"
check_eq "  ... at epoch 2, step $N" "$(st_opts "$T/r.last.safetensors")" "cuda fp32 2 $N"
embed "$T/r.safetensors" "$D/test.bmr" >"$T/r-test.bmr"
check "  ... its checkpoint = the uninterrupted GPU run's (img_emb 1e-4)" \
  $PY "$BM_TESTS/bmr_compare.py" "$T/r-test.bmr" "$T/g32-test.bmr" --tensors img_emb --tol 1e-4
check "a GPU checkpoint resumes on the CPU" \
  $FT $SMALL --device cuda --precision fp32 --stop-after 1 -o "$T/gc.safetensors" "$D/train.bmr"
check "  ... --resume without --device" bm-train -q --mode finetune --resume "$T/gc.last.safetensors" -o "$T/gc.safetensors" "$D/train.bmr"
check_eq "  ... ends at epoch 2 on the cpu" "$(st_opts "$T/gc.last.safetensors")" "cpu fp32 2 $N"
embed "$T/gc.safetensors" "$D/test.bmr" >"$T/gc-test.bmr"
check "  ... close to the all-CPU run (img_emb 1e-3)" \
  $PY "$BM_TESTS/bmr_compare.py" "$T/gc-test.bmr" "$T/cpu-test.bmr" --tensors img_emb --tol 1e-3
check "a CPU checkpoint resumes on the GPU" $FT $SMALL --stop-after 1 -o "$T/cg.safetensors" "$D/train.bmr"
check "  ... --resume --device cuda (bf16)" \
  bm-train -q --mode finetune --device cuda --resume "$T/cg.last.safetensors" -o "$T/cg.safetensors" "$D/train.bmr"
check_eq "  ... ends at epoch 2 on the GPU" "$(st_opts "$T/cg.last.safetensors")" "cuda bf16 2 $N"

# (4) --accum on the GPU (the gradient accumulates on the device): fp32
# --batch 8 --accum 2 trains on the same groups as the CPU's --batch 16 run
# of (1), and --batch 5 --accum 3 (a last group of 5 + 2 records: unequal
# weights) as the CPU's same options; the log's loss (the group's mean) and
# grad_norm mean the same as on the CPU
steps_close() { # LOG_A LOG_B: same steps, losses 1e-4, grad norms 1e-3 (relative)
  $PY -c "
import json
a = [json.loads(l) for l in open('$1') if 'grad_norm' in l]
b = [json.loads(l) for l in open('$2') if 'grad_norm' in l]
assert len(a) == len(b) > 1, (len(a), len(b))
for x, y in zip(a, b):
    assert x['step'] == y['step'], (x, y)
    assert abs(x['loss'] - y['loss']) <= 1e-4 * abs(y['loss']), (x, y)
    assert abs(x['grad_norm'] - y['grad_norm']) <= 1e-3 * y['grad_norm'], (x, y)"
}
check "--accum 2 --batch 8 --device cuda --precision fp32" \
  $FT $SMALL --batch 8 --accum 2 --device cuda --precision fp32 -o "$T/ga.safetensors" --log "$T/ga.log" "$D/train.bmr"
check "  ... every step's loss and grad_norm as the CPU's --batch 16 run" steps_close "$T/ga.log" "$T/cpu.log"
embed "$T/ga.safetensors" "$D/test.bmr" >"$T/ga-test.bmr"
check "  ... its checkpoint's test img_emb within 1e-4 of the CPU --batch 16 checkpoint's" \
  $PY "$BM_TESTS/bmr_compare.py" "$T/ga-test.bmr" "$T/cpu-test.bmr" --tensors img_emb --tol 1e-4
echo "# accum img_emb: $($PY "$BM_TESTS/bmr_compare.py" "$T/ga-test.bmr" "$T/cpu-test.bmr" --tensors img_emb --tol 1 2>&1 | tail -1)"
check "--batch 5 --accum 3 on the CPU" $FT $SMALL --batch 5 --accum 3 -o "$T/c53.safetensors" --log "$T/c53.log" "$D/train.bmr"
check "  ... and on the GPU (fp32)" \
  $FT $SMALL --batch 5 --accum 3 --device cuda --precision fp32 -o "$T/g53.safetensors" --log "$T/g53.log" "$D/train.bmr"
check "  ... every step's loss and grad_norm as the CPU's" steps_close "$T/g53.log" "$T/c53.log"
embed "$T/c53.safetensors" "$D/test.bmr" >"$T/c53-test.bmr"
embed "$T/g53.safetensors" "$D/test.bmr" >"$T/g53-test.bmr"
check "  ... test img_emb within 1e-4 of the CPU checkpoint's" \
  $PY "$BM_TESTS/bmr_compare.py" "$T/g53-test.bmr" "$T/c53-test.bmr" --tensors img_emb --tol 1e-4
check_fails "  ... which --batch 5 without --accum is not (the comparison can fail)" sh -c "
  $FT $SMALL --batch 5 --device cuda --precision fp32 -o '$T/g5.safetensors' --log '$T/g5.log' '$D/train.bmr' &&
  embed '$T/g5.safetensors' '$D/test.bmr' >'$T/g5-test.bmr' &&
  $PY '$BM_TESTS/bmr_compare.py' '$T/g5-test.bmr' '$T/c53-test.bmr' --tensors img_emb --tol 1e-4"
check "bf16 --accum 2 --batch 8 trains, resumes (--stop-after 1, --resume with the checkpoint's --accum)" sh -c "
  $FT $SMALL --batch 8 --accum 2 --device cuda --stop-after 1 -o '$T/ba.safetensors' '$D/train.bmr' &&
  bm-train -q --mode finetune --device cuda --resume '$T/ba.last.safetensors' -o '$T/ba.safetensors' '$D/train.bmr'"
check_eq "  ... to epoch 2, step $N (groups of 16)" "$(st_opts "$T/ba.last.safetensors")" "cuda bf16 2 $N"

# (5) the prefetch (the next batch read on the CPU while the GPU computes,
# into page-locked buffers) changes no bit: bf16 with BM_TRAIN_PREFETCH=0
# twice (does the GPU repeat itself?) and with prefetch
for v in 0 0b 1; do
  BM_TRAIN_PREFETCH=${v%b} $FT $SMALL --batch 8 --device cuda -o "$T/pf$v.safetensors" --log "$T/pf$v.log" "$D/train.bmr"
done
sans_time() { $PY -c "
import json, sys
for l in open(sys.argv[1]):
    j = json.loads(l); j.pop('samples_per_s', None); print(json.dumps(j, sort_keys=True))" "$1"; }
if cmp -s "$T/pf0.safetensors" "$T/pf0b.safetensors"; then
  check "prefetch on the GPU: the same checkpoint bytes as serial reads" cmp "$T/pf1.safetensors" "$T/pf0.safetensors"
  check "  ... and the same last checkpoint" cmp "$T/pf1.last.safetensors" "$T/pf0.last.safetensors"
  sans_time "$T/pf1.log" >"$T/pf1.steps"
  sans_time "$T/pf0.log" >"$T/pf0.steps"
  check "  ... and the same log but the timings" cmp "$T/pf1.steps" "$T/pf0.steps"
else
  echo "# the GPU does not repeat itself bit for bit (two serial runs differ): prefetch compared to a tolerance"
  embed "$T/pf0.safetensors" "$D/test.bmr" >"$T/pf0-test.bmr"
  embed "$T/pf1.safetensors" "$D/test.bmr" >"$T/pf1-test.bmr"
  check "prefetch on the GPU: test img_emb within 1e-2 of the serial run's" \
    $PY "$BM_TESTS/bmr_compare.py" "$T/pf1-test.bmr" "$T/pf0-test.bmr" --tensors img_emb --tol 1e-2
  check "  ... the first step's loss the same" $PY -c "
import json
a = [json.loads(l) for l in open('$T/pf1.log') if 'grad_norm' in l]
b = [json.loads(l) for l in open('$T/pf0.log') if 'grad_norm' in l]
assert len(a) == len(b) and a[0]['loss'] == b[0]['loss'], (a[0], b[0])"
fi

# (6) --mode contrastive on the GPU (both towers and AdamW there, the CLIP
# loss on the CPU): fp32 = the CPU to a tolerance, step by step (loss 1e-4,
# grad_norm 1e-3 relative) and in the checkpoints' embeddings of held-out
# pairs (1e-4); the same with --accum 2 and with patch dropout; bf16 learns;
# --resume on the GPU ends where the uninterrupted run does
CL="bm-train -q --mode contrastive -m $MODEL -j 2 --epochs 2 --batch 16 --lr 1e-4 --warmup 2 --seed 5"
export BM_CUDA_UNVERIFIED=1
pair_emb() { # CKPT -> both embeddings of the held-out pairs, on the CPU
  bm-embed-img -q -m "$1" <"$D/pairs-test.bmr" | bm-embed-txt -q -m "$1"; }
for v in "plain:" "accum:--batch 8 --accum 2" "pdrop:--patch-dropout 0.5"; do
  name=${v%%:*} opts=${v#*:}
  check "contrastive $name: the CPU run" $CL $opts -o "$T/cc-$name.safetensors" --log "$T/cc-$name.log" "$D/pairs-train.bmr"
  check "  ... --device cuda --precision fp32" \
    $CL $opts --device cuda --precision fp32 -o "$T/gc-$name.safetensors" --log "$T/gc-$name.log" "$D/pairs-train.bmr"
  check "  ... every step's loss and grad_norm as the CPU's" steps_close "$T/gc-$name.log" "$T/cc-$name.log"
  pair_emb "$T/cc-$name.safetensors" >"$T/cc-$name-test.bmr"
  pair_emb "$T/gc-$name.safetensors" >"$T/gc-$name-test.bmr"
  check "  ... its checkpoint's held-out img_emb and txt_emb within 1e-4 of the CPU checkpoint's" \
    $PY "$BM_TESTS/bmr_compare.py" "$T/gc-$name-test.bmr" "$T/cc-$name-test.bmr" --tensors img_emb,txt_emb --tol 1e-4
done
check "contrastive bf16 on the GPU learns: 10 epochs at lr 1e-3" \
  bm-train -q --mode contrastive -m "$MODEL" --epochs 10 --batch 16 --lr 1e-3 --warmup 2 --device cuda \
  -o "$T/gb.safetensors" --log "$T/gb.log" "$D/pairs-train.bmr"
# (on the CPU, 5 data seeds: the last epoch at 33-81% of the first)
check "  ... the last epoch's training loss below 90% of the first's" $PY -c "
import json
e = [json.loads(l)['train_loss'] for l in open('$T/gb.log') if 'train_loss' in l]
assert len(e) == 10 and e[-1] < 0.9 * e[0], e"
check "contrastive --resume on the GPU: 1 epoch of 2, then --resume" sh -c "
  $CL --device cuda --precision fp32 --stop-after 1 -o '$T/gr.safetensors' '$D/pairs-train.bmr' &&
  bm-train -q --mode contrastive --device cuda --precision fp32 --resume '$T/gr.last.safetensors' \
    -o '$T/gr.safetensors' '$D/pairs-train.bmr'"
pair_emb "$T/gr.safetensors" >"$T/gr-test.bmr"
check "  ... its held-out embeddings within 1e-4 of the uninterrupted GPU run's" \
  $PY "$BM_TESTS/bmr_compare.py" "$T/gr-test.bmr" "$T/gc-plain-test.bmr" --tensors img_emb,txt_emb --tol 1e-4

# (7) --mode fusion and regularized on the GPU (towers, fusion and AdamW
# there; dropout, head and loss on the CPU): fp32 = the CPU step by step
# (loss 1e-4, grad_norm 1e-3 relative) and in the documented pipeline's test
# scores of both checkpoints (1e-4); concatenated fusion on the records'
# text, averaged fusion on learned prompts alone (dctx through the text
# tower), prompts + text with --accum 2 and partly frozen towers
FU="bm-train -q -m $MODEL -j 2 --epochs 2 --batch 16 --lr-encoder 1e-4 --lr-head 1e-3 --fusion-layers 1 \
  --fusion-heads 2 --dropout 0.1 --seed 4 --fraction 0.4"
fuse_scores() { # CKPT SET
  bm-embed-img -q -m "$1" --tokens <"$2" | bm-embed-txt -q -m "$1" --tokens | bm-fuse -q -m "$1"; }
for v in "fusion:--mode fusion" "reg-prompt:--mode regularized --text prompt --n-ctx 4" \
  "reg-both-accum:--mode regularized --text both --n-ctx 2 --batch 8 --accum 2 --unlock-last 1 --unlock-text-last 1"; do
  name=${v%%:*} opts=${v#*:}
  check "$name: the CPU run" $FU $opts -o "$T/cf-$name.safetensors" --log "$T/cf-$name.log" "$D/train.bmr"
  check "  ... --device cuda --precision fp32" \
    $FU $opts --device cuda --precision fp32 -o "$T/gf-$name.safetensors" --log "$T/gf-$name.log" "$D/train.bmr"
  check "  ... every step's loss and grad_norm as the CPU's" steps_close "$T/gf-$name.log" "$T/cf-$name.log"
  fuse_scores "$T/cf-$name.safetensors" "$D/test.bmr" >"$T/cf-$name-test.bmr"
  fuse_scores "$T/gf-$name.safetensors" "$D/test.bmr" >"$T/gf-$name-test.bmr"
  check "  ... the pipeline's test scores of its checkpoint within 1e-4 of the CPU checkpoint's" \
    $PY "$BM_TESTS/bmr_compare.py" "$T/gf-$name-test.bmr" "$T/cf-$name-test.bmr" --tensors scores --tol 1e-4
done
check "fusion bf16 on the GPU learns (10 epochs, as t-train-fusion.sh on the CPU)" \
  bm-train -q -m "$MODEL" --mode fusion --epochs 10 --batch 16 --lr-encoder 3e-3 --lr-head 3e-3 --device cuda \
  --val "$D/val.bmr" -o "$T/gfb.safetensors" "$D/train.bmr"
fuse_scores "$T/gfb.safetensors" "$D/test.bmr" | bm-score -j >"$T/gfb.json"
acc=$($PY -c "import json; print(json.load(open('$T/gfb.json'))['accuracy'])")
check "  ... test accuracy through the pipeline $acc >= 0.5 (chance 1/7)" $PY -c "import sys; sys.exit(not float('$acc') >= 0.5)"
check "regularized --resume on the GPU: 1 epoch of 2, then --resume" sh -c "
  $FU --mode regularized --text prompt --n-ctx 4 --device cuda --precision fp32 --stop-after 1 \
    -o '$T/gfr.safetensors' '$D/train.bmr' &&
  bm-train -q -j 2 --mode regularized --device cuda --precision fp32 --resume '$T/gfr.last.safetensors' \
    -o '$T/gfr.safetensors' '$D/train.bmr'"
fuse_scores "$T/gfr.safetensors" "$D/test.bmr" >"$T/gfr-test.bmr"
check "  ... its test scores within 1e-4 of the uninterrupted GPU run's" \
  $PY "$BM_TESTS/bmr_compare.py" "$T/gfr-test.bmr" "$T/gf-reg-prompt-test.bmr" --tensors scores --tol 1e-4
