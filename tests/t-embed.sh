#!/bin/sh
# bm-embed-img and bm-embed-txt against open_clip: the tiny BiomedCLIP-shaped
# model in fixtures/tiny-model and the embeddings open_clip computed for the
# inputs in fixtures/tiny-embed (tests/ref/make_tiny_model.py wrote both).
. "$BM_TESTS/lib.sh"
M=$BM_TESTS/fixtures/tiny-model
D=$BM_TESTS/fixtures/tiny-embed

# ---- image tower ----
check "img: embeddings and tokens equal open_clip (1e-4)" \
  sh -c "bm-embed-img -q -m $M --tokens < $D/images.bmr > $T/img.bmr && $PY $BM_TESTS/bmr_compare.py $T/img.bmr $D/images-ref.bmr --tensors img_emb,img_tokens"
check "img: other batch size and threads, file argument" \
  sh -c "bm-embed-img -q -m $M --batch 2 --threads 2 $D/images.bmr > $T/img2.bmr && $PY $BM_TESTS/bmr_compare.py $T/img2.bmr $D/images-ref.bmr --tensors img_emb"
check "img: passthrough of records without image, unknown keys, header" $PY - "$T/img.bmr" <<'PYEOF'
import sys, msgpack
recs = list(msgpack.Unpacker(open(sys.argv[1], "rb"), raw=False))
h = recs[0]["header"]
assert h["task"] == "test" and h["source"] == "make_tiny_model.py" and h["embed_dim"] == 32 and h["img_model"], h
ids = [r["id"] for r in recs[1:]]
assert ids == ["img0", "img1", "noimage", "img2", "img3", "img4"], ids
assert recs[3] == {"id": "noimage", "text": "a record without an image"}, recs[3]
assert recs[1]["keep"] == {"n": 0, "s": "passthrough"} and recs[1]["image"]["shape"] == [3, 48, 48]
assert "img_tokens" in recs[1] and recs[1]["img_tokens"]["dtype"] == "f16"
PYEOF
bm-embed-img -q -m $M < $D/images.bmr > $T/img3.bmr
check "img: no img_tokens without --tokens" $PY -c "
import sys, msgpack
assert not any('img_tokens' in r for r in msgpack.Unpacker(open('$T/img3.bmr','rb'), raw=False))"

: > $T/empty.bmr
check "img: empty input gives a header only" sh -c "bm-embed-img -q -m $M < $T/empty.bmr > $T/e.bmr"
check_eq "img: empty input: one header record" "$(bm-inspect $T/e.bmr | wc -l)" 1

$PY - "$T" <<'PYEOF'
import sys, msgpack, numpy as np
t = sys.argv[1]
rng = np.random.default_rng()
def rec(id, a, dt):
    return msgpack.packb({"id": id, "image": {"dtype": dt, "shape": list(a.shape), "data": a.tobytes()}})
open(t + "/small.bmr", "wb").write(rec("small", rng.integers(0, 255, (3, 32, 32), dtype=np.uint8), "u8"))
open(t + "/float.bmr", "wb").write(rec("img-f", rng.random((3, 48, 48), dtype=np.float32), "f32"))
open(t + "/gray.bmr", "wb").write(rec("gray", rng.integers(0, 255, (1, 48, 48), dtype=np.uint8), "u8"))
PYEOF
check_fails "img: wrong image size fails" sh -c "bm-embed-img -q -m $M < $T/small.bmr > /dev/null 2> $T/err"
check "img: wrong size message names the record and the expected shape" \
  grep -q 'record 1 .*"image" is u8 \[3,32,32\]; this model expects u8 \[3,48,48\]' $T/err
check_fails "img: wrong dtype fails" sh -c "bm-embed-img -q -m $M < $T/float.bmr > /dev/null 2> $T/err"
check "img: wrong dtype message" grep -q '"image" is f32 \[3,48,48\]; this model expects u8' $T/err
check_fails "img: one channel fails" sh -c "bm-embed-img -q -m $M < $T/gray.bmr > /dev/null"

# ---- bad models (rewritten as .safetensors hub folders) ----
bad_model() { # name, bin2safetensors options...
  d=$T/$1; shift; mkdir -p $d; cp $M/open_clip_config.json $M/vocab.txt $d/
  $PY $BM_TESTS/bin2safetensors.py $M/open_clip_pytorch_model.bin $d/open_clip_model.safetensors "$@"
}
bad_model good
check "model: the same weights as .safetensors give the same embeddings" \
  sh -c "bm-embed-img -q -m $T/good < $D/images.bmr | $PY $BM_TESTS/bmr_compare.py /dev/stdin $D/images-ref.bmr --tensors img_emb"
bad_model half --half
check "model: float16 weights are converted (embeddings within 1e-2 of float32's)" \
  sh -c "bm-embed-img -q -m $T/half < $D/images.bmr | $PY $BM_TESTS/bmr_compare.py /dev/stdin $D/images-ref.bmr --tensors img_emb --tol 1e-2 &&
         bm-embed-txt -q -m $T/half < $D/texts.bmr 2>/dev/null | $PY $BM_TESTS/bmr_compare.py /dev/stdin $D/texts-ref.bmr --tensors txt_emb --tol 1e-2"
bad_model missing --drop visual.trunk.blocks.1.mlp.fc2.bias
check_fails "model: missing tensor fails" sh -c "bm-embed-img -q -m $T/missing < $D/images.bmr > /dev/null 2> $T/err"
check "model: missing tensor named with its shape" grep -q 'missing tensor visual.trunk.blocks.1.mlp.fc2.bias (expected shape \[64\])' $T/err
bad_model shape --reshape text.transformer.encoder.layer.1.attention.output.dense.weight=64x60
check_fails "model: misshapen tensor fails" sh -c "bm-embed-txt -q -m $T/shape < $D/texts.bmr > /dev/null 2> $T/err"
check "model: misshapen tensor named with both shapes" \
  grep -q 'tensor text.transformer.encoder.layer.1.attention.output.dense.weight has shape \[64,60\], expected \[64,64\]' $T/err
bad_model nohead --drop visual.head.proj.weight
check "model: the text tower loads without the image head" sh -c "bm-embed-txt -q -m $T/nohead < $T/empty.bmr > /dev/null"
mkdir -p $T/heads $T/theads && cp $M/* $T/heads/ && cp $M/* $T/theads/ && $PY - $T <<'PYEOF'
import json, sys
p = sys.argv[1] + "/heads/open_clip_config.json"
c = json.load(open(p))
del c["model_cfg"]["vision_cfg"]["head_width"]
json.dump(c, open(p, "w"))
p = sys.argv[1] + "/theads/open_clip_config.json"
c = json.load(open(p))
del c["bm_cfg"]
json.dump(c, open(p, "w"))
PYEOF
check_fails "model: vision heads come from head_width (width/64 = 1 head differs)" \
  sh -c "bm-embed-img -q -m $T/heads < $D/images.bmr | $PY $BM_TESTS/bmr_compare.py /dev/stdin $D/images-ref.bmr --tensors img_emb"
check_fails "model: text heads come from bm_cfg.text_heads (not open_clip's ignored text_cfg.heads)" \
  sh -c "bm-embed-txt -q -m $T/theads < $D/texts.bmr 2>/dev/null | $PY $BM_TESTS/bmr_compare.py /dev/stdin $D/texts-ref.bmr --tensors txt_emb"
check_fails "model: a path that does not exist fails" sh -c "bm-embed-img -q -m $T/nothing < $D/images.bmr > /dev/null"

# ---- text tower ----
check "txt: embeddings and tokens equal open_clip (1e-4)" \
  sh -c "bm-embed-txt -q -m $M --tokens --batch 3 < $D/texts.bmr > $T/txt.bmr 2> $T/err && $PY $BM_TESTS/bmr_compare.py $T/txt.bmr $D/texts-ref.bmr --tensors txt_emb,txt_tokens"
check "txt: the record without text is counted" grep -q '1 record without "text" passed through' $T/err
check "txt: passthrough and order" $PY - "$T/txt.bmr" <<'PYEOF'
import sys, msgpack
recs = list(msgpack.Unpacker(open(sys.argv[1], "rb"), raw=False))
assert recs[0]["header"]["task"] == "test" and recs[0]["header"]["embed_dim"] == 32
ids = [r["id"] for r in recs[1:]]
assert ids == ["txt0", "txt1", "txt2", "notext"] + ["txt%d" % i for i in range(3, 9)], ids
assert recs[4] == {"id": "notext", "caption": "no text key here"}
assert recs[1]["keep"] == [1, 2, {"x": None}]
# the long text is cut at the context: 256 tokens
assert [r for r in recs[1:] if r["id"] == "txt6"][0]["txt_tokens"]["shape"] == [256, 64]
PYEOF
check "txt: batch 1, one thread" \
  sh -c "bm-embed-txt -q -m $M --batch 1 --threads 1 $D/texts.bmr | $PY $BM_TESTS/bmr_compare.py /dev/stdin $D/texts-ref.bmr --tensors txt_emb"
$PY -c "
import msgpack
open('$T/badtext.bmr','wb').write(msgpack.packb({'id': 'x', 'text': 42}))"
check_fails "txt: a text that is not a string fails" sh -c "bm-embed-txt -q -m $M < $T/badtext.bmr > /dev/null 2> $T/err"
check "txt: the message names the record" grep -q 'record 1 .*"text" is not a string' $T/err
check "txt: empty input gives a header only" sh -c "bm-embed-txt -q -m $M < $T/empty.bmr > $T/e.bmr"
check_eq "txt: empty input: one header record" "$(bm-inspect $T/e.bmr | wc -l)" 1

# ---- zero-shot class embeddings ----
check "classes: file templates equal open_clip's recipe" \
  sh -c "bm-embed-txt -m $M --classes $D/classes.txt --templates $D/templates.txt > $T/cls.bmr && $PY $BM_TESTS/bmr_compare.py $T/cls.bmr $D/classes-ref.bmr --key class --tensors txt_emb --only templates=file"
check "classes: default templates (seed 001) equal open_clip's recipe" \
  sh -c "bm-embed-txt -m $M --classes $D/classes.txt > $T/cls2.bmr && $PY $BM_TESTS/bmr_compare.py $T/cls2.bmr $D/classes-ref.bmr --key class --tensors txt_emb --only templates=default"
check "classes: header" $PY - "$T/cls.bmr" <<'PYEOF'
import sys, msgpack
recs = list(msgpack.Unpacker(open(sys.argv[1], "rb"), raw=False))
h = recs[0]["header"]
assert h["task"] == "class-embeddings" and h["version"] == 1 and h["embed_dim"] == 32, h
assert abs(h["logit_scale"] - 2.659260036932778) < 1e-6, h  # log(1/0.07) as saved
assert h["classes"] == ["normal lung", "pneumonia", "melanoma"], h["classes"]
assert h["templates"] == ["this is an image of {}", "{} presented in image", "a photo of {}."], h
assert [r["class"] for r in recs[1:]] == h["classes"]
PYEOF
printf 'an image of\n' > $T/badtmpl.txt
check_fails "classes: a template without {} fails" bm-embed-txt -m $M --classes $D/classes.txt --templates $T/badtmpl.txt
check_fails "classes: a missing classes file fails" bm-embed-txt -m $M --classes $T/none.txt
printf 'pneumonia\tpneumonia\tno pneumonia\nedema\tlung edema\tclear lungs\n' > $T/neg.txt
printf 'x\tno pneumonia\ny\tclear lungs\n' > $T/negonly.txt
check "classes: a negative prompt adds txt_emb_neg, equal to embedding it as a class" sh -c "
  bm-embed-txt -m $M --classes $T/neg.txt > $T/neg.bmr && bm-embed-txt -m $M --classes $T/negonly.txt > $T/negonly.bmr &&
  $PY - $T/neg.bmr $T/negonly.bmr" <<'PYEOF'
import sys, msgpack
a = [r for r in msgpack.Unpacker(open(sys.argv[1], "rb"), raw=False) if "header" not in r]
b = [r for r in msgpack.Unpacker(open(sys.argv[2], "rb"), raw=False) if "header" not in r]
assert [r["class"] for r in a] == ["pneumonia", "edema"]
assert all(x["txt_emb_neg"]["data"] == y["txt_emb"]["data"] for x, y in zip(a, b))
assert all(x["txt_emb_neg"]["data"] != x["txt_emb"]["data"] for x in a)
PYEOF
printf 'a\tb\t\n' > $T/negbad.txt
check_fails "classes: an empty negative prompt fails" bm-embed-txt -m $M --classes $T/negbad.txt

# ---- command line ----
check "img: --help" sh -c "bm-embed-img --help | grep -q Usage"
check "txt: --help" sh -c "bm-embed-txt --help | grep -q Usage"
bm-embed-img < $D/images.bmr > /dev/null 2>&1
check_eq "img: no -m is a usage error" $? 2
bm-embed-txt -m $M --batch 0 < $D/texts.bmr > /dev/null 2>&1
check_eq "txt: --batch 0 is a usage error" $? 2

# ---- pipes and BLAS kernels ----
$PY -c "
import msgpack, numpy as np
rng = np.random.default_rng()
with open('$T/many.bmr', 'wb') as f:
    for i in range(40):  # ~300 KB out: more than a pipe holds
        a = rng.integers(0, 256, (3, 48, 48), dtype=np.uint8)
        f.write(msgpack.packb({'id': i, 'image': {'dtype': 'u8', 'shape': [3, 48, 48], 'data': a.tobytes()}}))"
sh -c "bm-embed-img -q -m $M --batch 4 < $T/many.bmr 2> $T/pipe.err; echo \$? > $T/rc" | head -c 10 > /dev/null
check_eq "img: exit status 141 when the reader goes away" "$(cat $T/rc)" 141
check_eq "img: ... and no message" "$(cat $T/pipe.err)" ""
check "img: equal results with OpenBLAS's SSE3 kernels (OPENBLAS_CORETYPE=Prescott)" \
  sh -c "OPENBLAS_CORETYPE=Prescott bm-embed-img -q -m $M < $D/images.bmr | $PY $BM_TESTS/bmr_compare.py /dev/stdin $D/images-ref.bmr --tensors img_emb"

# ---- zero-shot as a pipeline: embed-img | fuse against embed-txt --classes ----
bm-embed-txt -m $M --classes $D/classes.txt --templates $D/templates.txt > $T/zs-cls.bmr
check "pipeline: bm-embed-img | bm-fuse --classes gives 100 * cosine to open_clip's class embeddings" sh -c "
  bm-embed-img -q -m $M < $D/images.bmr | bm-fuse -q --classes $T/zs-cls.bmr > $T/zs.bmr &&
  $PY - $T/zs.bmr $D/images-ref.bmr $D/classes-ref.bmr" <<'PYEOF'
import sys, msgpack, numpy as np
rd = lambda p: [r for r in msgpack.Unpacker(open(p, "rb"), raw=False) if "header" not in r]
arr = lambda t: np.frombuffer(t["data"], dtype="<f4").reshape(t["shape"])
img = {r["id"]: arr(r["img_emb"]) for r in rd(sys.argv[2])}
cls = np.stack([arr(r["txt_emb"]) for r in rd(sys.argv[3]) if r["templates"] == "file"])
n = 0
for r in rd(sys.argv[1]):
    if r["id"] in img:
        assert np.abs(arr(r["scores"]) - 100 * cls @ img[r["id"]]).max() < 1e-2, r["id"]
        n += 1
assert n == 5, n
PYEOF
