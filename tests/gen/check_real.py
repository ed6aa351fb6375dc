#!/usr/bin/python3
"""Check bm-decode --metadata-only on the real metadata files against an
independent reading of them with Python's csv module.

  check_real.py nih|ham|isic OUT.bmr CSV [--lists DIR] [--val F] [--test F] [--tag T]

nih:  targets (14 labels, REFERENCE order), group = Patient ID, meta, the
      official lists (test from test_list.txt), val = round(0.1 * patients of
      train_val) whole patients.
ham:  one-hot dx, group = lesion_id, meta; per diagnosis, round(F * lesions)
      whole lesions in test and in val; empty ages absent from meta.
isic: one-hot from the MEL..VASC columns in HAM's class order, split test."""
import argparse
import csv
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from pillow_ref import read_records  # noqa: E402

NIH = ["Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule",
       "Pneumonia", "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis",
       "Pleural_Thickening", "Hernia"]
HAM = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]

ap = argparse.ArgumentParser()
ap.add_argument("format")
ap.add_argument("out")
ap.add_argument("csv")
ap.add_argument("--lists")
ap.add_argument("--val", type=float, default=0.1)
ap.add_argument("--test", type=float, default=0.1)
ap.add_argument("--tag", default="real")
a = ap.parse_args()
header, recs = read_records(a.out)
by_id = {r["id"]: r for r in recs}
fails = 0


def check(cond, what, detail=""):
    global fails
    print(("ok - " if cond else "not ok - ") + a.tag + ": " + what)
    if not cond:
        fails += 1
        print("#   " + str(detail)[:2000])


rows = list(csv.reader(open(a.csv, newline="")))
hdr, rows = rows[0], [r for r in rows[1:] if r]
col = {name: i for i, name in enumerate(hdr)}
bad = []
if a.format == "nih":
    test = set(open(os.path.join(a.lists, "test_list.txt")).read().split())
    for r in rows:
        rec = by_id.get(r[0])
        labels = [] if r[1] == "No Finding" else r[1].split("|")
        want_t = [1.0 if c in labels else 0.0 for c in NIH]
        want_m = {"sex": r[5], "view": r[6], "follow_up": int(r[2])}
        if r[4].strip():
            want_m["age"] = int(r[4].rstrip("Y"))
        if rec is None:
            bad.append("%s: no record" % r[0])
        elif (rec["target"].tolist() != want_t or rec["group"] != r[3] or rec["meta"] != want_m
              or (rec["split"] == "test") != (r[0] in test)):
            bad.append("%s: %r vs %r %r %r" % (r[0], rec, want_t, r[3], want_m))
    check(len(recs) == len(rows) and not bad,
          "%d rows of the real Data_Entry CSV: targets, groups, meta, test list" % len(rows), bad[:5])
    tv = [r for r in recs if r["split"] != "test"]
    pats = {}
    for r in tv:
        pats.setdefault(r["group"], set()).add(r["split"])
    mixed = [p for p, s in pats.items() if len(s) > 1]
    nval = sum(1 for s in pats.values() if s == {"val"})
    check(not mixed and nval == int(np.floor(len(pats) * a.val + 0.5)),
          "val is %d of %d train_val patients, whole patients" % (nval, len(pats)), (mixed[:5], nval))
elif a.format == "ham":
    for r in rows:
        iid = r[col["image_id"]].replace(".jpg", "")
        rec = by_id.get(iid)
        want_t = [1.0 if c == r[col["dx"]] else 0.0 for c in HAM]
        want_m = {"sex": r[col["sex"]], "localization": r[col["localization"]],
                  "dx_type": r[col["dx_type"]]}
        if "dataset" in col:
            want_m["dataset"] = r[col["dataset"]]
        if r[col["age"]].strip():
            want_m["age"] = float(r[col["age"]])
        if rec is None:
            bad.append("%s: no record" % iid)
        elif rec["target"].tolist() != want_t or rec["group"] != r[col["lesion_id"]] or rec["meta"] != want_m:
            bad.append("%s: %r vs %r %r" % (iid, rec, want_t, want_m))
    check(len(recs) == len(rows) and not bad,
          "%d rows of the real HAM10000 metadata: targets, lesions, meta" % len(rows), bad[:5])
    les = {}
    for r in recs:
        les.setdefault(r["group"], (HAM[int(np.argmax(r["target"]))], set()))[1].add(r["split"])
    mixed = [k for k, (_, s) in les.items() if len(s) > 1]
    check(not mixed, "no lesion in two splits (%d lesions)" % len(les), mixed[:5])
    wrong = []
    for dx in HAM:
        sp = [next(iter(s)) for d, s in les.values() if d == dx]
        n = len(sp)
        for name, f in (("test", a.test), ("val", a.val)):
            if sp.count(name) != int(np.floor(n * f + 0.5)):
                wrong.append("%s: %d %s of %d lesions" % (dx, sp.count(name), name, n))
    check(not wrong, "stratified by dx: round(fraction * lesions) of each dx in test and val", wrong)
else:
    cls = ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]
    for r in rows:
        rec = by_id.get(r[0])
        want_t = [float(r[cls.index(c.upper()) + 1]) for c in HAM]
        if rec is None or rec["target"].tolist() != want_t or rec["split"] != "test" or rec["group"] != r[0]:
            bad.append("%s: %r vs %r" % (r[0], rec, want_t))
    check(len(recs) == len(rows) and not bad,
          "%d rows of the real ISIC 2018 ground truth: one-hot in HAM order, test" % len(rows), bad[:5])
sys.exit(0)
