#!/usr/bin/env python3
"""Compare the tensors of a record stream with a reference stream.

    bmr_compare.py OUT.bmr REF.bmr --key ID_KEY --tensors a,b [--tol 1e-4] [--only K=V]

Records are matched on ID_KEY (every reference record must be found in OUT,
once). Each named tensor must have the reference's shape and lie within tol
of it (max absolute difference); --only keeps the reference records whose
string K is V; an f16 tensor in OUT gets the f16 rounding
of the reference's magnitude on top (2^-11 relative). Prints the largest
difference per tensor; exit 1 on any mismatch.
"""
import argparse
import sys

import msgpack
import numpy as np

DT = {"u8": "u1", "i32": "<i4", "i64": "<i8", "f16": "<f2", "f32": "<f4"}


def records(path):
    with open(path, "rb") as f:
        for r in msgpack.Unpacker(f, raw=False):
            if "header" not in r:
                yield r


def arr(t):
    return np.frombuffer(t["data"], dtype=DT[t["dtype"]]).reshape(t["shape"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("ref")
    ap.add_argument("--key", default="id")
    ap.add_argument("--tensors", required=True)
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--only")
    a = ap.parse_args()
    out = {}
    for r in records(a.out):
        k = r.get(a.key)
        if k in out:
            print(f"{a.out}: {a.key} {k!r} twice", file=sys.stderr)
            return 1
        out[k] = r
    bad, worst, nref = 0, {}, 0
    for ref in records(a.ref):
        if a.only and ref.get(a.only.split("=")[0]) != a.only.split("=", 1)[1]:
            continue
        nref += 1
        k = ref[a.key]
        got = out.get(k)
        if got is None:
            print(f"{a.out}: no record with {a.key} {k!r}", file=sys.stderr)
            bad += 1
            continue
        for name in a.tensors.split(","):
            if name not in ref:
                continue
            if name not in got:
                print(f"{k}: {name} missing", file=sys.stderr)
                bad += 1
                continue
            r, g = arr(ref[name]).astype(np.float64), arr(got[name]).astype(np.float64)
            if r.shape != g.shape:
                print(f"{k}: {name} shape {list(g.shape)}, expected {list(r.shape)}", file=sys.stderr)
                bad += 1
                continue
            tol = a.tol + (np.abs(r) * 2.0 ** -11 if got[name]["dtype"] == "f16" else 0)
            d = np.abs(r - g)
            worst[name] = max(worst.get(name, 0.0), float(d.max(initial=0)))
            if not np.all(np.isfinite(g)) or np.any(d > tol):
                print(f"{k}: {name} differs by up to {d.max():.3g}", file=sys.stderr)
                bad += 1
    if nref == 0:
        print(f"{a.ref}: no reference records", file=sys.stderr)
        return 1
    print(" ".join(f"{n} max|diff| {v:.3g}" for n, v in worst.items()))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
