#!/usr/bin/env python3
"""Checks bm-decode --format pairs output against make_pairs.py's expectations.

    check_pairs.py EXPECT.json LAYOUT OUT.bmr STDERR --size N [--subset]

LAYOUT csv or wds. Every expected pair comes out once, in input order, with
its id, trimmed caption, split in train/val/test, no "target" (so bm-score
takes it as retrieval) and pixels equal to Pillow's validation transform of
its source file (bit for bit); every expected problem is named on stderr.
--subset: the output is part of the pairs (a split or a shard): each record
must still be expected and right, in order, and problems are not required."""
import argparse
import json
import sys

import numpy as np

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from pillow_ref import read_records, ref_pixels  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("expect")
ap.add_argument("layout")
ap.add_argument("out")
ap.add_argument("stderr")
ap.add_argument("--size", type=int, default=224)
ap.add_argument("--subset", action="store_true")
a = ap.parse_args()
exp = json.load(open(a.expect))[a.layout]
h, recs = read_records(a.out)
assert h["task"] == "pairs" and "classes" not in h, h
assert h["layout"] in (("csv", "tsv") if a.layout == "csv" else ("webdataset",)), h
want = exp["pairs"]
order = {p["id"]: k for k, p in enumerate(want)}
ids = [r["id"] for r in recs]
assert len(set(ids)) == len(ids), "an id twice"
if not a.subset:
    assert ids == [p["id"] for p in want], (ids, [p["id"] for p in want])
pos = [order[i] for i in ids]  # KeyError: an unexpected record
assert pos == sorted(pos), "records out of input order"
for r in recs:
    p = want[order[r["id"]]]
    assert set(r) == {"id", "split", "group", "image", "text"}, sorted(r)
    assert r["text"] == p["text"], (r["text"], p["text"])
    assert r["split"] in ("train", "val", "test"), r["split"]
    img = r["image"]
    ref = ref_pixels(p["file"], a.size)
    assert img.shape == ref.shape and img.dtype == np.uint8, (img.shape, ref.shape)
    d = np.abs(img.astype(int) - ref.astype(int)).max()
    assert d == 0, f"{r['id']}: pixels differ from Pillow by up to {d}"
err = open(a.stderr, encoding="utf-8").read()
if not a.subset:
    for q in exp["problems"]:
        assert any(q["kind"] in line and q["name"] in line for line in err.splitlines()), (q, err)
    n = len(exp["problems"])
    if n:
        assert f"{len(recs)} records written; problems:" in err, err
print(f"{len(recs)} pairs checked")
