#!/bin/sh
# t-weights.sh - what bm_safetensors_write produces is a safetensors file by
# the format's own rules, read here with nothing but numpy (CI has no
# `safetensors` package; tests/ref/make_loader_fixtures.py covers reading
# Python-written files, and --verify-c there checks this against the real
# library on a machine that has it).
. "$BM_TESTS/lib.sh"
check "C writes a random safetensors file" sh -c "'$BM_BUILD/tests/test_weights' --write '$T/c.safetensors' >'$T/expected.txt'"
check "numpy reads it back bit for bit" "$PY" - "$T/c.safetensors" "$T/expected.txt" <<'PYEOF'
import json, struct, sys
import numpy as np
path, expected = sys.argv[1], sys.argv[2]
raw = open(path, "rb").read()
(n,) = struct.unpack("<Q", raw[:8])
assert 8 + n <= len(raw), "header past the file"
assert (8 + n) % 8 == 0, "data not 8-aligned"
hdr = json.loads(raw[8:8 + n].decode("utf-8"))
meta = hdr.pop("__metadata__")
assert meta == {"config": '{"a": 1}', "vocab": "[PAD]\n[UNK]\n"}, meta
data = raw[8 + n:]
np_dt = {"f32": "<f4", "f16": "<f2", "bf16": "<u2", "i64": "<i8", "i32": "<i4", "u8": "u1"}
st_dt = {"f32": "F32", "f16": "F16", "bf16": "BF16", "i64": "I64", "i32": "I32", "u8": "U8"}
lines = [l.split() for l in open(expected)]
assert len(lines) == len(hdr) > 0, (len(lines), len(hdr))
end = 0
for name, dt, shape, hexb in lines:
    e = hdr[name]
    shp = [] if shape == "-" else [int(x) for x in shape.split(",")]
    assert e["dtype"] == st_dt[dt] and e["shape"] == shp, (name, e)
    b, f = e["data_offsets"]
    assert b == end, "tensors must be packed in order without holes"
    end = f
    a = np.frombuffer(data[b:f], dtype=np_dt[dt]).reshape(shp)
    want = np.frombuffer(bytes.fromhex(hexb), dtype=np_dt[dt]).reshape(shp)
    assert a.tobytes() == want.tobytes(), name
assert end == len(data), "trailing bytes after the last tensor"
PYEOF
