# t-train-finetune.sh - bm-train --mode finetune: the tiny model's image tower
# and a head trained end to end on a generated HAM10000-layout set; it learns
# (bm-embed-img -m OUT | bm-fuse -m OUT | bm-score), the checkpoint is the
# whole model (text tower copied through, open_clip names), freezing,
# determinism, bad input. The step itself is proven against torch in
# tests/unit/test_vit_train.c.
. "$BM_TESTS/lib.sh"
MODEL="$BM_TESTS/fixtures/tiny-model"
seed=$(od -An -N2 -tu2 /dev/urandom | tr -d ' ')
echo "# seed $seed"

$PY "$BM_TESTS/../examples/make_demo_data.py" "$T/HAM" --per-class 40 --seed "$seed" >/dev/null
for s in train val test; do
  bm-decode --format ham10000 --size 48 --split $s --test-fraction 0.2 -q --max-warnings 0 "$T/HAM" >"$T/$s.bmr" 2>/dev/null
done
FT="bm-train -q --mode finetune -m $MODEL --epochs 12 --batch 16 --lr-encoder 3e-3 --lr-head 3e-2 --warmup 10 -j 2"

# (1) it learns
check "trains with --val and --log" $FT -o "$T/a.safetensors" --val "$T/val.bmr" --select accuracy --log "$T/a.log" "$T/train.bmr"
eval_acc() { # CKPT SET: test accuracy through the documented pipeline
  bm-embed-img -q -m "$1" <"$2" | bm-fuse -q -m "$1" | bm-score -j >"$T/s.json" &&
    $PY -c "import json; print(json.load(open('$T/s.json'))['accuracy'])"
}
acc=$(eval_acc "$T/a.safetensors" "$T/test.bmr")
check "bm-embed-img -m OUT | bm-fuse -m OUT | bm-score: test accuracy $acc >= 0.5 (chance 1/7)" \
  $PY -c "import sys; sys.exit(not float('$acc') >= 0.5)"
check "  ... each epoch's val metrics in the log are bm-score's of the pipeline on val" sh -c "
  bm-embed-img -q -m '$T/a.last.safetensors' <'$T/val.bmr' | bm-fuse -q -m '$T/a.last.safetensors' | bm-score -j >'$T/v.json' &&
  $PY -c \"
import json, sys
last = [json.loads(l) for l in open('$T/a.log') if 'val' in json.loads(l)][-1]['val']
s = json.load(open('$T/v.json'))
for k in ('accuracy', 'balanced_accuracy', 'auc_macro'):
    assert abs(last[k] - s[k]) < 1e-12, (k, last[k], s[k])
\""
check "  ... the loss falls: last epoch's train loss below half the first's" $PY -c "
import json
e = [json.loads(l) for l in open('$T/a.log') if 'train_loss' in json.loads(l)]
assert len(e) == 12 and e[-1]['train_loss'] < 0.5 * e[0]['train_loss'], [x['train_loss'] for x in e]"

# (2) the checkpoint: open_clip names, the text tower copied through, the config
st_py="
import json, struct, sys
def st(p):
    b = open(p, 'rb').read(); n = struct.unpack('<Q', b[:8])[0]; h = json.loads(b[8:8 + n])
    meta = h.pop('__metadata__', {})
    return {k: b[8 + n + v['data_offsets'][0]:8 + n + v['data_offsets'][1]] for k, v in h.items()}, h, meta
"
check "the checkpoint holds the tower under open_clip names, the text tower and the head" $PY -c "$st_py
t, h, meta = st('$T/a.safetensors')
need = ['visual.trunk.patch_embed.proj.weight', 'visual.trunk.blocks.1.attn.qkv.weight', 'visual.trunk.norm.bias',
        'visual.head.proj.weight', 'text.transformer.embeddings.word_embeddings.weight', 'head.weight', 'head.bias']
assert all(k in t for k in need), [k for k in need if k not in t]
assert h['head.weight']['shape'] == [7, 32], h['head.weight']
c = json.loads(meta['config'])
assert c['mode'] == 'finetune' and c['features'] == 'img' and c['feature_dims'] == [32] and c['C'] == 7, c
assert c['model_cfg']['vision_cfg']['image_size'] == 48 and 'vocab' in meta"
same_key() { # A B KEY: every record's KEY has the same bits in A and B (headers name the model)
  $PY -c "
import sys; sys.path.insert(0, '$BM_TESTS/../examples'); import read_records as rr
a = [r['$3'].tobytes() for _, r in rr.read(open('$1', 'rb'))]; b = [r['$3'].tobytes() for _, r in rr.read(open('$2', 'rb'))]
assert a and a == b, (len(a), len(b))"
}
echo "a chest x ray of the left lung" >"$T/txt"
bm-embed-txt -q -m "$MODEL" --classes "$T/txt" >"$T/t0.bmr" 2>/dev/null
bm-embed-txt -q -m "$T/a.safetensors" --classes "$T/txt" >"$T/t1.bmr"
check "bm-embed-txt -m OUT: the same text embedding bits as the original model" \
  same_key "$T/t0.bmr" "$T/t1.bmr" txt_emb

# (3) freezing
bm-embed-img -q -m "$MODEL" <"$T/test.bmr" >"$T/e0.bmr"
# a head alone on the random tiny tower's features is a linear probe: it
# needs more steps at a higher rate than the whole model to learn reliably
# (12 epochs at 3e-2 gave 0.32-0.45 over six data seeds, 30 at 0.2 gave 0.54-0.60)
check "--freeze-tower trains" $FT --freeze-tower --epochs 30 --lr-head 0.2 -o "$T/fz.safetensors" "$T/train.bmr"
bm-embed-img -q -m "$T/fz.safetensors" <"$T/test.bmr" >"$T/e1.bmr"
bm-embed-img -q -m "$T/a.safetensors" <"$T/test.bmr" >"$T/e2.bmr"
check "  ... the tower is unchanged: bm-embed-img -m OUT gives the original model's bits" \
  same_key "$T/e0.bmr" "$T/e1.bmr" img_emb
check_fails "  ... which a trained tower does not" same_key "$T/e0.bmr" "$T/e2.bmr" img_emb
check "  ... and the head learned (test accuracy above chance)" \
  $PY -c "import sys; sys.exit(not float('$(eval_acc "$T/fz.safetensors" "$T/test.bmr")') > 0.3)"
check "--unlock-last 1 trains" $FT --unlock-last 1 -o "$T/u1.safetensors" "$T/train.bmr"
check "  ... block 0 and the embeddings keep their bits; block 1, the norm and the projection change" $PY -c "$st_py
f, _, _ = st('$T/fz.safetensors'); u, _, _ = st('$T/u1.safetensors')
same = [k for k in f if k.startswith(('visual.trunk.blocks.0.', 'visual.trunk.patch_embed', 'visual.trunk.pos', 'visual.trunk.cls'))]
diff = [k for k in f if k.startswith(('visual.trunk.blocks.1.', 'visual.trunk.norm.', 'visual.head.'))]
assert len(same) == 16 and len(diff) == 15, (len(same), len(diff))
assert all(f[k] == u[k] for k in same), [k for k in same if f[k] != u[k]]
assert all(f[k] != u[k] for k in diff), [k for k in diff if f[k] == u[k]]"

# (3b) multilabel: the same images with two labels each (the class and the next), weighted BCE
$PY -c "
import sys; sys.path.insert(0, '$BM_TESTS/../examples'); import read_records as rr, numpy as np
for src in ('train', 'test'):
    pairs = list(rr.read(open('$T/%s.bmr' % src, 'rb')))
    h = dict(pairs[0][0]); h['task'] = 'multilabel'
    recs = []
    for _, r in pairs:
        t = r['target'].astype(np.float32); t = np.maximum(t, np.roll(t, 1)); r['target'] = t; recs.append(r)
    rr.write(open('$T/ml-%s.bmr' % src, 'wb'), h, recs)"
check "multilabel: trains (BCE with inverse-frequency pos_weight)" $FT -o "$T/ml.safetensors" "$T/ml-train.bmr"
check "  ... the checkpoint holds loss.pos_weight and says multilabel" $PY -c "$st_py
t, h, meta = st('$T/ml.safetensors')
assert h['loss.pos_weight']['shape'] == [7] and json.loads(meta['config'])['task'] == 'multilabel'"
check "  ... bm-embed-img -m | bm-fuse -m | bm-score: macro AUC >= 0.75 (chance 0.5)" sh -c "
  bm-embed-img -q -m '$T/ml.safetensors' <'$T/ml-test.bmr' | bm-fuse -q -m '$T/ml.safetensors' | bm-score -j >'$T/ml.json' &&
  $PY -c \"import json, sys; a = json.load(open('$T/ml.json'))['auc_macro']; print(a); sys.exit(not a >= 0.75)\""

# (4) deterministic for a seed and thread count
check "the same seed and threads: the same checkpoint bits" sh -c "
  $FT --seed 3 --epochs 2 -o '$T/d1.safetensors' '$T/train.bmr' && $FT --seed 3 --epochs 2 -o '$T/d2.safetensors' '$T/train.bmr' &&
  cmp '$T/d1.safetensors' '$T/d2.safetensors'"
check "  ... another seed: other bits" sh -c "
  $FT --seed 4 --epochs 2 -o '$T/d3.safetensors' '$T/train.bmr' && ! cmp -s '$T/d1.safetensors' '$T/d3.safetensors'"

bm-decode --format ham10000 --size 64 --split train --test-fraction 0.2 -q --max-warnings 0 "$T/HAM" >"$T/s64.bmr" 2>/dev/null
bm-embed-img -q -m "$MODEL" <"$T/train.bmr" >"$T/emb.bmr"
bm-train -q --mode linear --epochs 1 -o "$T/lin.safetensors" "$T/emb.bmr"
# (5) resume: 3 epochs at once = 1 epoch, stop, --resume 2 more (larger images, so the crops count too)
tensors_same() { # A B: the same tensors with the same bits
  $PY -c "$st_py
a, _, _ = st('$1'); b, _, _ = st('$2')
assert sorted(a) == sorted(b) and all(a[k] == b[k] for k in a), [k for k in a if a.get(k) != b.get(k)]"
}
R="--mode finetune --epochs 3 --batch 16 --lr-encoder 3e-3 --lr-head 3e-2 --warmup 4 --clip 1 --weight-decay 0.05 --seed 5 -j 2 --val $T/val.bmr"
check "resume: 3 epochs uninterrupted" bm-train -q $R -m "$MODEL" -o "$T/full.safetensors" "$T/s64.bmr"
check "  ... 1 epoch, then stopped" bm-train -q $R -m "$MODEL" --stop-after 1 -o "$T/part.safetensors" "$T/s64.bmr"
check "  ... --resume 2 more" bm-train -q --mode finetune --resume "$T/part.last.safetensors" -o "$T/part.safetensors" -j 2 "$T/s64.bmr"
check "  ... last checkpoint (tower, head, moments): the same bits as the uninterrupted run" tensors_same "$T/full.last.safetensors" "$T/part.last.safetensors"
check "  ... best checkpoint too" tensors_same "$T/full.safetensors" "$T/part.safetensors"
check "  ... the last checkpoint holds the moments of every trained tensor" $PY -c "$st_py
t, _, _ = st('$T/full.last.safetensors')
m = [k for k in t if k.startswith('optim.m.')]
assert len(m) == 31 + 2 and 'optim.v.visual.trunk.pos_embed' in t and 'optim.m.head.bias' in t, len(m)"
check_refused "resume with another --lr-head" 2 '--lr-head 0.1[0-9]* differs from the checkpoint' bm-train --mode finetune --resume "$T/part.last.safetensors" --lr-head 0.1 -o "$T/bad.safetensors" "$T/s64.bmr"
check_refused "resume with -m" 2 'goes on from the tower of its checkpoint' bm-train --mode finetune -m "$MODEL" --resume "$T/part.last.safetensors" -o "$T/bad.safetensors" "$T/s64.bmr"
check_refused "resume of a linear checkpoint" 1 'a checkpoint of mode "linear", not a finetune run' bm-train --mode finetune --resume "$T/lin.last.safetensors" -o "$T/bad.safetensors" "$T/s64.bmr"

# (6) larger training images: a random-resized crop and flip of each, seeded
check "training images of 64 for a model of 48: cropped at random" $FT --epochs 6 -o "$T/c1.safetensors" "$T/s64.bmr"
acc=$(eval_acc "$T/c1.safetensors" "$T/test.bmr")
check "  ... it learns: test accuracy $acc >= 0.4 (chance 1/7)" $PY -c "import sys; sys.exit(not float('$acc') >= 0.4)"
check "  ... the same seed: the same bits" sh -c "$FT --epochs 6 -o '$T/c2.safetensors' '$T/s64.bmr' && cmp '$T/c1.safetensors' '$T/c2.safetensors'"

# (7) bad input
bm-decode --format ham10000 --size 32 --split test --test-fraction 0.2 -q --max-warnings 0 "$T/HAM" >"$T/s32.bmr" 2>/dev/null
check_refused "images smaller than the model's" 1 's32.bmr: record 1: "image" is u8 \[3,32,32\]; the model takes u8 \[3,48,48\] \(or larger, cropped at random\): decode with bm-decode --size 48' \
  bm-train --mode finetune -m "$MODEL" -o "$T/bad.safetensors" "$T/s32.bmr"
$PY -c "
import sys; sys.path.insert(0, '$BM_TESTS/../examples'); import read_records as rr
pairs = list(rr.read(open('$T/test.bmr', 'rb')))
recs = [{k: v for k, v in r.items() if k != 'image'} for _, r in pairs]
rr.write(open('$T/noimg.bmr', 'wb'), pairs[0][0], recs)"
check_refused "records without images" 1 'noimg.bmr: record 1: no "image"' \
  bm-train --mode finetune -m "$MODEL" -o "$T/bad.safetensors" "$T/noimg.bmr"
check_refused "a model that is not there" 1 '-m: .*nomodel' bm-train --mode finetune -m "$T/nomodel" -o "$T/bad.safetensors" "$T/train.bmr"
check_refused "--val of other images" 1 's32.bmr: record 1: "image" is u8 \[3,32,32\]' \
  bm-train --mode finetune -m "$MODEL" --val "$T/s32.bmr" -o "$T/bad.safetensors" "$T/train.bmr"
check_refused "--val of larger images" 1 's64.bmr: record 1: "image" is u8 \[3,64,64\]; the model takes u8 \[3,48,48\] \(validation images are not cropped\)' \
  bm-train --mode finetune -m "$MODEL" --val "$T/s64.bmr" -o "$T/bad.safetensors" "$T/train.bmr"
check_refused "without -m" 2 'needs -m MODEL' bm-train --mode finetune -o "$T/bad.safetensors" "$T/train.bmr"
check_refused "--lr" 2 'takes --lr-encoder' bm-train --mode finetune -m "$MODEL" --lr 1e-3 -o "$T/bad.safetensors" "$T/train.bmr"
check_refused "--features txt" 2 'trains on images' bm-train --mode finetune -m "$MODEL" --features txt -o "$T/bad.safetensors" "$T/train.bmr"
check_refused "--freeze-tower with --unlock-last" 2 'choose one' bm-train --mode finetune -m "$MODEL" --freeze-tower --unlock-last 1 -o "$T/bad.safetensors" "$T/train.bmr"
check_refused "-m with --mode linear" 2 'are for --mode finetune' bm-train --mode linear -m "$MODEL" -o "$T/bad.safetensors" "$T/train.bmr"
check_refused "--lr-encoder 0" 2 'lr-encoder 0: expected a positive number' bm-train --mode finetune -m "$MODEL" --lr-encoder 0 -o "$T/bad.safetensors" "$T/train.bmr"
check_refused "--resume of a finetune checkpoint in linear mode" 1 'a checkpoint of mode "finetune", not a linear head' \
  bm-train --mode linear --resume "$T/a.last.safetensors" -o "$T/bad.safetensors" "$T/train.bmr"
