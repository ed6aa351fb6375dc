# t-train-accum.sh - bm-train --accum N (gradient accumulation) and --dropout
# P (on the features fed to the head), both modes: N batches of B train as
# one batch of N*B, dropout's mask and scaling as documented, both kept for
# --resume.
. "$BM_TESTS/lib.sh"
G="$PY $BM_TESTS/linear_gen.py"
MODEL="$BM_TESTS/fixtures/tiny-model"
seed=$(od -An -N2 -tu2 /dev/urandom | tr -d ' ')
echo "# seed $seed"

# max|a-b| / max|b| over the tensors named by a prefix, of two checkpoints
st_py="
import json, struct, sys
import numpy as np
def st(p):
    b = open(p, 'rb').read(); n = struct.unpack('<Q', b[:8])[0]; h = json.loads(b[8:8 + n])
    meta = h.pop('__metadata__', {})
    return {k: np.frombuffer(b[8 + n + v['data_offsets'][0]:8 + n + v['data_offsets'][1]], '<f4').astype(np.float64)
            for k, v in h.items() if v['dtype'] == 'F32'}, meta
def reldiff(pa, pb, prefixes, skip=()):
    a, _ = st(pa); b, _ = st(pb)
    ks = [k for k in b if k.startswith(prefixes) and not k.endswith(skip)]
    assert ks and all(k in a for k in ks)
    return max(np.abs(a[k] - b[k]).max() / max(np.abs(b[k]).max(), 1e-30) for k in ks)
"
reldiff() { # A B PREFIX MAX [SKIP]: prints the relative difference; fails above MAX
  $PY -c "$st_py
d = reldiff('$1', '$2', tuple('$3'.split(',')), tuple('${5:-}'.split(',')) if '${5:-}' else ()); print('# reldiff', d); sys.exit(not d <= $4)"
}

# ---- linear ----
# 204 records: batches of 8 are 26 an epoch (the last one 4), 13 groups of 2
# (the last one 8 + 4, so the weighting by record count matters); batches of
# 16 are 13 (the last one 12): the same groups of records, because the
# epoch's permutation depends on the seed and epoch only
$G data "$T/tr.bmr" $seed 204 multiclass 5 32
$G data "$T/mtr.bmr" $((seed + 1)) 204 multilabel 4 24,16
L="bm-train -q --mode linear --epochs 3 --lr 0.01 --warmup 5 --clip 1 --weight-decay 0.05 --seed $seed"
for c in tr:img mtr:both; do
  f=${c%:*} feat=${c#*:}
  check "$f: --accum 2 --batch 8 trains" $L --features $feat --accum 2 --batch 8 --log "$T/a8.log" -o "$T/a8.safetensors" "$T/$f.bmr"
  check "  ... --batch 16" $L --features $feat --batch 16 --log "$T/b16.log" -o "$T/b16.safetensors" "$T/$f.bmr"
  check "  ... the same head within 1e-6 relative" reldiff "$T/a8.safetensors" "$T/b16.safetensors" head. 1e-6
  check "  ... 39 optimizer steps, each logged with its group's mean loss (16's within 1e-6)" $PY -c "
import json
a = [json.loads(l) for l in open('$T/a8.log') if 'samples_per_s' in l]
b = [json.loads(l) for l in open('$T/b16.log') if 'samples_per_s' in l]
assert len(a) == len(b) == 39 and [x['step'] for x in a] == list(range(1, 40)), len(a)
assert all(abs(x['loss'] - y['loss']) <= 1e-6 * abs(y['loss']) for x, y in zip(a, b)), [(x['loss'], y['loss']) for x, y in zip(a, b)]
e = [json.loads(l) for l in open('$T/a8.log') if 'train_loss' in l]
assert e[-1]['step'] == 39, e"
  check_fails "  ... which --batch 8 alone is not" sh -c "$L --features $feat --batch 8 -o '$T/b8.safetensors' '$T/$f.bmr' && reldiff '$T/b8.safetensors' '$T/b16.safetensors' head. 1e-3"
done

# dropout
D="$L --batch 16"
check "--dropout 0: the same bits as without the option" sh -c "
  $D -o '$T/n.safetensors' '$T/tr.bmr' && $D --dropout 0 -o '$T/z.safetensors' '$T/tr.bmr' &&
  cmp '$T/n.safetensors' '$T/z.safetensors' && cmp '$T/n.last.safetensors' '$T/z.last.safetensors'"
check "--dropout 0.3: the same bits for a seed, any thread count" sh -c "
  $D --dropout 0.3 -j 1 -o '$T/p1.safetensors' '$T/tr.bmr' && $D --dropout 0.3 -j 2 -o '$T/p2.safetensors' '$T/tr.bmr' &&
  cmp '$T/p1.safetensors' '$T/p2.safetensors'"
check_fails "  ... and another trajectory than without" $G same "$T/n.safetensors" "$T/p1.safetensors"
check_fails "  ... and another with another seed" sh -c "$L --batch 16 --seed $((seed + 1)) --dropout 0.3 -o '$T/p3.safetensors' '$T/tr.bmr' && $G same '$T/p1.safetensors' '$T/p3.safetensors'"

# the head's gradient with dropout: one full batch from a random --init;
# AdamW's first step leaves m = 0.1 g, and g must be the mean-loss gradient
# on the masked features, the mask recomputed here from bm_dropout's hash
$G data "$T/g.bmr" $seed 40 multiclass 5 32
$PY -c "
import json, struct, numpy as np
rng = np.random.default_rng($seed)
t = {'head.weight': rng.standard_normal((5, 32)).astype('<f4') * 0.2, 'head.bias': rng.standard_normal(5).astype('<f4')}
h, off, blob = {}, 0, b''
for k, v in t.items():
    h[k] = {'dtype': 'F32', 'shape': list(v.shape), 'data_offsets': [off, off + v.nbytes]}; off += v.nbytes; blob += v.tobytes()
hb = json.dumps(h).encode()
open('$T/init.safetensors', 'wb').write(struct.pack('<Q', len(hb)) + hb + blob)"
check "one step with --dropout 0.4 from --init" bm-train -q --mode linear --epochs 1 --batch 40 --dropout 0.4 --seed $seed \
  --init "$T/init.safetensors" -o "$T/g.safetensors" "$T/g.bmr"
check "  ... the head's gradient is the gradient on the masked, 1/(1-P)-scaled features" $PY -c "$st_py
sys.path.insert(0, '$BM_TESTS/../examples'); import read_records as rr
M = (1 << 64) - 1
def mix(z):
    z = (z + 0x9e3779b97f4a7c15) & M
    z = ((z ^ (z >> 30)) * 0xbf58476d1ce4e5b9) & M
    z = ((z ^ (z >> 27)) * 0x94d049bb133111eb) & M
    return z ^ (z >> 31)
p, seed = 0.4, $seed
dseed = seed ^ ((0x9E3779B97F4A7C15 * (0xD509000000000000 + 1)) & M)  # sub_seed(seed, DROP_TAG)
key = mix(mix(mix(dseed) ^ 0) ^ 0)  # batch 0, site 0
# the batch is epoch 0's permutation of the records (bm_permutation)
perm, r = list(range(40)), seed ^ 0x9E3779B97F4A7C15
for i in range(39, 0, -1):
    r = (r + 0x9e3779b97f4a7c15) & M; j = (mix(r - 0x9e3779b97f4a7c15 & M)) % (i + 1)
    perm[i], perm[j] = perm[j], perm[i]
recs = [r for _, r in rr.read(open('$T/g.bmr', 'rb'))]
X = np.array([recs[k]['img_emb'] for k in perm], np.float32)
Y = np.array([recs[k]['target'] for k in perm], np.float64)
thresh = int(float(np.float32(p)) * 16777216 + 0.5)  # bm_dropout takes P as a float
keep = np.array([(mix(key ^ i) >> 40) >= thresh for i in range(X.size)]).reshape(X.shape)
assert 0.45 < keep.mean() < 0.75, keep.mean()
Xd = np.where(keep, X * np.float32(np.float32(1) / (np.float32(1) - np.float32(p))), np.float32(0)).astype(np.float64)
i, _ = st('$T/init.safetensors')
W, b = i['head.weight'].reshape(5, 32), i['head.bias']
s = Xd @ W.T + b; P = np.exp(s - s.max(1, keepdims=True)); P /= P.sum(1, keepdims=True)
gW = (P - Y).T @ Xd / len(X); gb = (P - Y).mean(0)
t, _ = st('$T/g.last.safetensors')
for name, g in (('head.weight', gW.ravel()), ('head.bias', gb)):
    m = t['optim.m.' + name] / 0.1
    err = np.abs(m - g).max() / np.abs(g).max(); print('#', name, 'gradient rel err', err)
    assert err < 1e-5, err
Xn = X.astype(np.float64); s = Xn @ W.T + b; P = np.exp(s - s.max(1, keepdims=True)); P /= P.sum(1, keepdims=True)
assert np.abs(t['optim.m.head.weight'] / 0.1 - ((P - Y).T @ Xn / len(X)).ravel()).max() > 1e-3  # not the undropped one
"

# resume with both: the same bits as an uninterrupted run
R="--mode linear --features both --epochs 4 --batch 16 --accum 3 --dropout 0.25 --warmup 3 --clip 1 --seed $seed -j 2"
check "--accum 3 --dropout 0.25: 4 epochs uninterrupted" bm-train -q $R -o "$T/full.safetensors" "$T/mtr.bmr"
check "  ... 2 epochs, stopped, --resume 2 more" sh -c "bm-train -q $R --stop-after 2 -o '$T/part.safetensors' '$T/mtr.bmr' &&
  bm-train -q --mode linear --resume '$T/part.last.safetensors' -o '$T/part.safetensors' '$T/mtr.bmr'"
check "  ... the same bits" $G same "$T/full.last.safetensors" "$T/part.last.safetensors"
check "  ... the checkpoint keeps both options" sh -c "test \"\$($G config '$T/part.last.safetensors' options.accum)\" = 3 && test \"\$($G config '$T/part.last.safetensors' options.dropout)\" = 0.25"
bm-train -q $R --stop-after 2 -o "$T/part.safetensors" "$T/mtr.bmr"
check_refused "resume: another --accum" 2 '--accum 2 differs from the checkpoint.s 3' \
  bm-train --mode linear --resume "$T/part.last.safetensors" --accum 2 -o "$T/bad.safetensors" "$T/mtr.bmr"
check_refused "resume: another --dropout" 2 '--dropout 0.5 differs from the checkpoint.s 0.25' \
  bm-train --mode linear --resume "$T/part.last.safetensors" --dropout 0.5 -o "$T/bad.safetensors" "$T/mtr.bmr"
for a in "--accum 0" "--accum x" "--dropout 1" "--dropout -0.1" "--dropout nan"; do
  bm-train --mode linear -o x $a t </dev/null >/dev/null 2>"$T/err"
  check_eq "usage error, status 2: $a" "$?" 2
done
check "--help documents both" sh -c "bm-train --help | grep -q -- '--accum N' && bm-train --help | grep -q -- '--dropout P'"

# ---- finetune (the tiny model) ----
$PY "$BM_TESTS/../examples/make_demo_data.py" "$T/HAM" --per-class 6 --seed "$seed" >/dev/null
bm-decode --format ham10000 --size 48 --split train --test-fraction 0.2 -q --max-warnings 0 "$T/HAM" >"$T/ft.bmr" 2>/dev/null
FT="bm-train -q --mode finetune -m $MODEL --epochs 2 --lr-encoder 1e-3 --lr-head 1e-2 --warmup 2 --seed 3 -j 2"
check "finetune: --accum 2 --batch 8" $FT --accum 2 --batch 8 -o "$T/fa.safetensors" "$T/ft.bmr"
check "  ... --batch 16" $FT --batch 16 -o "$T/fb.safetensors" "$T/ft.bmr"
check "  ... --batch 8" $FT --batch 8 -o "$T/fc.safetensors" "$T/ft.bmr"
# The tower's gradients are float sums over the batch's tokens: 2 x 8 adds
# them in another order than 16, ~1e-7 relative per step, and AdamW's
# g / sqrt(v) passes that on: measured 6e-7 to 1.6e-6 of a tensor's largest
# value after 4 steps over three seeds; 2e-5 leaves room for others. --batch 8
# alone (twice the steps) differs by 1e-3 or more in every tensor. Not compared: qkv.bias,
# whose key third has a gradient of exactly zero (softmax does not see a
# shift of all scores), so AdamW turns its rounding noise into steps of lr.
check "  ... 2 x 8 is 16 within 2e-5 relative (tower and head)" reldiff "$T/fa.safetensors" "$T/fb.safetensors" visual.,head. 2e-5 qkv.bias
check_fails "  ... which 8 alone is not" reldiff "$T/fc.safetensors" "$T/fb.safetensors" visual.,head. 5e-4 qkv.bias
check "finetune: --dropout 0 is the same bits as without" sh -c "
  $FT --dropout 0 --batch 16 -o '$T/fz.safetensors' '$T/ft.bmr' && cmp '$T/fz.safetensors' '$T/fb.safetensors'"
check "finetune: --dropout 0.3 twice: the same bits" sh -c "
  $FT --dropout 0.3 --batch 16 -o '$T/fd1.safetensors' '$T/ft.bmr' && $FT --dropout 0.3 --batch 16 -o '$T/fd2.safetensors' '$T/ft.bmr' &&
  cmp '$T/fd1.safetensors' '$T/fd2.safetensors'"
check_fails "  ... another trajectory than without (the tower too)" reldiff "$T/fd1.safetensors" "$T/fb.safetensors" visual.trunk.blocks.0. 1e-6
