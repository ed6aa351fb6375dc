#!/bin/sh
# embed_bench.sh - the towers' speed on CPU next to PyTorch on the same
# machine and thread count (make bench). Full-size BiomedCLIP with random
# weights (built once by tests/ref/parity_full.sh's generator into
# build/full-model). Loading time is measured on an empty input and taken off.
#   image tower: batch 32, images/s, bm-embed-img vs timm ViT-B/16 + linear head
#   text tower:  prompts of 10-20 tokens, texts/s, bm-embed-txt (real lengths)
#                vs BertModel + MLP projection on inputs padded to 256 as
#                open_clip does
# Each side runs ROUNDS times, alternating, and its best rate counts (a
# shared machine's load comes and goes).
# Environment: THREADS (default: all cores), NIMG (default 96), NTXT (512), ROUNDS (2),
# TORCH_PY (python with torch/timm/transformers), BM_BIN, BM_BUILD.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
BM_BIN=${BM_BIN:-$here/../bin}
BM_BUILD=${BM_BUILD:-$here/../build}
PY=${PY:-/usr/bin/python3}
TORCH_PY=${TORCH_PY:-python3}
THREADS=${THREADS:-$(nproc)}
NIMG=${NIMG:-96}
NTXT=${NTXT:-512}
ROUNDS=${ROUNDS:-2}
model=$BM_BUILD/full-model
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [ ! -f "$model/open_clip_pytorch_model.bin" ]; then
  "$TORCH_PY" "$here/ref/make_tiny_model.py" full "$model" "$BM_BUILD/full-embed" >&2
fi
"$PY" - "$work" "$NIMG" "$NTXT" "$model/vocab.txt" <<'PYEOF'
import sys, msgpack, numpy as np
work, nimg, ntxt, vocab = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
rng = np.random.default_rng(1)
with open(work + "/img.bmr", "wb") as f:
    for i in range(nimg):
        a = rng.integers(0, 256, (3, 224, 224), dtype=np.uint8)
        f.write(msgpack.packb({"id": i, "image": {"dtype": "u8", "shape": [3, 224, 224], "data": a.tobytes()}}))
words = [w for w in open(vocab).read().split("\n") if w.isalpha()]
with open(work + "/txt.bmr", "wb") as f:
    for i in range(ntxt):  # 8-18 whole-word pieces + [CLS] [SEP]: 10-20 tokens
        f.write(msgpack.packb({"id": i, "text": " ".join(rng.choice(words, int(rng.integers(8, 19))))}))
open(work + "/empty.bmr", "wb").close()
PYEOF

# seconds and peak RSS (MB) of a command: "SECS MB"
measure() {
  if [ -x /usr/bin/time ]; then
    /usr/bin/time -f "%e %M" -o "$work/time" "$@" > /dev/null
    awk '{printf "%s %.0f\n", $1, $2 / 1024}' "$work/time"
  else
    s=$(date +%s.%N); "$@" > /dev/null; e=$(date +%s.%N)
    echo "$(echo "$e - $s" | bc) ?"
  fi
}
rate() { awk -v n="$1" -v t="$2" -v l="$3" 'BEGIN { printf "%.2f", n / (t - l) }'; }

best() { awk -v a="$1" -v b="$2" 'BEGIN { print (a + 0 > b + 0) ? a : b }'; }
c_img=0 c_txt=0 t_img=0 t_txt=0
run_c() {
  set -- $(measure "$BM_BIN/bm-embed-img" -q -m "$model" --threads "$THREADS" < "$work/empty.bmr"); img_load=$1
  set -- $(measure "$BM_BIN/bm-embed-img" -q -m "$model" --threads "$THREADS" --batch 32 < "$work/img.bmr"); img_t=$1 img_mb=$2
  set -- $(measure "$BM_BIN/bm-embed-txt" -q -m "$model" --threads "$THREADS" < "$work/empty.bmr"); txt_load=$1
  set -- $(measure "$BM_BIN/bm-embed-txt" -q -m "$model" --threads "$THREADS" --batch 32 < "$work/txt.bmr"); txt_t=$1 txt_mb=$2
  c_img=$(best "$c_img" "$(rate "$NIMG" "$img_t" "$img_load")")
  c_txt=$(best "$c_txt" "$(rate "$NTXT" "$txt_t" "$txt_load")")
}
run_torch() {
  torch_out=$("$TORCH_PY" - "$THREADS" "$NIMG" "$NTXT" <<'PYEOF'
import resource, sys, time
import torch, timm
from transformers import BertConfig, BertModel
threads, nimg, ntxt = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(threads)
vit = timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=0).eval()
head = torch.nn.Linear(768, 512, bias=False)
x = torch.randn(32, 3, 224, 224)
with torch.inference_mode():
    torch.nn.functional.normalize(head(vit(x)), dim=-1)  # warm-up: a whole batch
    t = time.perf_counter()
    for _ in range(max(1, nimg // 32)):
        torch.nn.functional.normalize(head(vit(x)), dim=-1)
    img = max(1, nimg // 32) * 32 / (time.perf_counter() - t)
bert = BertModel(BertConfig(vocab_size=30522, max_position_embeddings=512), add_pooling_layer=False).eval()
proj = torch.nn.Sequential(torch.nn.Linear(768, 640, bias=False), torch.nn.GELU(), torch.nn.Linear(640, 512, bias=False))
ids = torch.zeros(32, 256, dtype=torch.long)
for i in range(32):
    n = 10 + i % 11
    ids[i, :n] = torch.randint(1000, 30000, (n,))
mask = (ids != 0).long()
with torch.inference_mode():
    bert(input_ids=ids[:2], attention_mask=mask[:2])
    t = time.perf_counter()
    for _ in range(max(1, ntxt // 32 // 4)):
        h = bert(input_ids=ids, attention_mask=mask).last_hidden_state[:, 0]
        torch.nn.functional.normalize(proj(h), dim=-1)
    txt = max(1, ntxt // 32 // 4) * 32 / (time.perf_counter() - t)
print(f"{img:.2f} {txt:.2f} {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} {torch.__version__}")
PYEOF
)
  set -- $torch_out
  t_img=$(best "$t_img" "$1") t_txt=$(best "$t_txt" "$2") t_mb=$3 t_ver=$4
}
r=0
while [ $r -lt "$ROUNDS" ]; do run_c; run_torch; r=$((r + 1)); done
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $THREADS threads ($(nproc) cores), best of $ROUNDS rounds"
echo "image tower, batch 32, $NIMG images: bm-embed-img $c_img images/s (peak RSS $img_mb MB, load ${img_load}s)," \
  "PyTorch $t_ver $t_img images/s: ratio $(awk -v a="$c_img" -v b="$t_img" 'BEGIN{printf "%.2f", a/b}')"
echo "text tower, 10-20 token prompts: bm-embed-txt $c_txt texts/s (peak RSS $txt_mb MB)," \
  "PyTorch padded to 256 $t_txt texts/s: ratio $(awk -v a="$c_txt" -v b="$t_txt" 'BEGIN{printf "%.2f", a/b}')"
echo "PyTorch process peak RSS (both towers, random init): $t_mb MB"
