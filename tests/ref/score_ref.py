#!/usr/bin/python3
"""score_ref.py - random record streams for bm-score, and the figures it must
report, computed independently with scikit-learn 1.2 and numpy.

Run by tests/t-score*.sh with Debian's python3 (numpy, msgpack, sklearn).

  gen-class OUT --task multiclass|multilabel --n N --c C --seed S --kind KIND
            [--source prob|scores|mixed]        a classification stream
  check STREAM GOT.json --what LABEL [--val VAL --metric f1|youden]
            [--threshold T] [--bootstrap B --seed S]
                                                compare bm-score --json with sklearn
  gen-pairs OUT --n N --d D --seed S --kind quant|dup|random|dupfloat
  check-retrieval STREAM GOT.json --what LABEL [--ties pessimistic|optimistic]
  check-aggregate GOT.json RUN.json... --what LABEL
  bad KIND OUT                                  a stream broken at record 3
  batch FILE                                    run the commands of FILE, one per line
                                                (shell quoting), in this one process

KIND for gen-class: continuous, ties (few distinct scores), imbalance (one
class in ~200), degenerate (a class with one target value), onepercls (each
class exactly once: multiclass n = C). Every record also carries keys
bm-score must ignore (id, an image tensor, an embedding).
Each check prints "ok - ..." or "not ok - ..." lines for tests/run.sh.
"""
import argparse
import json
import math
import sys
import warnings
from fractions import Fraction

import msgpack
import numpy as np

warnings.filterwarnings("ignore")  # sklearn's zero-division warnings: we mask those cases

TOL = 1e-9
M64 = (1 << 64) - 1


# ---------------------------------------------------------------- streams
def tensor(a):
    a = np.ascontiguousarray(a)
    dt = {np.dtype(np.float32): "f32", np.dtype(np.uint8): "u8", np.dtype(np.float16): "f16",
          np.dtype(np.int32): "i32", np.dtype(np.int64): "i64"}[a.dtype]
    return {"dtype": dt, "shape": list(a.shape), "data": a.astype(a.dtype.newbyteorder("<")).tobytes()}


def write_stream(path, header, records):
    with open(path, "wb") as f:
        if header is not None:
            f.write(msgpack.packb({"header": header}, use_bin_type=True))
        for r in records:
            f.write(msgpack.packb(r, use_bin_type=True))


def read_stream(path):
    with open(path, "rb") as f:
        items = list(msgpack.Unpacker(f, raw=False))
    header = items[0]["header"] if items and "header" in items[0] else None
    recs = items[1:] if header is not None else items
    return header, recs


def arr(t):
    dt = {"f32": "<f4", "u8": "u1", "f16": "<f2", "i32": "<i4", "i64": "<i8"}[t["dtype"]]
    return np.frombuffer(t["data"], dtype=dt).reshape(t["shape"]).astype(np.float64).ravel()


def extras(rng, i):
    return {"id": "rec%05d" % i, "image": tensor(rng.integers(0, 256, (3, 4, 4), dtype=np.uint8)),
            "img_emb": tensor(rng.standard_normal(8).astype(np.float32))}


def gen_class(a):
    rng = np.random.default_rng(a.seed)
    n, c, ml = a.n, a.c, a.task == "multilabel"
    names = ["c%d_%s" % (k, "xyz"[k % 3]) for k in range(c)]
    prior = np.full(c, 1.0 / c)
    if a.kind == "imbalance":
        prior = np.array([200.0] + [20.0] * (c - 2) + [1.0])
        prior /= prior.sum()
    if ml:
        Y = (rng.random((n, c)) < (prior * c * 0.3)).astype(np.float32)
        if a.kind == "degenerate":
            Y[:, 1] = 0
            Y[:, 2] = 1
        if a.kind == "onepercls":
            Y[:] = 0
            Y[rng.permutation(n)[:c], np.arange(c)] = 1
    else:
        t = rng.choice(c, size=n, p=prior)
        if a.kind == "degenerate":
            t[t == 1] = 0  # class 1 never occurs
        if a.kind == "onepercls":
            t = rng.permutation(c)[:n] if n <= c else np.concatenate([np.arange(c), rng.integers(0, c, n - c)])
        Y = np.eye(c, dtype=np.float32)[t]
    S = rng.standard_normal((n, c)) + 1.2 * Y
    if a.kind == "ties":
        S = np.round(S * 2) / 2  # a few distinct values: ties everywhere
    if ml:
        P = 1 / (1 + np.exp(-S))
    else:
        e = np.exp(S - S.max(1, keepdims=True))
        P = e / e.sum(1, keepdims=True)
    if a.kind == "ties":
        P = np.round(P * 8) / 8
    recs = []
    for i in range(n):
        r = extras(rng, i)
        r["target"] = tensor(Y[i])
        src = a.source if a.source != "mixed" else ["prob", "scores", "both"][i % 3]
        if src in ("prob", "both"):
            r["prob"] = tensor(P[i].astype(np.float32))
        if src in ("scores", "both"):
            r["scores"] = tensor((S[i] if src == "scores" else rng.standard_normal(c)).astype(np.float32))
        recs.append(r)
    write_stream(a.out, {"version": 1, "task": a.task, "classes": names}, recs)


def gen_pairs(a):
    rng = np.random.default_rng(a.seed)
    n, d = a.n, a.d
    if a.kind in ("random", "dupfloat"):
        img = rng.standard_normal((n, d))
        txt = img + 1.5 * math.sqrt(d / 16) * rng.standard_normal((n, d))  # as hard at any width
        img /= np.linalg.norm(img, axis=1, keepdims=True)
        txt /= np.linalg.norm(txt, axis=1, keepdims=True)
        if a.kind == "dupfloat":  # copies of rows far apart: they must tie exactly
            for i in range(0, n // 2, 3):
                txt[i + 1] = txt[i]
                img[i + n // 2] = img[i]
    else:  # small multiples of 1/4: every dot product is exact, so ties are exact
        img = rng.integers(-2, 3, (n, d)) / 4.0
        txt = np.clip(img + rng.integers(-1, 2, (n, d)) / 4.0, -1, 1)
        if a.kind == "dup":  # repeated captions and images: whole tied rows
            for i in range(0, n - 1, 5):
                txt[i + 1] = txt[i]
                img[i + 2 if i + 2 < n else i] = img[i]
    recs = []
    for i in range(n):
        r = {"id": "p%d" % i, "img_emb": tensor(img[i].astype(np.float32)),
             "txt_emb": tensor(txt[i].astype(np.float32))}
        recs.append(r)
    write_stream(a.out, {"version": 1, "task": "pairs"}, recs)


BAD = {
    # kind: (header changes, record 3 changes)
    "no-target": lambda r: r.pop("target"),
    "no-scores": lambda r: r.pop("scores"),
    "short-scores": lambda r: r.update(scores=tensor(np.zeros(2, np.float32) + 0.3)),
    "nan-score": lambda r: r.update(scores=tensor(np.array([0.1, np.nan, 0.2], np.float32))),
    "inf-score": lambda r: r.update(scores=tensor(np.array([0.1, 0.3, np.inf], np.float32))),
    "half-target": lambda r: r.update(target=tensor(np.array([0.5, 0, 1], np.float32))),
    "two-hot": lambda r: r.update(target=tensor(np.array([1, 1, 0], np.float32))),
    "prob-range": lambda r: r.update(prob=tensor(np.array([0.1, 1.5, 0.2], np.float32))),
    "bad-tensor": lambda r: r.update(scores={"dtype": "f32", "shape": [3], "data": b"\0" * 5}),
    "class-count": None,  # header names 4 classes, records have 3
    "dup-class": None,  # header names a class twice
    "empty": None,  # header only
    "no-task": None,  # no task in the header
    "emb-width": None,  # retrieval, txt_emb narrower at record 3
}


def bad(a):
    rng = np.random.default_rng(7)
    header = {"version": 1, "task": "multiclass", "classes": ["a", "b", "c"]}
    recs = []
    for i in range(5):
        r = extras(rng, i)
        r["target"] = tensor(np.eye(3, dtype=np.float32)[i % 3])
        r["scores"] = tensor(rng.standard_normal(3).astype(np.float32))
        recs.append(r)
    k = a.kind
    if k == "class-count":
        header["classes"] = ["a", "b", "c", "d"]
    elif k == "dup-class":
        header["classes"] = ["a", "b", "a"]
    elif k == "empty":
        recs = []
    elif k == "no-task":
        del header["task"]
    elif k == "emb-width":
        header = {"version": 1}
        recs = [{"img_emb": tensor(np.ones(4, np.float32)), "txt_emb": tensor(np.ones(4 if i != 2 else 3, np.float32))}
                for i in range(5)]
    else:
        BAD[k](recs[2])
    write_stream(a.out, header, recs)


# ---------------------------------------------------------------- reference
def load_class(path):
    header, recs = read_stream(path)
    task = header["task"]
    Y = np.array([arr(r["target"]) for r in recs]).astype(int)
    src = [arr(r["prob"]) if "prob" in r else arr(r["scores"]) for r in recs]
    P = []
    for r, s in zip(recs, src):
        if "prob" in r:
            P.append(s)
        elif task == "multilabel":
            P.append(1 / (1 + np.exp(-s)))
        else:
            e = np.exp(s - s.max())
            P.append(e / e.sum())
    return header, task, Y, np.array(P), np.array(src)


def choose(p, y, metric):
    """Highest threshold among the distinct scores maximizing F1 or J, exactly."""
    pos, neg = int(y.sum()), int((1 - y).sum())
    if pos == 0 or neg == 0:
        return None
    best, bt = None, None
    for t in sorted(set(p.tolist()), reverse=True):
        pred = p >= t
        tp, fp = int((pred & (y == 1)).sum()), int((pred & (y == 0)).sum())
        v = Fraction(2 * tp, tp + fp + pos) if metric == "f1" else Fraction(tp, pos) - Fraction(fp, neg)
        if best is None or v > best:
            best, bt = v, t
    return bt


def splitmix(state):
    state = (state + 0x9E3779B97F4A7C15) & M64
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return state, z ^ (z >> 31)


def wauc(y, p, w):
    from sklearn.metrics import roc_auc_score
    if (w * y).sum() == 0 or (w * (1 - y)).sum() == 0:
        return math.nan
    return roc_auc_score(y, p, sample_weight=w)


def bootstrap(Y, P, B, seed):
    n, c = Y.shape
    state = seed
    vals = []
    for _ in range(B):
        idx = np.empty(n, dtype=np.int64)
        for i in range(n):
            state, z = splitmix(state)
            idx[i] = int((z >> 11) * 2.0 ** -53 * n)
        w = np.bincount(idx, minlength=n).astype(np.float64)
        per = [wauc(Y[:, k], P[:, k], w) for k in range(c)]
        ok = [v for v in per if not math.isnan(v)]
        macro = sum(ok) / len(ok) if ok else math.nan
        vals.append(per + [macro, wauc(Y.ravel(), P.ravel(), np.repeat(w, c))])
    vals = np.array(vals)
    out = []
    for f in range(c + 2):
        v = vals[:, f][~np.isnan(vals[:, f])]
        out.append(None if len(v) == 0 else [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))])
    return out


def sklearn_version():
    import sklearn
    return sklearn.__version__


def nanmean(v):
    v = [x for x in v if x is not None]
    return sum(v) / len(v) if v else None


def expected_class(a):
    from sklearn.metrics import (accuracy_score, average_precision_score, balanced_accuracy_score,
                                 confusion_matrix, f1_score, multilabel_confusion_matrix, recall_score,
                                 roc_auc_score)
    header, task, Y, P, src = load_class(a.stream)
    n, c = Y.shape
    names = header["classes"]
    ml = task == "multilabel"
    thr = [a.threshold] * c
    if a.val:
        _, _, Yv, Pv, _ = load_class(a.val)
        chosen = [choose(Pv[:, k], Yv[:, k], a.metric) for k in range(c)]
        thr = [t if t is not None else a.threshold for t in chosen]
    labels = list(range(c))
    if ml:
        pred = np.stack([(P[:, k] >= thr[k]).astype(int) for k in range(c)], 1)
        mcm = multilabel_confusion_matrix(Y, pred)
        f1 = f1_score(Y, pred, average=None, zero_division=0)
        sens = recall_score(Y, pred, average=None, zero_division=0)
        f1_micro = f1_score(Y, pred, average="micro", zero_division=0)
        sens_micro = recall_score(Y, pred, average="micro", zero_division=0)
        acc = accuracy_score(Y, pred)
        conf = mcm.tolist()
    else:
        ytrue, ypred = Y.argmax(1), src.argmax(1)
        mcm = multilabel_confusion_matrix(ytrue, ypred, labels=labels)
        f1 = f1_score(ytrue, ypred, labels=labels, average=None, zero_division=0)
        sens = recall_score(ytrue, ypred, labels=labels, average=None, zero_division=0)
        f1_micro = f1_score(ytrue, ypred, labels=labels, average="micro", zero_division=0)
        sens_micro = recall_score(ytrue, ypred, labels=labels, average="micro", zero_division=0)
        acc = accuracy_score(ytrue, ypred)
        conf = confusion_matrix(ytrue, ypred, labels=labels).tolist()
    tn, fp, fn, tp = (mcm[:, 0, 0], mcm[:, 0, 1], mcm[:, 1, 0], mcm[:, 1, 1])
    E = {"task": task, "n": n}
    pc = {}
    for k in range(c):
        y, p = Y[:, k], P[:, k]
        both = 0 < y.sum() < n
        e = {"auc": roc_auc_score(y, p) if both else None,
             "ap": average_precision_score(y, p) if y.sum() > 0 else None,
             "f1": float(f1[k]) if tp[k] + fp[k] + fn[k] > 0 else None,
             "sensitivity": float(sens[k]) if tp[k] + fn[k] > 0 else None,
             "specificity": float(tn[k] / (tn[k] + fp[k])) if tn[k] + fp[k] > 0 else None,
             "support": int(y.sum())}
        if ml:
            e["accuracy"] = accuracy_score(y, pred[:, k])
            e["threshold"] = thr[k]
            e["_bal"] = balanced_accuracy_score(y, pred[:, k])
        pc[names[k]] = e
    E["accuracy"] = acc
    E["balanced_accuracy"] = (nanmean([pc[x]["_bal"] for x in names]) if ml else
                              balanced_accuracy_score(ytrue, ypred))
    for x in names:
        pc[x].pop("_bal", None)
    for fig, key in [("f1", "f1"), ("auc", "auc"), ("ap", "ap"), ("sensitivity", "sensitivity"),
                     ("specificity", "specificity")]:
        E[fig + "_macro"] = nanmean([pc[x][key] for x in names])
    # a pooled ratio with a zero denominator is undefined (null), as per class
    E["f1_micro"] = f1_micro if 2 * tp.sum() + fp.sum() + fn.sum() > 0 else None
    E["auc_micro"] = roc_auc_score(Y, P, average="micro") if 0 < Y.sum() < Y.size else None
    E["ap_micro"] = average_precision_score(Y, P, average="micro") if Y.sum() > 0 else None
    E["sensitivity_micro"] = sens_micro if tp.sum() + fn.sum() > 0 else None
    E["specificity_micro"] = float(tn.sum() / (tn.sum() + fp.sum())) if tn.sum() + fp.sum() > 0 else None
    if ml:
        E["exact_match"] = acc
        E["label_accuracy_micro"] = float((Y == pred).mean())
        E["label_accuracy_macro"] = float(np.mean([pc[x]["accuracy"] for x in names]))
    E["confusion"] = conf
    E["per_class"] = pc
    if a.bootstrap:
        ci = bootstrap(Y, P, a.bootstrap, a.seed)
        for k in range(c):
            pc[names[k]]["auc_ci"] = ci[k]
        E["auc_macro_ci"], E["auc_micro_ci"] = ci[c], ci[c + 1]
    return E


# ---------------------------------------------------------------- compare
def compare(exp, got, path, errs, counted):
    if isinstance(exp, dict):
        if not isinstance(got, dict):
            errs.append("%s: expected an object, got %r" % (path, got))
            return
        for k in exp:
            if k not in got:
                errs.append("%s.%s: missing" % (path, k))
            else:
                compare(exp[k], got[k], path + "." + k, errs, counted)
        return
    if isinstance(exp, list):
        if not isinstance(got, list) or len(got) != len(exp):
            errs.append("%s: expected %d values, got %r" % (path, len(exp), got))
            return
        for i, (e, g) in enumerate(zip(exp, got)):
            compare(e, g, "%s[%d]" % (path, i), errs, counted)
        return
    counted[0] += 1
    if exp is None or got is None:
        if exp is not got:
            errs.append("%s: expected %r, got %r" % (path, exp, got))
    elif isinstance(exp, str):
        if exp != got:
            errs.append("%s: expected %r, got %r" % (path, exp, got))
    elif isinstance(got, str) or abs(float(exp) - float(got)) > TOL:
        errs.append("%s: expected %.17g, got %r" % (path, float(exp), got))


def report(what, exp, got, extra_keys=()):
    errs, counted = [], [0]
    compare(exp, got, "", errs, counted)
    # every figure bm-score prints must have been compared
    known = set(exp) | {"notes", "classes", "threshold_metric", "thresholds_from", "bootstrap"} | set(extra_keys)
    errs += ["%s: reported but not checked" % k for k in got if k not in known]
    for name, e in got.get("per_class", {}).items():
        errs += ["per_class.%s.%s: reported but not checked" % (name, k)
                 for k in e if k not in exp.get("per_class", {}).get(name, {})]
    if errs:
        print("not ok - %s: %d of %d figures differ from the reference" % (what, len(errs), counted[0]))
        for e in errs[:20]:
            print("#   " + e)
    else:
        print("ok - %s: %d figures within %g of scikit-learn/numpy" % (what, counted[0], TOL))


def expected_retrieval(path, ties):
    _, recs = read_stream(path)
    img = np.array([arr(r["img_emb"]) for r in recs])
    txt = np.array([arr(r["txt_emb"]) for r in recs])
    S = img @ txt.T
    E = {"task": "retrieval", "n": len(recs), "dim": img.shape[1], "ties": ties}
    # a tie is an equal score; numpy's float64 products may round copies of a
    # row apart by 1e-16, so scores within 1e-10 (far below any real gap in
    # these data) count as equal
    for name, M in (("i2t", S), ("t2i", S.T)):
        d = np.diag(M)[:, None]
        better = (M > d + 1e-10).sum(1)
        tied = (np.abs(M - d) <= 1e-10).sum(1) - 1
        rank = better + (tied if ties == "pessimistic" else 0) + 1
        for k in (1, 5, 10):
            E["%s_r%d" % (name, k)] = float((rank <= k).mean())
        E["%s_tied_queries" % name] = int((tied > 0).sum())
    return E


def flatten(x, path, out):
    if isinstance(x, dict):
        for k, v in x.items():
            if path == "" and k == "notes":
                continue
            flatten(v, path + "." + k if path else k, out)
    elif isinstance(x, list):
        for i, v in enumerate(x):
            flatten(v, "%s[%d]" % (path, i), out)
    else:
        out[path] = x


def expected_aggregate(runs):
    flat = []
    for r in runs:
        f = {}
        flatten(json.load(open(r)), "", f)
        flat.append(f)
    mean, std = {}, {}
    for key in flat[0]:
        vals = [f.get(key) for f in flat]
        nums = [v for v in vals if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if nums:
            mean[key] = float(np.mean(nums))
            std[key] = float(np.std(nums, ddof=1)) if len(nums) > 1 else None
        elif all(v == vals[0] for v in vals):
            mean[key] = vals[0]
    return mean, std


def main(argv=None):
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("gen-class")
    g.add_argument("out")
    g.add_argument("--task", required=True)
    g.add_argument("--n", type=int, required=True)
    g.add_argument("--c", type=int, required=True)
    g.add_argument("--seed", type=int, required=True)
    g.add_argument("--kind", default="continuous")
    g.add_argument("--source", default="prob")
    c = sub.add_parser("check")
    c.add_argument("stream")
    c.add_argument("got")
    c.add_argument("--what", required=True)
    c.add_argument("--val")
    c.add_argument("--metric", default="f1")
    c.add_argument("--threshold", type=float, default=0.5)
    c.add_argument("--bootstrap", type=int, default=0)
    c.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("gen-pairs")
    p.add_argument("out")
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--d", type=int, required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--kind", default="quant")
    r = sub.add_parser("check-retrieval")
    r.add_argument("stream")
    r.add_argument("got")
    r.add_argument("--what", required=True)
    r.add_argument("--ties", default="pessimistic")
    g2 = sub.add_parser("check-aggregate")
    g2.add_argument("got")
    g2.add_argument("runs", nargs="+")
    g2.add_argument("--what", required=True)
    bs = sub.add_parser("bench-sklearn")
    bs.add_argument("stream")
    bt = sub.add_parser("batch")
    bt.add_argument("file")
    b = sub.add_parser("bad")
    b.add_argument("kind", choices=sorted(BAD))
    b.add_argument("out")
    a = ap.parse_args(argv)
    if a.cmd == "batch":  # sklearn imports once for many checks
        import shlex
        for line in open(a.file):
            if line.strip():
                main(shlex.split(line))
    elif a.cmd == "bench-sklearn":  # load and compute timed apart
        import time
        import sklearn.metrics  # noqa: F401  (import time is not the metrics' time)
        t0 = time.perf_counter()
        load_class(a.stream)
        t1 = time.perf_counter()
        a.val, a.threshold, a.bootstrap, a.metric = None, 0.5, 0, "f1"
        expected_class(a)
        t2 = time.perf_counter()
        print("scikit-learn %s: load %.2fs, load+figures %.2fs (figures alone ~%.2fs)" % (sklearn_version(), t1 - t0, t2 - t1, t2 - t1 - (t1 - t0)))
    elif a.cmd == "gen-class":
        gen_class(a)
    elif a.cmd == "gen-pairs":
        gen_pairs(a)
    elif a.cmd == "bad":
        bad(a)
    elif a.cmd == "check":
        report(a.what, expected_class(a), json.load(open(a.got)))
    elif a.cmd == "check-retrieval":
        report(a.what, expected_retrieval(a.stream, a.ties), json.load(open(a.got)))
    elif a.cmd == "check-aggregate":
        got = json.load(open(a.got))
        mean, std = expected_aggregate(a.runs)
        gm, gs = {}, {}
        flatten(got["mean"], "", gm)
        flatten(got["std"], "", gs)
        errs = []
        for key, v in mean.items():
            compare(v, gm.get(key, "<missing>"), "mean." + key, errs, [0])
            if key in std:
                compare(std[key], gs.get(key, "<missing>"), "std." + key, errs, [0])
        errs += ["mean.%s: reported but not expected" % k for k in gm if k not in mean]
        if got.get("n_runs") != len(a.runs) or got.get("std_ddof") != 1:
            errs.append("n_runs/std_ddof wrong: %r %r" % (got.get("n_runs"), got.get("std_ddof")))
        if errs:
            print("not ok - %s: %d differences" % (a.what, len(errs)))
            for e in errs[:20]:
                print("#   " + e)
        else:
            print("ok - %s: mean and sample std (ddof=1) of %d figures within %g of numpy" % (a.what, len(mean), TOL))


if __name__ == "__main__":
    main()
