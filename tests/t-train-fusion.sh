# t-train-fusion.sh - bm-train --mode fusion and --mode regularized end to
# end with the tiny model on generated HAM10000 (multiclass) and NIH
# (multilabel, weighted BCE) layouts: they learn, applied as the documented
# pipeline (bm-embed-img -m CKPT --tokens | bm-embed-txt -m CKPT --tokens |
# bm-fuse -m CKPT | bm-score); the pipeline's scores give the training
# code's validation loss within the f16 rounding of the tokens; --resume,
# --grad-checkpoint, --freeze-tower / --freeze-text, --text key|prompt|both,
# the leakage refusal. The pieces (fusion module, prompt path, towers) have
# their own torch parity tests (test_fusion, test_bert_train, test_vit_train).
. "$BM_TESTS/lib.sh"
MODEL="$BM_TESTS/fixtures/tiny-model"
seed=$(od -An -N2 -tu2 /dev/urandom | tr -d ' ')
echo "# seed $seed"
EX="$BM_TESTS/../examples"

$PY "$EX/make_demo_data.py" "$T/HAM" --per-class 30 --seed "$seed" >/dev/null
$PY "$EX/make_demo_data.py" "$T/NIH" --dataset nih --per-class 30 --seed "$seed" >/dev/null
for s in train val test; do
  bm-decode --format ham10000 --size 48 --split $s --test-fraction 0.25 --text -q --max-warnings 0 "$T/HAM" >"$T/h-$s.bmr" 2>/dev/null
  bm-decode --format nih --size 48 --split $s --text -q --max-warnings 0 "$T/NIH" >"$T/n-$s.bmr" 2>/dev/null
done
# one thread: the tiny model's products are too small to share, and the bits
# of a run then do not depend on a busy machine
TR="bm-train -q -m $MODEL -j 1 --batch 16 --lr-encoder 3e-3 --lr-head 3e-3"
# apply CKPT SET OUT: the documented pipeline
apply() { bm-embed-img -q -m "$1" --tokens <"$2" | bm-embed-txt -q -m "$1" --tokens | bm-fuse -q -m "$1" >"$3"; }
metric() { bm-score --json "$1" | $PY -c "import json, sys; print(json.load(sys.stdin)['$2'])"; }
# parity CKPT SCORED: the loss of the pipeline's scores (CE, or BCE with the
# checkpoint's loss.pos_weight) against the validation loss the training
# code computed on the same records with its own forward (config "val")
cat >"$T/parity.py" <<'PYEOF'
import json, math, struct, sys
sys.path.insert(0, sys.argv[3])
import numpy as np
import read_records as rr
b = open(sys.argv[1], 'rb').read(); n = struct.unpack('<Q', b[:8])[0]; h = json.loads(b[8:8 + n])
cfg = json.loads(h['__metadata__']['config'])
pw = None
if 'loss.pos_weight' in h:
    o = h['loss.pos_weight']['data_offsets']
    pw = np.frombuffer(b[8 + n + o[0]:8 + n + o[1]], dtype='<f4').astype(np.float64)
recs = [r for _, r in rr.read(open(sys.argv[2], 'rb'))]
S = np.array([r['scores'] for r in recs], dtype=np.float64); Y = np.array([r['target'] for r in recs], dtype=np.float64)
if cfg['task'] == 'multilabel':
    w = 1 + (pw - 1) * Y
    loss = np.mean((1 - Y) * S + w * (np.log1p(np.exp(-np.abs(S))) + np.maximum(-S, 0)))
else:
    m = S.max(1, keepdims=True); lse = m[:, 0] + np.log(np.exp(S - m).sum(1))
    loss = np.mean(lse - (S * Y).sum(1))
want = cfg['val']['loss']
tol = float(sys.argv[4])
print(f"pipeline loss {loss:.8f}, training code {want:.8f}, |diff| {abs(loss - want):.2e} (tolerance {tol:g})")
assert len(recs) > 0 and math.isfinite(loss) and abs(loss - want) <= tol * max(1.0, abs(want))
PYEOF
# f16 tokens (bm-embed-img/txt --tokens) carry 11 significant bits (relative
# 4.9e-4 per value); through the fusion and head the mean loss moved by
# 0.7e-5 to 1.4e-5 in trials (CE and weighted BCE): a 20x margin
TOL=3e-4
parity() { $PY "$T/parity.py" "$1" "$2" "$EX" $TOL; }

# ---- fusion on HAM10000 (metadata text, --text key) ----
check "fusion trains on images + metadata text" $TR --mode fusion --epochs 10 --val "$T/h-val.bmr" -o "$T/fu.safetensors" "$T/h-train.bmr"
apply "$T/fu.safetensors" "$T/h-test.bmr" "$T/fu-test.bmr"
acc=$(metric "$T/fu-test.bmr" accuracy)
# (0.67-0.85 over 5 data seeds)
check "  ... test accuracy through the pipeline $acc >= 0.5 (chance 1/7)" $PY -c "assert $acc >= 0.5"
apply "$T/fu.last.safetensors" "$T/h-val.bmr" "$T/fu-val.bmr"
check "  ... the pipeline's scores give the training code's validation loss (within $TOL)" parity "$T/fu.last.safetensors" "$T/fu-val.bmr"
check "  ... and its accuracy" $PY -c "
import json, struct
b = open('$T/fu.last.safetensors', 'rb').read(); n = struct.unpack('<Q', b[:8])[0]
v = json.loads(json.loads(b[8:8 + n])['__metadata__']['config'])['val']['accuracy']
assert abs(v - $(metric "$T/fu-val.bmr" accuracy)) < 1e-9, v"
check "  ... the checkpoint: both towers, fusion.*, the head, config" $PY -c "
import json, struct
b = open('$T/fu.safetensors', 'rb').read(); n = struct.unpack('<Q', b[:8])[0]; h = json.loads(b[8:8 + n])
c = json.loads(h['__metadata__']['config'])
for k in ('visual.trunk.blocks.1.attn.qkv.weight', 'text.transformer.encoder.layer.1.output.dense.weight',
          'text.transformer.embeddings.word_embeddings.weight', 'fusion.layers.1.txt.cross.kv.weight',
          'fusion.img_norm.bias', 'head.weight', 'head.bias'):
    assert k in h, k
assert h['head.weight']['shape'] == [7, 2 * c['fusion']['width']] and c['mode'] == 'fusion' and c['text'] == 'key'
assert c['fusion']['combine'] == 'concat' and 'prompt.ctx' not in h and 'vocab' in h['__metadata__']"

# ---- regularized on NIH (multilabel, inverse-frequency weighted BCE, learned prompts) ----
check "regularized trains on NIH (prompts only, --dropout, --weight-decay)" $TR --mode regularized --epochs 15 \
  --dropout 0.1 --weight-decay 1e-4 --val "$T/n-val.bmr" -o "$T/re.safetensors" "$T/n-train.bmr"
apply "$T/re.safetensors" "$T/n-test.bmr" "$T/re-test.bmr"
auc=$(metric "$T/re-test.bmr" auc_macro)
# (0.83-0.96 over 6 data seeds; the NIH test split is small, 16-51 images)
check "  ... test macro AUC through the pipeline $auc >= 0.7 (chance 0.5)" $PY -c "assert $auc >= 0.7"
apply "$T/re.last.safetensors" "$T/n-val.bmr" "$T/re-val.bmr"
check "  ... the pipeline's scores give the training code's weighted-BCE validation loss" parity "$T/re.last.safetensors" "$T/re-val.bmr"
check "  ... the checkpoint: prompt.ctx [8, W], averaged fusion, loss.pos_weight" $PY -c "
import json, struct
b = open('$T/re.safetensors', 'rb').read(); n = struct.unpack('<Q', b[:8])[0]; h = json.loads(b[8:8 + n])
c = json.loads(h['__metadata__']['config'])
assert h['prompt.ctx']['shape'] == [8, 64] and c['text'] == 'prompt' and c['n_ctx'] == 8, h['prompt.ctx']
assert c['fusion']['combine'] == 'mean' and h['head.weight']['shape'] == [14, c['fusion']['width']]
assert 'loss.pos_weight' in h and c['task'] == 'multilabel'"
$PY -c "
import sys; sys.path.insert(0, '$EX'); import read_records as rr
p = list(rr.read(open('$T/n-test.bmr', 'rb'))); rs = [r for _, r in p]
for r in rs: r.pop('text')
rr.write(open('$T/n-test-notext.bmr', 'wb'), p[0][0], rs)"
apply "$T/re.safetensors" "$T/n-test-notext.bmr" "$T/re-notext.bmr"
check "  ... --text prompt: the pipeline needs no \"text\" (the same scores without it)" $PY -c "
import sys; sys.path.insert(0, '$EX'); import read_records as rr
a = [r['scores'] for _, r in rr.read(open('$T/re-test.bmr', 'rb'))]
b = [r['scores'] for _, r in rr.read(open('$T/re-notext.bmr', 'rb'))]
assert len(a) == len(b) > 0 and all(list(x) == list(y) for x, y in zip(a, b))"

# ---- --text both (prompts, then the metadata text) ----
check "regularized --text both" $TR --mode regularized --text both --n-ctx 4 --epochs 2 --val "$T/h-val.bmr" \
  -o "$T/both.safetensors" "$T/h-train.bmr"
apply "$T/both.last.safetensors" "$T/h-val.bmr" "$T/both-val.bmr"
check "  ... the pipeline prefixes the prompts to the text as training did" parity "$T/both.last.safetensors" "$T/both-val.bmr"
apply "$T/both.last.safetensors" "$T/h-val.bmr" "$T/both-val2.bmr"
$PY -c "
import sys; sys.path.insert(0, '$EX'); import read_records as rr
p = list(rr.read(open('$T/h-val.bmr', 'rb'))); rs = [r for _, r in p]
for r in rs: r['text'] = 'unrelated words here'
rr.write(open('$T/h-val-other.bmr', 'wb'), p[0][0], rs)"
apply "$T/both.last.safetensors" "$T/h-val-other.bmr" "$T/both-other.bmr"
check "  ... and reads the text (other text, other scores)" $PY -c "
import sys; sys.path.insert(0, '$EX'); import read_records as rr
a = [list(r['scores']) for _, r in rr.read(open('$T/both-val.bmr', 'rb'))]
b = [list(r['scores']) for _, r in rr.read(open('$T/both-other.bmr', 'rb'))]
assert a != b"

# ---- resume, checkpointing, freezing: small runs on a few records ----
$PY -c "
import sys; sys.path.insert(0, '$EX'); import read_records as rr
p = list(rr.read(open('$T/h-train.bmr', 'rb')))
rr.write(open('$T/small.bmr', 'wb'), p[0][0], [r for _, r in p][:24])"
st_py="
import json, struct
def st(p):
    b = open(p, 'rb').read(); n = struct.unpack('<Q', b[:8])[0]; h = json.loads(b[8:8 + n])
    h.pop('__metadata__', None)
    return {k: b[8 + n + v['data_offsets'][0]:8 + n + v['data_offsets'][1]] for k, v in h.items()}
"
tensors_same() { # A B PREFIX: the tensors named PREFIX... have the same bits in A and B
  $PY -c "$st_py
a = st('$1'); b = st('$2'); ka = sorted(k for k in a if k.startswith('$3')); kb = sorted(k for k in b if k.startswith('$3'))
assert ka == kb and len(ka) > 0, (len(ka), len(kb))
bad = [k for k in ka if a[k] != b[k]]
assert not bad, bad[:5]"
}
R="--mode regularized --text both --n-ctx 3 --epochs 3 --batch 8 --dropout 0.2 --warmup 2 --seed 7 --val $T/h-val.bmr"
check "resume: 3 epochs uninterrupted" $TR $R -o "$T/full.safetensors" "$T/small.bmr"
check "  ... 1 epoch, then stopped" $TR $R --stop-after 1 -o "$T/part.safetensors" "$T/small.bmr"
check "  ... --resume 2 more" bm-train -q -j 1 --mode regularized --resume "$T/part.last.safetensors" -o "$T/part.safetensors" "$T/small.bmr"
check "  ... last checkpoint (towers, fusion, prompts, head, moments): the same bits" tensors_same "$T/full.last.safetensors" "$T/part.last.safetensors" ""
check "  ... best checkpoint too" tensors_same "$T/full.safetensors" "$T/part.safetensors" ""
check "  ... the moments cover towers, fusion, prompts and head, not the unused projections" $PY -c "$st_py
t = st('$T/full.last.safetensors')
for k in ('optim.m.prompt.ctx', 'optim.v.fusion.txt_in.weight', 'optim.m.head.bias', 'optim.m.visual.trunk.pos_embed',
          'optim.m.text.transformer.embeddings.word_embeddings.weight'):
    assert k in t, k
assert not [k for k in t if k.startswith('optim.') and ('head.proj' in k or 'text.proj' in k)]"

F="--mode fusion --epochs 1 --batch 8 --fusion-layers 1 --fusion-heads 2 --seed 3"
check "--grad-checkpoint: trains" $TR $F --grad-checkpoint -o "$T/gc.safetensors" "$T/small.bmr"
check "  ... without it" $TR $F -o "$T/nogc.safetensors" "$T/small.bmr"
check "  ... the same checkpoint bytes" cmp "$T/gc.last.safetensors" "$T/nogc.last.safetensors"
check "  ... (and another seed differs: the check can fail)" sh -c "$TR $F --seed 4 -o '$T/s4.safetensors' '$T/small.bmr' &&
  ! cmp -s '$T/s4.last.safetensors' '$T/nogc.last.safetensors'"

# the towers as -m has them: a finetune run with a frozen tower copies them through
check "--freeze-tower --freeze-text: trains (fusion, prompts and head)" $TR --mode regularized --freeze-tower --freeze-text \
  --epochs 2 --batch 8 -o "$T/frz.safetensors" "$T/small.bmr"
$TR --mode finetune --freeze-tower --epochs 1 --batch 8 --lr-head 1e-3 -o "$T/ref.safetensors" "$T/small.bmr"
check "  ... image tower bit-identical to -m's" tensors_same "$T/frz.last.safetensors" "$T/ref.safetensors" "visual."
check "  ... text tower too" tensors_same "$T/frz.last.safetensors" "$T/ref.safetensors" "text."
check "  ... no moments for them" $PY -c "$st_py
t = st('$T/frz.last.safetensors')
assert not [k for k in t if k.startswith('optim.') and ('visual.' in k or '.text.' in k)] and 'optim.m.prompt.ctx' in t"
check_fails "  ... while an unfrozen run changes the image tower" tensors_same "$T/nogc.last.safetensors" "$T/ref.safetensors" "visual.trunk."
check_fails "  ... and the text tower" tensors_same "$T/nogc.last.safetensors" "$T/ref.safetensors" "text.transformer."
check "--freeze-tower alone: the text tower trains, the image tower not" sh -c "$TR --mode fusion --freeze-tower --epochs 1 --batch 8 \
  -o '$T/fi.safetensors' '$T/small.bmr'"
check "  ... image tower bit-identical" tensors_same "$T/fi.last.safetensors" "$T/ref.safetensors" "visual."
check_fails "  ... text tower changed" tensors_same "$T/fi.last.safetensors" "$T/ref.safetensors" "text.transformer."

# ---- leakage and bad input ----
$PY -c "
import sys; sys.path.insert(0, '$EX'); import read_records as rr
p = list(rr.read(open('$T/small.bmr', 'rb'))); rs = [r for _, r in p]
rs[2]['text'] = rs[2]['text'] + ', histology: bcc'
rr.write(open('$T/leak.bmr', 'wb'), p[0][0], rs)"
check_refused "a text naming a class is refused" 1 'leak.bmr: record 3: "text" names the class "bcc"' \
  $TR --mode fusion --epochs 1 -o "$T/bad.safetensors" "$T/leak.bmr"
check "  ... --allow-label-text trains on it" $TR --mode fusion --epochs 1 --allow-label-text -o "$T/al.safetensors" "$T/leak.bmr"
bm-embed-img -q -m "$T/fu.safetensors" <"$T/h-val.bmr" >"$T/notok.bmr"
check "bm-fuse -m FUSION: records without the tokens pass through" sh -c "bm-fuse -m '$T/fu.safetensors' <'$T/notok.bmr' >'$T/pass.bmr' 2>'$T/pass.err' &&
  grep -q '0 records scored by the fusion model.* passed through' '$T/pass.err' && test \$(bm-inspect '$T/pass.bmr' | grep -c scores) = 0"
bm-embed-img -q -m "$T/fu.safetensors" --tokens <"$T/h-val.bmr" | bm-embed-txt -q -m "$MODEL" --tokens >"$T/tok.bmr"
$PY -c "
import sys; sys.path.insert(0, '$EX'); import read_records as rr
import numpy as np
p = list(rr.read(open('$T/tok.bmr', 'rb'))); rs = [r for _, r in p]
rs[1]['txt_tokens'] = np.zeros((3, 5), dtype=np.float16)
rr.write(open('$T/badtok.bmr', 'wb'), p[0][0], rs)" 2>"$T/py.err"
check_refused "bm-fuse -m FUSION: txt_tokens of another width" 1 'record 2 .*: "txt_tokens" is f16 with 2 dimensions \(last 5\), expected f16 \[N,64\]' \
  sh -c "bm-fuse -m '$T/fu.safetensors' '$T/badtok.bmr' >/dev/null"
