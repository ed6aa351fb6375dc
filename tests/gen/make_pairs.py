#!/usr/bin/env python3
"""Generated image-caption pairs in both layouts bm-decode --format pairs
reads, with every problem it must report, and what it should output.

    make_pairs.py OUT_DIR EXPECT.json [--seed S] [--n N] [--clean]

OUT_DIR/csv/captions.csv   filepath,title (+ a path given absolute)
OUT_DIR/csv/captions.tsv   image<TAB>caption (same rows)
OUT_DIR/csv/img/...        the images (PNG and JPEG, grey and RGB, sizes vary)
OUT_DIR/wds/shard-000.tar, shard-001.tar   KEY.png|jpg|jpeg|webp + KEY.txt (+ KEY.json)
OUT_DIR/wds-ref/KEY.EXT   each good pair's image bytes, for the pixel reference
Problems (left out with --clean): a row whose image file is missing, a
corrupt image, an empty caption; in the tars an image without caption, a
caption without image, a corrupt image. EXPECT.json lists per layout the ids
and captions that must come out, the source file of each image, and the
problems with the member or id they must name."""
import argparse
import io
import json
import os
import tarfile

import numpy as np
from PIL import Image

ap = argparse.ArgumentParser()
ap.add_argument("out")
ap.add_argument("expect")
ap.add_argument("--seed", type=int, default=0)
ap.add_argument("--n", type=int, default=24)
ap.add_argument("--clean", action="store_true")
a = ap.parse_args()
rng = np.random.default_rng(a.seed)
os.makedirs(f"{a.out}/csv/img/sub", exist_ok=True)
os.makedirs(f"{a.out}/wds", exist_ok=True)
os.makedirs(f"{a.out}/wds-ref", exist_ok=True)

HARD = 'a "quoted", comma\'d caption — ünïcödé 肺 \U0001F600\nover two lines'


def image_bytes(i, fmt):
    w, h = int(rng.integers(20, 90)), int(rng.integers(20, 90))
    grey = i % 3 == 0
    # a smooth field plus noise: JPEG keeps it, and pairs differ
    yy, xx = np.mgrid[0:h, 0:w]
    base = (np.sin(xx / (3 + i % 7)) + np.cos(yy / (2 + i % 5))) * 60 + 128
    px = base[..., None] + rng.integers(-30, 30, (h, w, 1 if grey else 3))
    px = np.clip(px, 0, 255).astype(np.uint8)
    im = Image.fromarray(px[..., 0] if grey else px, "L" if grey else "RGB")
    buf = io.BytesIO()
    if fmt == "webp":
        im.save(buf, "WEBP", lossless=True)
    else:
        im.save(buf, "PNG" if fmt == "png" else "JPEG", quality=90)
    return buf.getvalue()


WORDS = ["lesion", "nodule", "opacity", "effusion", "skin", "chest", "left", "right"]
CAPTIONS = [HARD if i == 1 else f"  case {i}: " + " ".join(rng.choice(WORDS, 4)) + " \n"
            for i in range(a.n)]


def caption(i):
    return CAPTIONS[i]


exp = {"csv": {"pairs": [], "problems": []}, "wds": {"pairs": [], "problems": []}}
rows = []
for i in range(a.n):
    fmt = "png" if i % 2 == 0 else "jpg"
    rel = f"{'img/sub' if i % 4 == 3 else 'img'}/p{i:03d}.{fmt}"
    path = f"{a.out}/csv/{rel}"
    with open(path, "wb") as f:
        f.write(image_bytes(i, fmt))
    name = os.path.abspath(path) if i == 5 else rel
    rows.append((name, caption(i)))
    exp["csv"]["pairs"].append({"id": name, "text": caption(i).strip(), "file": path})
# the same image with a second caption: id "path#2"
rows.append((rows[0][0], "second caption of the first image"))
exp["csv"]["pairs"].append({"id": rows[0][0] + "#2", "text": "second caption of the first image",
                            "file": exp["csv"]["pairs"][0]["file"]})
if not a.clean:
    rows.append(("img/missing.png", "an image that is not there"))
    exp["csv"]["problems"].append({"kind": "metadata row without image", "name": "img/missing.png"})
    with open(f"{a.out}/csv/img/corrupt.png", "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + bytes(rng.integers(0, 256, 300, dtype=np.uint8)))
    rows.append(("img/corrupt.png", "a corrupt image"))
    exp["csv"]["problems"].append({"kind": "corrupt image", "name": "img/corrupt.png"})
    rows.append(("img/p000.png", "   "))
    exp["csv"]["problems"].append({"kind": "bad metadata row", "name": "empty caption"})


def quote(s, sep):
    if any(c in s for c in f'"{sep}\n\r'):
        return '"' + s.replace('"', '""') + '"'
    return s


for sep, name, hdr in [(",", "captions.csv", ("filepath", "title")), ("\t", "captions.tsv", ("image", "caption"))]:
    with open(f"{a.out}/csv/{name}", "w", encoding="utf-8", newline="") as f:
        f.write(f"extra{sep}{hdr[0]}{sep}{hdr[1]}\r\n")
        for k, (p, c) in enumerate(rows):
            f.write(f"{k}{sep}{quote(p, sep)}{sep}{quote(c, sep)}\r\n")

# webdataset shards: keys in order, members of a key adjacent
keys = [f"{i:06d}" for i in range(a.n)]
shards = [keys[: a.n // 2], keys[a.n // 2:]]
for s, ks in enumerate(shards):
    tpath = f"{a.out}/wds/shard-{s:03d}.tar"
    with tarfile.open(tpath, "w") as t:
        def add(name, data):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))
        for j, k in enumerate(ks):
            i = int(k)
            fmt = "png" if i % 2 == 0 else "jpg"
            if i % 5 == 4:
                fmt = "jpeg"
            if i % 7 == 6:
                fmt = "webp"
            data = image_bytes(i, {"png": "png", "webp": "webp"}.get(fmt, "jpg"))
            problem = None
            if not a.clean and j == 2:
                problem = "image without caption"
            elif not a.clean and j == 3:
                problem = "caption without image"
            elif not a.clean and j == 4 and s == 1:
                problem = "corrupt"
                data = b"\xff\xd8\xff\xe0" + bytes(rng.integers(0, 256, 200, dtype=np.uint8))
            if problem != "caption without image":
                add(f"{k}.{fmt}", data)
            if problem != "image without caption":
                add(f"{k}.txt", caption(i).encode())
            add(f"{k}.json", json.dumps({"i": i}).encode())  # another loader's: passed over
            if problem is None:
                ref = f"{a.out}/wds-ref/{k}.{fmt}"
                with open(ref, "wb") as f:
                    f.write(data)
                exp["wds"]["pairs"].append({"id": k, "text": caption(i).strip(), "file": ref})
            else:
                kind = {"image without caption": "image without metadata row",
                        "caption without image": "metadata row without image",
                        "corrupt": "corrupt image"}[problem]
                exp["wds"]["problems"].append({"kind": kind, "name": k})
with open(a.expect, "w") as f:
    json.dump(exp, f, indent=1)
