"""fuse_ref.py - inputs and the numpy reference for tests/t-fuse.sh.

  fuse_ref.py classes OUT SEED E NAMES [--neg] [--f16] [--dims-off] [--dup] ...
  fuse_ref.py data OUT SEED E N HEADER_JSON [--f16]
  fuse_ref.py check CLASSES DATA OUTPUT SCALE [MAP_JSON] [--pairwise]

Debian python3 with numpy and msgpack only (CI)."""
import json
import sys

import msgpack
import numpy as np


def tensor(a):
    dt = {np.dtype(np.float32): "f32", np.dtype(np.float16): "f16", np.dtype(np.int32): "i32"}[a.dtype]
    return {"dtype": dt, "shape": list(a.shape), "data": a.astype(a.dtype.newbyteorder("<")).tobytes()}


def untensor(t):
    dt = {"f32": "<f4", "f16": "<f2", "i32": "<i4"}[t["dtype"]]
    return np.frombuffer(t["data"], dtype=dt).reshape(t["shape"]).astype(np.float64)


def unit(rng, e):
    v = rng.standard_normal(e)
    return (v / np.linalg.norm(v)).astype(np.float32)


def read(path):
    with open(path, "rb") as f:
        return list(msgpack.Unpacker(f, raw=False))


def write(path, objs):
    with open(path, "wb") as f:
        for o in objs:
            f.write(msgpack.packb(o, use_bin_type=True))


def make_classes(out, seed, e, names, flags):
    rng = np.random.default_rng(seed)
    names = names.split(",")
    recs = []
    for i, n in enumerate(names):
        r = {"class": n, "txt_emb": tensor(unit(rng, e))}
        if "--neg" in flags or ("--neg-some" in flags and i == 0):
            r["txt_emb_neg"] = tensor(unit(rng, e))
        if "--f16" in flags:
            r["txt_emb"] = tensor(untensor(r["txt_emb"]).astype(np.float16))
        recs.append(r)
    if "--dims-off" in flags:
        recs[-1]["txt_emb"] = tensor(unit(rng, e + 1))
    if "--dup" in flags:
        recs.append(dict(recs[0]))
    if "--no-emb" in flags:
        del recs[-1]["txt_emb"]
    if "--int-emb" in flags:
        recs[-1]["txt_emb"] = tensor(np.arange(e, dtype=np.int32))
    header = {"version": 1, "task": "class-embeddings", "classes": [r["class"] for r in recs],
              "templates": ["this is an image of {}", "{} presented in image"], "embed_dim": e}
    if "--bad-task" in flags:
        header["task"] = "multiclass"
    if "--header-mismatch" in flags:
        header["classes"] = header["classes"][::-1]
    if "--bad-dim" in flags:
        header["embed_dim"] = e + 3
    write(out, ([{"header": header}] if "--no-header" not in flags else []) + recs)


def make_data(out, seed, e, n, header, flags):
    rng = np.random.default_rng(seed)
    objs = [{"header": json.loads(header)}] if header != "none" else []
    for i in range(n):
        r = {"id": "img%03d" % i, "split": "test", "target": int(rng.integers(0, 5)),
             "image": tensor(rng.integers(0, 255, (3, 4, 4)).astype(np.float32))}
        if i % 7 != 3:  # some records carry no embedding
            v = unit(rng, e)
            r["img_emb"] = tensor(v.astype(np.float16) if "--f16" in flags and i % 2 else v)
        if "--not-unit" in flags and i == 0:
            r["img_emb"] = tensor(unit(rng, e) * 3)
        objs.append(r)
    write(out, objs)


def check(classes, data, output, scale, mapping, pairwise):
    cl = read(classes)
    prompts = {r["class"]: r for r in cl[1:]}
    prompt_order = [r["class"] for r in cl[1:]]
    din = read(data)
    dout = read(output)
    hin = din[0]["header"] if din and "header" in din[0] else None
    recs_in = din[1:] if hin is not None else din
    assert "header" in dout[0], "output has no header"
    hout = dout[0]["header"]
    want_classes = hin["classes"] if hin and "classes" in hin else prompt_order
    assert hout["classes"] == want_classes, (hout["classes"], want_classes)
    want_task = "multilabel" if hin and hin.get("task") == "multilabel" else "multiclass"
    assert hout["task"] == want_task, hout["task"]
    for k, v in (hin or {}).items():
        if k not in ("classes", "task", "version"):
            assert hout[k] == v, "header key %s not passed through" % k
    used = [mapping.get(c, c) for c in want_classes]
    assert hout["zero_shot"]["prompt_classes"] == used
    W = np.stack([untensor(prompts[c]["txt_emb"]) for c in used])
    N = np.stack([untensor(prompts[c]["txt_emb_neg"]) for c in used]) if pairwise else None
    recs_out = dout[1:]
    assert len(recs_out) == len(recs_in), (len(recs_out), len(recs_in))
    worst = 0.0
    for a, b in zip(recs_in, recs_out):
        if "img_emb" not in a:
            assert a == b, "record without img_emb changed"
            continue
        assert b["id"] == a["id"] and b["target"] == a["target"] and b["image"] == a["image"]
        assert b["img_emb"] == a["img_emb"]
        x = untensor(a["img_emb"])
        s = untensor(b["scores"])
        p = untensor(b["prob"])
        assert b["scores"]["dtype"] == "f32" and b["scores"]["shape"] == [len(used)]
        assert b["prob"]["dtype"] == "f32" and b["prob"]["shape"] == [len(used)]
        if pairwise:
            ws = scale * (W @ x - N @ x)
            wp = 1 / (1 + np.exp(-ws))
        else:
            ws = scale * (W @ x)
            wp = np.exp(ws - ws.max())
            wp /= wp.sum()
            assert abs(p.sum() - 1) < 1e-5
        worst = max(worst, np.abs(s - ws).max() / max(1.0, scale), np.abs(p - wp).max())
    assert worst < 2e-6, "max difference %g" % worst
    print("checked %d records, max difference %.2g" % (len(recs_out), worst))


def main():
    a = sys.argv[1:]
    if a[0] == "classes":
        make_classes(a[1], int(a[2]), int(a[3]), a[4], a[5:])
    elif a[0] == "data":
        make_data(a[1], int(a[2]), int(a[3]), int(a[4]), a[5], a[6:])
    elif a[0] == "check":
        rest = [x for x in a[5:] if not x.startswith("--")]
        check(a[1], a[2], a[3], float(a[4]), json.loads(rest[0]) if rest else {}, "--pairwise" in a)
    else:
        sys.exit("fuse_ref.py: unknown command %s" % a[0])


if __name__ == "__main__":
    main()
