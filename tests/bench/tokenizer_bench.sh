#!/bin/sh
# tokenizer_bench.sh - tokens/s of the C tokenizer next to HuggingFace's fast
# tokenizer (the pyenv python3 with transformers, when there is one) on the
# same ~4 MB of caption-like text, one thread each, context 256.
# Numbers, not pass/fail. Run on a quiet machine.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${BM_BUILD:-$root/build}
vocab=$root/tests/fixtures/vocab-bert-uncased.txt
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
[ -f "$build/libbm.a" ] || { echo "tokenizer_bench: build first (make)" >&2; exit 1; }
${CC:-cc} -O2 -march=x86-64-v2 -I"$root/common" "$here/tokenizer_bench.c" "$build/libbm.a" \
  $(pkg-config --libs libutf8proc) -lm -o "$tmp/bench"
# Caption-like lines: vocabulary words, capitals, punctuation, some accents.
${PY:-/usr/bin/python3} - "$vocab" "$tmp/text.txt" <<'PYEOF'
import random, sys
words = [w for w in open(sys.argv[1], encoding="utf-8").read().split("\n")[1996:] if w.isalpha() and w.isascii()]
extra = ["pneumonia", "cardiomegaly", "effusion", "Ångström", "naïve", "café", "X-ray", "(PA)", "T2-weighted", "肺炎"]
r = random.Random(0)
with open(sys.argv[2], "w", encoding="utf-8") as f:
    size = 0
    while size < 4_000_000:
        n = r.randint(5, 40)
        ws = [r.choice(extra) if r.random() < 0.05 else r.choice(words) for _ in range(n)]
        ws = [w.capitalize() if r.random() < 0.1 else w for w in ws]
        line = " ".join(ws) + r.choice([".", ",", ";", "!", "?", ""])
        f.write(line + "\n")
        size += len(line) + 1
PYEOF
"$tmp/bench" "$vocab" "$tmp/text.txt" 3
if python3 -c "import transformers" 2>/dev/null; then
  RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 python3 - "$vocab" "$tmp/text.txt" <<'PYEOF'
import os, shutil, sys, tempfile, time
from transformers import AutoTokenizer
d = tempfile.mkdtemp()
shutil.copy(sys.argv[1], os.path.join(d, "vocab.txt"))
open(os.path.join(d, "tokenizer_config.json"), "w").write('{"do_lower_case": true, "tokenizer_class": "BertTokenizer"}')
tok = AutoTokenizer.from_pretrained(d)
lines = open(sys.argv[2], encoding="utf-8").read().split("\n")[:-1]
nbytes = os.path.getsize(sys.argv[2])
best = 1e30
for _ in range(3):
    t0 = time.perf_counter()
    cleaned = [" ".join(x.split()) for x in lines]  # open_clip's whitespace clean
    ids = tok(cleaned, max_length=256, truncation=True)["input_ids"]
    best = min(best, time.perf_counter() - t0)
n = sum(len(x) for x in ids)
print("HF fast (batch, 1 thread, with open_clip's whitespace clean): %d lines, %d tokens, %.2f MB in %.3f s: %.0f tokens/s, %.0f lines/s, %.1f MB/s"
      % (len(lines), n, nbytes / 1e6, best, n / best, len(lines) / best, nbytes / 1e6 / best))
best = 1e30
back = tok.backend_tokenizer
back.enable_truncation(256)
for _ in range(3):
    t0 = time.perf_counter()
    enc = back.encode_batch([" ".join(x.split()) for x in lines])
    best = min(best, time.perf_counter() - t0)
n = sum(len(e.ids) for e in enc)
print("HF tokenizers backend (encode_batch, 1 thread):                %d lines, %d tokens, %.2f MB in %.3f s: %.0f tokens/s, %.0f lines/s, %.1f MB/s"
      % (len(lines), n, nbytes / 1e6, best, n / best, len(lines) / best, nbytes / 1e6 / best))
PYEOF
else
  echo "HF fast: transformers not installed, no comparison"
fi
