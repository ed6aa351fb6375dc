#!/bin/sh
# The record format from outside: Python (examples/read_records.py) writes and
# reads streams that the C reader and writer (bm-cat, bm-inspect) pass through
# bit for bit; shard outputs concatenate with bm-cat; bad input is refused.
. "$BM_TESTS/lib.sh"
EX="$BM_TESTS/../examples"

cat >"$T/gen.py" <<'PY'
import sys, numpy as np
sys.path.insert(0, sys.argv[1])
import read_records as rr
rng = np.random.default_rng(int(sys.argv[3]))
recs = []
for i in range(int(sys.argv[4])):
    recs.append({"id": f"img{i:03d}", "split": ["train", "val", "test"][i % 3],
                 "group": f"p{i // 2}", "target": rng.integers(0, 2, 4).astype(np.float32),
                 "image": rng.integers(0, 256, (3, 8, 8), dtype=np.uint8),
                 "img_emb": rng.standard_normal(16).astype(np.float32),
                 "img_tokens": rng.standard_normal((5, 16)).astype(np.float16),
                 "ids": rng.integers(-2**40, 2**40, 7, dtype=np.int64),
                 "len": rng.integers(-9, 9, 3, dtype=np.int32),
                 "text": "58 year old male, PA view \u00e9\u4e2d", "meta": {"age": 58, "sex": "M"}})
with open(sys.argv[2], "wb") as f:
    rr.write(f, {"version": 1, "task": "multilabel", "classes": ["a", "b", "c", "d"]}, recs)
PY
cat >"$T/same.py" <<'PY'
import sys, numpy as np
sys.path.insert(0, sys.argv[1])
import read_records as rr
a = list(rr.read(open(sys.argv[2], "rb")))
b = list(rr.read(open(sys.argv[3], "rb")))
assert len(a) == len(b) and len(a) > 0, (len(a), len(b))
assert a[0][0] == b[0][0], (a[0][0], b[0][0])
for (_, x), (_, y) in zip(a, b):
    assert x.keys() == y.keys(), (x.keys(), y.keys())
    for k in x:
        if isinstance(x[k], np.ndarray):
            assert x[k].dtype == y[k].dtype and x[k].shape == y[k].shape and \
                x[k].tobytes() == y[k].tobytes(), k
        else:
            assert x[k] == y[k], k
print(len(a), "records identical")
PY
seed=$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')
check "python writes a stream" $PY "$T/gen.py" "$EX" "$T/a.bmr" "$seed" 20
check "bm-cat passes records through bit for bit (file)" sh -c "bm-cat '$T/a.bmr' > '$T/b.bmr'"
check "python reads back what C wrote, identical" $PY "$T/same.py" "$EX" "$T/a.bmr" "$T/b.bmr"
check "bm-cat works in a pipe" sh -c "bm-cat < '$T/a.bmr' | bm-cat > '$T/c.bmr' && cmp '$T/b.bmr' '$T/c.bmr'"
check "example reader prints the stream" sh -c "$PY '$EX/read_records.py' '$T/b.bmr' | tail -1 | grep -qx '20 records'"

# shards concatenate: two halves glued by bm-cat equal the whole
$PY "$T/gen.py" "$EX" "$T/s1.bmr" 7 5 && $PY "$T/gen.py" "$EX" "$T/s2.bmr" 8 6
check "bm-cat concatenates streams under one header" sh -c \
  "bm-cat '$T/s1.bmr' '$T/s2.bmr' | bm-inspect --summary | tail -1 | grep -q '\"records\": *11'"
check_fails "plain cat of two streams is refused by readers" sh -c "cat '$T/s1.bmr' '$T/s2.bmr' | bm-inspect"
check "the refusal names the record and byte" sh -c \
  "cat '$T/s1.bmr' '$T/s2.bmr' | bm-inspect 2>&1 >/dev/null | grep -q 'record 6 (byte [0-9]*): a header record in the middle'"

# headers that disagree on classes are refused
$PY - "$EX" "$T/other.bmr" <<'PY'
import sys; sys.path.insert(0, sys.argv[1]); import read_records as rr
rr.write(open(sys.argv[2], "wb"), {"version": 1, "task": "multilabel", "classes": ["x"]}, [{"id": "q"}])
PY
check_fails "bm-cat refuses streams with different classes" bm-cat "$T/s1.bmr" "$T/other.bmr"

# empty input, truncated input, SIGPIPE, help
check "empty input gives a header-only stream" sh -c "bm-cat < /dev/null > '$T/e.bmr' && bm-inspect '$T/e.bmr' | grep -q header"
head -c 3000 "$T/a.bmr" > "$T/trunc.bmr"
check_fails "truncated stream exits non-zero" bm-inspect "$T/trunc.bmr"
check "truncated stream: message says truncated" sh -c "bm-inspect '$T/trunc.bmr' 2>&1 >/dev/null | grep -q 'truncated'"
bm-cat "$T/a.bmr" "$T/a.bmr" "$T/a.bmr" "$T/a.bmr" > "$T/big.bmr"
check "SIGPIPE: a reader that stops early ends bm-cat quietly" sh -c \
  "bm-cat '$T/big.bmr' 2>'$T/err' | head -c 10 >/dev/null; test ! -s '$T/err'"
check "--help prints usage" sh -c "bm-cat --help | grep -q Usage && bm-inspect --help | grep -q Usage"
check_fails "unknown option is a usage error" bm-cat --bogus
check "usage error exits 2" sh -c "bm-cat --bogus 2>/dev/null; test \$? -eq 2"
check_fails "missing file exits non-zero" bm-cat "$T/nonexistent.bmr"

# the Python reader on real output: bm-decode's records of a generated release
$PY "$EX/make_demo_data.py" "$T/HAM" --per-class 2 --seed 3 >/dev/null
bm-decode --format ham10000 --size 32 --text -q "$T/HAM" > "$T/decoded.bmr" 2>/dev/null
check "example reader reads bm-decode output: header, keys, dtypes, shapes" $PY - "$EX" "$T/decoded.bmr" <<'PY'
import sys, numpy as np
sys.path.insert(0, sys.argv[1])
import read_records as rr
recs = list(rr.read(open(sys.argv[2], "rb")))
assert len(recs) == 14, len(recs)
h = recs[0][0]
assert h["task"] == "multiclass" and h["classes"] == ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"], h
for _, r in recs:
    assert r["image"].dtype == np.uint8 and r["image"].shape == (3, 32, 32)
    assert r["target"].dtype == np.float32 and r["target"].sum() == 1
    assert r["split"] in ("train", "val", "test") and r["id"].startswith("ISIC_") and r["group"].startswith("HAM_")
    assert isinstance(r["text"], str) and isinstance(r["meta"], dict)
PY
