# t-train-linear.sh - bm-train --mode linear: torch's losses, it learns
# (applied with bm-fuse -m, scored with bm-score), few-shot strata, resume to
# the same bits, determinism, and every bad input.
. "$BM_TESTS/lib.sh"
G="$PY $BM_TESTS/linear_gen.py"
FX="$BM_TESTS/fixtures/linear"
seed=$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')
echo "# seed $seed"

# (1) the same losses as PyTorch for 10 AdamW steps (fixture: tests/ref/make_linear_fixture.py)
for c in mc ml; do
  args=$($PY -c "import json,sys; print(' '.join(json.load(open(sys.argv[1]))['$c']['args']))" "$FX/ref.json")
  check "$c: 10 steps' losses within 1e-4 of torch" \
    sh -c "cd '$FX' && bm-train -q --mode linear -o '$T/$c.safetensors' --log '$T/$c.log' $args $c.bmr && $G parity '$T/$c.log' ref.json $c"
done
check "the checkpoint holds the head and the optimizer state under documented names" \
  sh -c "$G tensors '$T/ml.safetensors' | sort | tr '\n' ' ' | grep -qx 'head.bias f32 \[4\] head.weight f32 \[4, 16\] loss.pos_weight f32 \[4\] optim.m.head.bias f32 \[4\] optim.m.head.weight f32 \[4, 16\] optim.v.head.bias f32 \[4\] optim.v.head.weight f32 \[4, 16\] '"
check "  ... and the training state in its config" \
  sh -c "test \"\$($G config '$T/mc.safetensors' mode)\" = '\"linear\"' && test \"\$($G config '$T/mc.safetensors' step)\" = 10 && test \"\$($G config '$T/mc.safetensors' feature_dims)\" = '[12, 8]'"

# same_val CKPT LOG VAL: the last epoch's val metrics in LOG are what bm-score
# says of bm-fuse -m CKPT on VAL
same_val() {
  bm-fuse -q -m "$1" "$3" | bm-score -j >"$T/v.json" && $PY -c "
import json, sys
last = [json.loads(l) for l in open(sys.argv[1]) if 'val' in json.loads(l)][-1]['val']
s = json.load(open(sys.argv[2]))
for k in ('accuracy', 'balanced_accuracy', 'auc_macro'):
    assert abs(last[k] - s[k]) < 1e-12, (k, last[k], s[k])
print(last)" "$2" "$T/v.json"
}

# (2) it learns: separable classes, train / val / test parts of one generator
$G data "$T/tr.bmr" $seed 600 multiclass 5 32 --part=0
$G data "$T/va.bmr" $seed 150 multiclass 5 32 --part=1
$G data "$T/te.bmr" $seed 300 multiclass 5 32 --part=2
check "multiclass: trains with --val, select accuracy" \
  bm-train -q --mode linear -o "$T/a.safetensors" --val "$T/va.bmr" --select accuracy --lr 0.01 --epochs 4 --batch 32 --log "$T/a.log" "$T/tr.bmr"
check "  ... bm-fuse -m | bm-score: test accuracy >= 0.8 (chance 0.2)" \
  sh -c "bm-fuse -q -m '$T/a.safetensors' <'$T/te.bmr' | bm-score -j >'$T/a.json' && $G min-acc '$T/a.json' 0.8"
check "  ... its val metrics are bm-score's on bm-fuse -m output of the val file" same_val "$T/a.last.safetensors" "$T/a.log" "$T/va.bmr"
check "  ... the log has a line per step and per epoch with the val metrics" \
  sh -c "test \$(grep -c '\"samples_per_s\"' '$T/a.log') = 76 && test \$(grep -c '\"val\":{\"loss\":[0-9.e-]*,\"accuracy\":[0-9.]*,\"balanced_accuracy\":[0-9.]*,\"auc_macro\":' '$T/a.log') = 4"
$G data "$T/mtr.bmr" $((seed + 1)) 600 multilabel 4 24,16 --part=0
$G data "$T/mva.bmr" $((seed + 1)) 150 multilabel 4 24,16 --part=1
$G data "$T/mte.bmr" $((seed + 1)) 300 multilabel 4 24,16 --part=2
check "multilabel, --features both: trains" \
  bm-train -q --mode linear -o "$T/m.safetensors" --features both --val "$T/mva.bmr" --select auc_macro --lr 0.01 --epochs 4 --batch 32 --log "$T/m.log" "$T/mtr.bmr"
check "  ... its val metrics are bm-score's on bm-fuse -m output of the val file" same_val "$T/m.last.safetensors" "$T/m.log" "$T/mva.bmr"
check "  ... test auc_macro >= 0.85 (chance 0.5)" \
  sh -c "bm-fuse -q -m '$T/m.safetensors' '$T/mte.bmr' | bm-score -j >'$T/m.json' && $G min-acc '$T/m.json' 0.85"
check "  ... prob is the sigmoid of scores, the header has the head's task and classes" \
  sh -c "bm-fuse -q -m '$T/m.safetensors' '$T/mte.bmr' | $PY -c \"
import sys, numpy as np; sys.path.insert(0, '$BM_TESTS/../examples'); import read_records as rr
n = 0
for h, r in rr.read(sys.stdin.buffer):
    assert h['task'] == 'multilabel' and h['classes'] == ['class 0', 'class 1', 'class 2', 'class 3'] and h['head']['features'] == 'both'
    s = r['scores'].astype(np.float64)
    assert np.allclose(r['prob'], 1 / (1 + np.exp(-s)), rtol=1e-6, atol=1e-7)
    n += 1
assert n == 300\""
check "multiclass prob is the softmax of scores = x W^T + b" \
  sh -c "bm-fuse -q -m '$T/a.safetensors' '$T/te.bmr' | $PY -c \"
import sys, json, struct, numpy as np; sys.path.insert(0, '$BM_TESTS/../examples'); import read_records as rr
b = open('$T/a.safetensors', 'rb').read(); hl = struct.unpack('<Q', b[:8])[0]; hd = json.loads(b[8:8 + hl])
t = lambda k: np.frombuffer(b[8 + hl + hd[k]['data_offsets'][0]:8 + hl + hd[k]['data_offsets'][1]], '<f4').reshape(hd[k]['shape']).astype(np.float64)
W, bias = t('head.weight'), t('head.bias')
for h, r in rr.read(sys.stdin.buffer):
    s = W @ r['img_emb'].astype(np.float64) + bias
    assert np.allclose(r['scores'], s, rtol=1e-5, atol=1e-5), (r['scores'], s)
    p = np.exp(s - s.max()); p /= p.sum()
    assert np.allclose(r['prob'], p, rtol=1e-5, atol=1e-6)
\""

# early stopping: accuracy on 150 records stops improving long before 30 epochs
check "--patience 2 stops early" \
  sh -c "bm-train --mode linear -o '$T/p.safetensors' --val '$T/va.bmr' --select accuracy --patience 2 --epochs 30 --lr 0.01 --batch 32 --log '$T/p.log' '$T/tr.bmr' 2>'$T/p.err'"
stopped=$(sed -n 's/.*for 2 epochs: stopped after epoch \([0-9]*\)$/\1/p' "$T/p.err")
check "  ... after epoch $stopped, two epochs after the best, which OUT holds" \
  sh -c "test -n '$stopped' && test '$stopped' -lt 30 && test \"\$($G config '$T/p.safetensors' epoch)\" = \$(($stopped - 2)) && test \"\$($G config '$T/p.last.safetensors' finished)\" = true && test \$(grep -c train_loss '$T/p.log') = $stopped"

# few-shot subsets keep their strata
for f in 0.1 0.01; do
  check "--fraction $f multiclass: round(F n_k) per class, at least 1" \
    sh -c "bm-train -q --mode linear -o '$T/f.safetensors' --fraction $f --seed $seed --epochs 1 '$T/tr.bmr' && $G strata '$T/tr.bmr' '$T/f.safetensors' $f"
  check "--fraction $f multilabel: every class keeps a positive" \
    sh -c "bm-train -q --mode linear -o '$T/f.safetensors' --features both --fraction $f --seed $seed --epochs 1 '$T/mtr.bmr' && $G strata '$T/mtr.bmr' '$T/f.safetensors' $f"
done

# (3) resume: 4 epochs at once = 2 epochs, stop, --resume 2 more
R="--mode linear --val $T/mva.bmr --select loss --features both --epochs 4 --batch 48 --warmup 5 --clip 1 --weight-decay 0.05 --seed $seed -j 2"
check "4 epochs uninterrupted" bm-train -q $R -o "$T/full.safetensors" "$T/mtr.bmr"
check "2 epochs, then stopped" bm-train -q $R --stop-after 2 -o "$T/part.safetensors" "$T/mtr.bmr"
check "  ... the last checkpoint says epoch 2" sh -c "test \"\$($G config '$T/part.last.safetensors' epoch)\" = 2"
check "--resume 2 more (validating on the same file, its path from the checkpoint)" bm-train -q --mode linear --resume "$T/part.last.safetensors" -o "$T/part.safetensors" -j 2 "$T/mtr.bmr"
check "  ... last checkpoint: the same bits as the uninterrupted run" $G same "$T/full.last.safetensors" "$T/part.last.safetensors"
check "  ... best checkpoint too" $G same "$T/full.safetensors" "$T/part.safetensors"
check "resuming a finished run does nothing" sh -c "bm-train --mode linear --resume '$T/part.last.safetensors' -o '$T/part.safetensors' '$T/mtr.bmr' 2>'$T/err' && grep -q 'nothing to do' '$T/err' && $G same '$T/full.last.safetensors' '$T/part.last.safetensors'"

# (4) determinism: the same seed and threads give the same bits
check "two runs with one seed: identical files" \
  sh -c "bm-train -q $R -o '$T/d1.safetensors' '$T/mtr.bmr' && bm-train -q $R -o '$T/d2.safetensors' '$T/mtr.bmr' && cmp '$T/d1.safetensors' '$T/d2.safetensors' && cmp '$T/d1.last.safetensors' '$T/d2.last.safetensors'"
check_fails "another seed: other weights" sh -c "bm-train -q $R --seed $((seed + 1)) -o '$T/d3.safetensors' '$T/mtr.bmr' && $G same '$T/d1.safetensors' '$T/d3.safetensors'"

# (5) bad input: exit status, message, nothing written
$G data "$T/drop.bmr" $seed 20 multiclass 5 32 --drop-key=img_emb@7
check_refused "a record without img_emb" 1 'drop.bmr: record 7: no "img_emb" \(--features img needs it\)' \
  bm-train --mode linear -o "$T/bad.safetensors" "$T/drop.bmr"
check_refused "--features txt on image-only records" 1 'record 1: no "txt_emb"' \
  bm-train --mode linear --features txt -o "$T/bad.safetensors" "$T/tr.bmr"
$G data "$T/empty.bmr" $seed 0 multiclass 5 32
check_refused "an empty training file" 1 'empty.bmr: no records' bm-train --mode linear -o "$T/bad.safetensors" "$T/empty.bmr"
: >"$T/zero.bmr"
check_refused "a zero-byte file" 1 'zero.bmr: no header' bm-train --mode linear -o "$T/bad.safetensors" "$T/zero.bmr"
check_refused "a pipe" 1 'not pipes' sh -c "cat '$T/tr.bmr' | bm-train --mode linear -o '$T/bad.safetensors' /dev/stdin"
$G data "$T/nohdr.bmr" $seed 5 multiclass 5 32 --no-header
check_refused "no header" 1 'nohdr.bmr: no header' bm-train --mode linear -o "$T/bad.safetensors" "$T/nohdr.bmr"
check_refused "a missing file" 1 'cannot open .*nope.bmr' bm-train --mode linear -o "$T/bad.safetensors" "$T/nope.bmr"
$G data "$T/c4.bmr" $seed 20 multiclass 4 32
check_refused "--val with other classes" 1 'c4.bmr: multiclass with 4 classes' \
  bm-train --mode linear -o "$T/bad.safetensors" --val "$T/c4.bmr" "$T/tr.bmr"
$G data "$T/w31.bmr" $seed 20 multiclass 5 31
check_refused "--val with other feature widths" 1 'w31.bmr: record 1: "img_emb" has 31 values, expected 32' \
  bm-train --mode linear -o "$T/bad.safetensors" --val "$T/w31.bmr" "$T/tr.bmr"
$PY -c "
import sys; sys.path.insert(0, '$BM_TESTS/../examples'); import read_records as rr, numpy as np
rr.write(open('$T/tgt.bmr', 'wb'), {'version': 1, 'task': 'multiclass', 'classes': ['a', 'b']},
         [{'img_emb': np.ones(4, np.float32), 'target': np.array([1, 1], np.float32)}])"
check_refused "a multiclass target with two ones" 1 'tgt.bmr: record 1: "target" has 2 ones' \
  bm-train --mode linear -o "$T/bad.safetensors" "$T/tgt.bmr"
bm-train -q --mode linear -o "$T/h.safetensors" --epochs 3 --stop-after 1 --lr 0.01 "$T/tr.bmr" # unfinished
check_refused "resume: class count differs" 1 'the checkpoint has 5 classes, .*c4.bmr names 4' \
  bm-train --mode linear --resume "$T/h.last.safetensors" -o "$T/bad.safetensors" "$T/c4.bmr"
check_refused "resume: feature width differs" 1 'img_emb" has 31 values, expected 32' \
  bm-train --mode linear --resume "$T/h.last.safetensors" -o "$T/bad.safetensors" "$T/w31.bmr"
$G recfg "$T/a.last.safetensors" "$T/ft.safetensors" mode='"finetune"'
check_refused "resume: a checkpoint of another mode" 1 'ft.safetensors: a checkpoint of mode "finetune", not a linear head' \
  bm-train --mode linear --resume "$T/ft.safetensors" -o "$T/bad.safetensors" "$T/tr.bmr"
$G recfg "$T/a.last.safetensors" "$T/d40.safetensors" feature_dims='[40]' D=40
check_refused "resume: a checkpoint of another size" 1 'd40.safetensors: tensor head.weight has shape \[5,32\], expected \[5,40\]' \
  bm-train --mode linear --resume "$T/d40.safetensors" -o "$T/bad.safetensors" "$T/tr.bmr"
check_refused "resume: not a bm-train checkpoint" 1 'mc.init.safetensors: no "config"' \
  bm-train --mode linear --resume "$FX/mc.init.safetensors" -o "$T/bad.safetensors" "$FX/mc.bmr"
check_refused "resume: another learning rate" 2 '--lr 0.5 differs from the checkpoint.s 0.01' \
  bm-train --mode linear --resume "$T/h.last.safetensors" --lr 0.5 -o "$T/bad.safetensors" "$T/tr.bmr"
bm-train -q --mode linear -o "$T/s.safetensors" --epochs 2 --stop-after 1 --seed 9007199254740993 "$T/tr.bmr"
check "a seed above 2^53 survives the checkpoint" sh -c "test \"\$($G config '$T/s.last.safetensors' options.seed)\" = 9007199254740993 && bm-train -q --mode linear --resume '$T/s.last.safetensors' --seed 9007199254740993 -o '$T/s.safetensors' '$T/tr.bmr'"
check_refused "resume: another seed" 2 '--seed 9007199254740992 differs from the checkpoint.s 9007199254740993' \
  bm-train --mode linear --resume "$T/s.last.safetensors" --seed 9007199254740992 -o "$T/bad.safetensors" "$T/tr.bmr"
check_refused "resume: --val for a run that had none" 2 'had no validation set' \
  bm-train --mode linear --resume "$T/f.last.safetensors" --val "$T/mva.bmr" -o "$T/bad.safetensors" "$T/mtr.bmr"
check_refused "-o in a folder that does not exist" 1 'cannot write in .*/nodir' \
  bm-train --mode linear -o "$T/nodir/bad.safetensors" "$T/tr.bmr"
check_refused "--init of another size" 1 'head.weight has shape' \
  bm-train --mode linear --init "$FX/mc.init.safetensors" -o "$T/bad.safetensors" "$T/tr.bmr"

# a loss that overflows: stop, name the step, keep the last good checkpoint
cp "$T/a.safetensors" "$T/keep.safetensors"
cp "$T/a.last.safetensors" "$T/keep.last.safetensors"
check_fails "loss nan at step 2: exit 1" sh -c "bm-train -q --mode linear --lr 1e38 -o '$T/keep.safetensors' '$T/tr.bmr' 2>'$T/nan.err'"
check "  ... says at which step" grep -q 'loss is nan at step 2 (epoch 1, step 2 of the epoch): stopped; no checkpoint was written' "$T/nan.err"
check "  ... the earlier checkpoints are untouched" sh -c "cmp '$T/a.safetensors' '$T/keep.safetensors' && cmp '$T/a.last.safetensors' '$T/keep.last.safetensors'"
$G data "$T/fixed.bmr" 5 600 multiclass 5 32 # a fixed seed: this overflow comes in epoch 2 with it
check_fails "loss nan in a later epoch: exit 1" sh -c "bm-train -q --mode linear --lr 1e37 --warmup 20 --batch 100 -o '$T/late.safetensors' '$T/fixed.bmr' 2>'$T/nan.err'"
ep=$(sed -n 's/.*loss is nan at step [0-9]* (epoch \([0-9]*\),.*holds epoch \([0-9]*\), the last good one$/\1 \2/p' "$T/nan.err")
check "  ... names the step and the kept epoch ($ep)" sh -c "set -- $ep; test \$# = 2 && test \$1 -ge 2 && test \$2 = \$((\$1 - 1))"
check "  ... the last checkpoint holds that epoch" sh -c "set -- $ep; test \"\$($G config '$T/late.last.safetensors' epoch)\" = \$2"

# usage errors: status 2
for args in "" "--mode finetune -o x t" "--mode bogus -o x t" "--mode linear t" "--mode linear -o x" \
            "--mode linear -o x --fraction 0 t" "--mode linear -o x --fraction 1.5 t" "--mode linear -o x --patience 2 t" \
            "--mode linear -o x --select bogus --val v t" "--mode linear -o x --features all t" "--mode linear -o x t t" \
            "--mode linear -o x --lr 0 t" "--mode linear -o x --epochs 0 t" "--mode linear -o x --bogus t" \
            "--mode linear -o x.safetensors --resume x.safetensors t" "--mode linear -o x --init a --resume b t"; do
  bm-train $args </dev/null >/dev/null 2>"$T/err"
  check_eq "usage error, status 2: bm-train $args" "$?" 2
done
check "--mode fusion without -m: status 2, asks for the model (built: no 'not yet')" sh -c "bm-train --mode fusion -o x t 2>'$T/err'
  test \$? = 2 && grep -q -- '--mode fusion needs -m MODEL (the model whose towers it trains)\$' '$T/err' && ! grep -q 'not yet' '$T/err'"
check "--help on stdout, status 0" sh -c "bm-train --help | grep -q '^Usage: bm-train'"

# bm-fuse -m: errors
$PY -c "
import sys; sys.path.insert(0, '$BM_TESTS/../examples'); import read_records as rr
h, recs = None, []
for h, r in rr.read(open('$T/te.bmr', 'rb')): recs.append(r)
h['classes'] = ['class 0', 'class 1', 'class 2', 'class 4', 'class 3']
rr.write(open('$T/swap.bmr', 'wb'), h, recs[:3])
h['classes'] = h['classes'][:4]
rr.write(open('$T/four.bmr', 'wb'), h, recs[:3])"
check_fails "bm-fuse -m: classes in another order" sh -c "bm-fuse -q -m '$T/a.safetensors' '$T/swap.bmr' >/dev/null 2>'$T/err'"
check "  ... names the class" grep -q 'swap.bmr: class 3 is "class 4" in the header, "class 3" in' "$T/err"
check_fails "bm-fuse -m: another class count" sh -c "bm-fuse -q -m '$T/a.safetensors' '$T/four.bmr' >/dev/null 2>'$T/err'"
check "  ... says both" grep -q 'four.bmr: the header names 4 classes, the head .* was trained on 5' "$T/err"
check_fails "bm-fuse -m: features of another width" sh -c "bm-fuse -q -m '$T/a.safetensors' '$T/w31.bmr' >/dev/null 2>'$T/err'"
check "  ... names the record" grep -q 'w31.bmr: record 1 (byte [0-9]*): "img_emb" has 31 values, expected 32' "$T/err"
check "bm-fuse -m: records without the features pass through" \
  sh -c "bm-fuse -m '$T/a.safetensors' '$T/drop.bmr' 2>'$T/err' | bm-inspect | grep -c scores | grep -qx 19 && grep -q '19 records scored .* 1 without its features (img) passed through' '$T/err'"
check_fails "bm-fuse -m: not a checkpoint" sh -c "bm-fuse -q -m '$T/tr.bmr' '$T/te.bmr' >/dev/null 2>'$T/err'"
check "  ... names it" grep -q 'tr.bmr' "$T/err"
bm-fuse -m "$T/a.safetensors" -c "$T/a.safetensors" </dev/null >/dev/null 2>&1
check_eq "bm-fuse -m with --classes: status 2" "$?" 2
