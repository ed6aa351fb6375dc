#!/usr/bin/env python3
"""Helpers of tests/t-train-linear.sh (numpy + msgpack only).

  data OUT SEED N TASK C DIMS [--part=K] [--no-header] [--drop-key=K@I] [--huge]
      records whose classes are separable: img_emb (and txt_emb when DIMS is
      "a,b") = the sum of the record's positive classes' centres + noise. The
      centres come from SEED, the samples from SEED and K: parts of one SEED
      (train, val, test) share their classes.
  recfg SRC DST KEY=JSON...     a copy of a checkpoint with config keys replaced
  parity LOG REF.json CASE      the step losses of a --log within 1e-4 relative
  same A.safetensors B.safetensors   every tensor bit-identical
  tensors CKPT                  print name dtype shape of each tensor
  config CKPT KEY.KEY...        print a value of the config metadata (JSON)
  strata TRAIN CKPT FRACTION    the subset's positives per class as the rule says
  min-acc SCORE.json X          accuracy (multiclass) / auc_macro (multilabel) >= X
"""
import json
import struct
import sys

import numpy as np

sys.path.insert(0, __file__.rsplit("/tests/", 1)[0] + "/examples")
import read_records as rr  # noqa: E402


def data(out, seed, n, task, C, dims, *flags):
    n, C = int(n), int(C)
    dims = [int(d) for d in dims.split(",")]
    D = sum(dims)
    centres = np.random.default_rng(int(seed)).standard_normal((C, D)) * 1.5
    part = [int(f.split("=")[1]) for f in flags if f.startswith("--part=")] or [0]
    rng = np.random.default_rng([int(seed), part[0]])
    if task == "multiclass":
        Y = np.zeros((n, C), np.float32)
        Y[np.arange(n), rng.integers(0, C, n)] = 1
    else:
        Y = (rng.random((n, C)) < 0.25).astype(np.float32)
    X = (Y @ centres + rng.standard_normal((n, D)) * 2.5).astype(np.float32)
    drop = [f.split("=", 1)[1] for f in flags if f.startswith("--drop-key=")]
    recs = []
    for i in range(n):
        r = {"id": f"r{i}", "target": Y[i], "img_emb": X[i, :dims[0]]}
        if len(dims) > 1:
            r["txt_emb"] = X[i, dims[0]:]
        for d in drop:
            key, at = d.split("@")
            if int(at) == i + 1:
                del r[key]
        if "--huge" in flags:
            r["img_emb"] = np.full(dims[0], 3e38 if i % 2 else -3e38, np.float32)
        recs.append(r)
    header = {"version": 1, "task": task, "classes": [f"class {k}" for k in range(C)]}
    with open(out, "wb") as f:
        if "--no-header" in flags:
            pack = __import__("msgpack").Packer(use_bin_type=True).pack
            for r in recs:
                f.write(pack({k: rr.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in r.items()}))
        else:
            rr.write(f, header, recs)


def read_st(path):
    with open(path, "rb") as f:
        b = f.read()
    (hl,) = struct.unpack("<Q", b[:8])
    head = json.loads(b[8:8 + hl])
    meta = head.pop("__metadata__", {})
    base = 8 + hl
    out = {}
    for k, v in head.items():
        s, e = v["data_offsets"]
        assert v["dtype"] == "F32", (k, v["dtype"])
        out[k] = np.frombuffer(b[base + s:base + e], "<f4").reshape(v["shape"])
    return out, meta


def parity(log, ref, case):
    want = json.load(open(ref))[case]["losses"]
    got = [json.loads(line)["loss"] for line in open(log) if '"loss"' in line]
    assert len(got) == len(want), f"{len(got)} step losses, expected {len(want)}"
    for i, (g, w) in enumerate(zip(got, want)):
        rel = abs(g - w) / abs(w)
        assert rel < 1e-4, f"step {i + 1}: loss {g} vs torch {w} (relative {rel:.2e})"
    print(f"{len(got)} losses, worst relative difference "
          f"{max(abs(g - w) / abs(w) for g, w in zip(got, want)):.2e}")


def recfg(src, dst, *kv):
    with open(src, "rb") as f:
        b = f.read()
    (hl,) = struct.unpack("<Q", b[:8])
    head = json.loads(b[8:8 + hl])
    cfg = json.loads(head["__metadata__"]["config"])
    for item in kv:
        k, v = item.split("=", 1)
        cfg[k] = json.loads(v)
    head["__metadata__"]["config"] = json.dumps(cfg)
    h = json.dumps(head).encode()
    h += b" " * (-len(h) % 8)
    with open(dst, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b[8 + hl:])


def same(a, b):
    ta, _ = read_st(a)
    tb, _ = read_st(b)
    assert sorted(ta) == sorted(tb), (sorted(ta), sorted(tb))
    for k in ta:
        assert ta[k].shape == tb[k].shape and ta[k].tobytes() == tb[k].tobytes(), f"tensor {k} differs"
    assert any(np.any(v != 0) for v in ta.values()), "all tensors are zero"


def tensors(path):
    t, _ = read_st(path)
    for k, v in t.items():
        print(k, "f32", list(v.shape))


def config(path, keys):
    _, meta = read_st(path)
    v = json.loads(meta["config"])
    for k in keys.split("."):
        v = v[int(k)] if isinstance(v, list) else v[k]
    print(json.dumps(v))


def strata(train, ckpt, fraction):
    F = float(fraction)
    hdr, Y = None, []
    with open(train, "rb") as f:
        for h, r in rr.read(f):
            hdr = h
            Y.append(np.asarray(r["target"]))
    Y = np.array(Y) > 0.5
    _, meta = read_st(ckpt)
    cfg = json.loads(meta["config"])
    pos = np.array(cfg["train"]["positives"])
    used = cfg["train"]["used"]
    n, C = Y.shape
    npos = Y.sum(0)
    if hdr["task"] == "multiclass":
        want = np.maximum(1, np.floor(F * npos + 0.5)).astype(int)
        assert (pos == want).all(), f"positives per class {pos.tolist()}, expected {want.tolist()}"
        assert used == want.sum(), (used, want.sum())
    else:
        assert ((pos >= 1) | (npos == 0)).all(), f"a class lost all its positives: {pos.tolist()}"
        assert used < n and used >= round(F * n) - 1, (used, n)
        # proportional: each class within a factor of two of F times its count, or 1
        lo = np.minimum(np.floor(F * npos / 2), 1)
        assert (pos >= lo).all(), (pos.tolist(), npos.tolist())
    print("used", used, "of", n, "positives", pos.tolist())


def min_acc(score, x):
    s = json.load(open(score))
    key = "accuracy" if s["task"] == "multiclass" else "auc_macro"
    assert s[key] >= float(x), f"{key} {s[key]} < {x}"
    print(key, s[key])


cmd, args = sys.argv[1], sys.argv[2:]
{"data": data, "recfg": recfg, "parity": parity, "same": same, "tensors": tensors, "config": config, "strata": strata,
 "min-acc": min_acc}[cmd](*args)
