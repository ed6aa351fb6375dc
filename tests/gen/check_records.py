#!/usr/bin/python3
"""Check a bm-decode output against what make_dataset.py says it must be.

  check_records.py OUT.bmr EXPECT.json STDERR [--size N] [--no-crop] [--text]
                   [--split S] [--problems] [--tag NAME]

Prints one "ok - ..." / "not ok - ..." line per check: the header, every key
of every record (id, split, group, target, meta, text, image shape and every
pixel against Pillow), the set of ids, the splits by group, and (with
--problems) the problem counts of the summary line on STDERR."""
import argparse
import json
import re
import sys

import numpy as np

sys.path.insert(0, __import__("os").path.dirname(__file__))
from pillow_ref import read_records, ref_pixels  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("out")
ap.add_argument("expect")
ap.add_argument("stderr")
ap.add_argument("--size", type=int, default=224)
ap.add_argument("--no-crop", action="store_true")
ap.add_argument("--text", action="store_true")
ap.add_argument("--split")
ap.add_argument("--problems", action="store_true")
ap.add_argument("--tag", default="decode")
a = ap.parse_args()
exp = json.load(open(a.expect))
header, recs = read_records(a.out)
fails = 0


def check(cond, what, detail=""):
    global fails
    print(("ok - " if cond else "not ok - ") + a.tag + ": " + what)
    if not cond:
        fails += 1
        if detail:
            print("#   " + str(detail)[:2000])


h = header or {}
check(h.get("version") == 1 and h.get("task") == exp["task"] and h.get("classes") == exp["classes"]
      and h.get("dataset") == exp["dataset"] and h.get("producer") == "bm-decode"
      and h.get("image_size") == a.size and h.get("crop") == (not a.no_crop and a.size > 0)
      and h.get("split") == (a.split or "all"), "header fields", h)

want = {k: v for k, v in exp["records"].items()}
bad_keys, bad_vals, bad_px = [], [], []
seen = {}
for r in recs:
    rid = r.get("id")
    keys = {"id", "split", "group", "target", "image", "meta"}
    e = want.get(rid)
    if e is None:
        bad_vals.append("unexpected id %r" % rid)
        continue
    if a.text and e["text"] is not None:
        keys.add("text")
    if set(r) != keys:
        bad_keys.append("%s: keys %s, expected %s" % (rid, sorted(r), sorted(keys)))
    if rid in seen:
        bad_vals.append("%s twice" % rid)
    seen[rid] = r
    sp = r.get("split")
    ok_split = {"test": sp == "test", "trainval": sp in ("train", "val"),
                "any": sp in ("train", "val", "test")}[e["split"]]
    if not ok_split or (a.split and sp != a.split):
        bad_vals.append("%s: split %s, expected %s" % (rid, sp, e["split"]))
    if r.get("group") != e["group"]:
        bad_vals.append("%s: group %r, expected %r" % (rid, r.get("group"), e["group"]))
    t = r.get("target")
    if not (isinstance(t, np.ndarray) and t.dtype == np.float32 and t.shape == (len(exp["classes"]),)
            and t.tolist() == e["target"]):
        bad_vals.append("%s: target %r, expected %r" % (rid, t, e["target"]))
    if r.get("meta") != e["meta"]:
        bad_vals.append("%s: meta %r, expected %r" % (rid, r.get("meta"), e["meta"]))
    if "text" in keys and r.get("text") != e["text"]:
        bad_vals.append("%s: text %r, expected %r" % (rid, r.get("text"), e["text"]))
    img = r.get("image")
    ref = ref_pixels(e["file"], a.size, not a.no_crop)
    if not (isinstance(img, np.ndarray) and img.dtype == np.uint8 and img.shape == ref.shape):
        bad_px.append("%s: image %s, expected u8 %s" % (rid, getattr(img, "shape", img), ref.shape))
    elif not np.array_equal(img, ref):
        d = np.abs(img.astype(int) - ref.astype(int))
        bad_px.append("%s: %d pixels differ from Pillow, max %d" % (rid, (d > 0).sum(), d.max()))
check(not bad_keys, "every record has exactly the expected keys", bad_keys)
check(not bad_vals, "id, split, group, target, meta%s of %d records" % (", text" if a.text else "", len(recs)), bad_vals)
check(not bad_px, "pixels of %d images equal Pillow's (size %d%s)" % (len(recs), a.size, ", no crop" if a.no_crop else ""), bad_px)

expected_ids = {k for k, v in want.items() if not a.split or v["split"] in (a.split, "any") or
                (v["split"] == "trainval" and a.split in ("train", "val"))}
if a.split:  # which of the trainval/any ones land in the split is bm-decode's choice
    missing = {k for k in expected_ids if k not in seen and want[k]["split"] == a.split}
    extra = set(seen) - expected_ids
else:
    missing, extra = expected_ids - set(seen), set(seen) - expected_ids
check(not missing and not extra, "records are exactly the expected images",
      "missing %s extra %s" % (sorted(missing), sorted(extra)))

groups = {}
for r in recs:
    groups.setdefault(r["group"], set()).add(r["split"])
two = {g: s for g, s in groups.items() if len(s) > 1}
check(not two, "no group (patient/lesion) on two sides of the split", two)

if a.problems:
    err = open(a.stderr).read()
    m = re.search(r"(\d+) records written; (.*)$", err, re.M)
    got = {}
    if m and m.group(2) != "no problems":
        for part in m.group(2)[len("problems: "):].split(", "):
            n, kind = part.split(" ", 1)
            got[kind] = int(n)
    check(m is not None and int(m.group(1)) == len(recs), "summary counts the records written",
          m.group(0) if m else err[-500:])
    check(got == exp["problems"], "summary counts each kind of problem", "got %s expected %s" % (got, exp["problems"]))
    lines = [ln for ln in err.splitlines() if not ln.endswith("records written; " + (m.group(2) if m else ""))]
    check(len([ln for ln in lines if ln.startswith("bm-decode: ")]) == sum(exp["problems"].values()),
          "one stderr line per problem, each naming the program", lines)
sys.exit(0)
