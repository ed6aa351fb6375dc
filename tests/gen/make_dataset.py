#!/usr/bin/python3
"""Build a small data set in a real release layout, with the edge cases of
the wild, and write what bm-decode must make of it as JSON.

  make_dataset.py nih|ham|isic|folder OUTDIR EXPECT.json [--layout archive|folder]
                  [--header 11|12] [--seed N] [--n N] [--clean]

nih:    images_001.tar.gz, images_002.tar.gz (members images/NAME.png) or an
        extracted images/ folder; Data_Entry_2017.csv (11 or 12 header fields,
        the 12-field variant ends with a comma; last line without newline);
        train_val_list.txt, test_list.txt.
ham:    HAM10000_images_part_1.zip, _part_2.zip (or folders of those names);
        HAM10000_metadata (no .csv, image_id without .jpg) or
        HAM10000_metadata.csv (image_id with .jpg, a "dataset" column).
isic:   ISIC2018_Task3_Test_Images.zip with macOS junk +
        ISIC2018_Task3_Test_GroundTruth.csv.
folder: images/ (png and jpg) + labels.csv (id,label,site).

Edge cases (unless --clean): RGBA, LA, 16-bit grey, palette-free odd sizes,
an image smaller than the crop (upscaled), a corrupt and a truncated image,
__MACOSX/._* and .DS_Store members, an image without a CSV row, a CSV row
without an image, an unknown label, an empty age.

EXPECT.json: {"dataset", "task", "classes", "records": {id: {group, split,
target, meta, text, file, sixteen}}, "problems": {kind: count}}. split is
"test" or "trainval" (NIH: train or val, by patient) or "any" (decided by
bm-decode's seeded split)."""
import argparse
import io
import json
import os
import random
import sys
import tarfile
import zipfile

import numpy as np
from PIL import Image

NIH = ["Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule",
       "Pneumonia", "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis",
       "Pleural_Thickening", "Hernia"]
HAM = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]


def smooth_noise(rng, h, w, c):
    """Random images with structure at several scales, never constant."""
    base = rng.random((max(2, h // 8), max(2, w // 8), c))
    im = Image.fromarray((base * 255).astype(np.uint8).squeeze())
    im = im.resize((w, h), Image.BILINEAR)
    a = np.asarray(im).astype(np.int32).reshape(h, w, c)
    a = a + rng.integers(-40, 41, size=a.shape)
    return np.clip(a, 0, 255).astype(np.uint8)


def encode(rng, kind, w, h, fmt="PNG"):
    """Image bytes of a kind: L, RGB, RGBA, LA, I16."""
    if kind == "I16":
        a = smooth_noise(rng, h, w, 1)[:, :, 0].astype(np.uint16) * 257
        a = a + rng.integers(0, 256, size=a.shape).astype(np.uint16)
        im = Image.fromarray(a.astype(np.uint16))
    else:
        c = {"L": 1, "RGB": 3, "RGBA": 4, "LA": 2}[kind]
        a = smooth_noise(rng, h, w, c)
        if c in (2, 4):  # alpha with fully transparent and opaque pixels too
            a[: h // 4, :, -1] = 0
            a[h // 4: h // 2, :, -1] = 255
        im = Image.fromarray(a.squeeze(), {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[c])
    b = io.BytesIO()
    im.save(b, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return b.getvalue()


def sizes(rng):
    return int(rng.integers(33, 90)), int(rng.integers(33, 90))


class Builder:
    def __init__(self, out, expect, layout, seed):
        self.out, self.expect, self.layout = out, expect, layout
        self.rng = np.random.default_rng(seed)
        self.members = {}  # container -> [(name, bytes)]
        self.records = {}
        self.problems = {}
        os.makedirs(out, exist_ok=True)
        self.srcdir = os.path.abspath(expect) + ".src"  # the source images, for the checker
        os.makedirs(self.srcdir, exist_ok=True)

    def problem(self, kind, n=1):
        self.problems[kind] = self.problems.get(kind, 0) + n

    def add(self, container, name, data):
        self.members.setdefault(container, []).append((name, data))

    def keep_source(self, key, data):
        """The image bytes, for the checker to compute Pillow's pixels."""
        p = os.path.join(self.srcdir, key)
        with open(p, "wb") as f:
            f.write(data)
        return p

    def write_containers(self, kind):
        for cont, members in self.members.items():
            if self.layout == "folder":
                for name, data in members:
                    # tarballs of NIH all extract into one images/ folder;
                    # zips into folders named after them
                    p = os.path.join(self.out, name if kind == "tar" else os.path.join(cont, name))
                    os.makedirs(os.path.dirname(p), exist_ok=True)
                    with open(p, "wb") as f:
                        f.write(data)
            elif kind == "tar":
                with tarfile.open(os.path.join(self.out, cont + ".tar.gz"), "w:gz") as t:
                    for name, data in members:
                        ti = tarfile.TarInfo(name)
                        ti.size = len(data)
                        t.addfile(ti, io.BytesIO(data))
            else:
                with zipfile.ZipFile(os.path.join(self.out, cont + ".zip"), "w") as z:
                    for name, data in members:
                        z.writestr(name, data)

    def save(self, dataset, task, classes):
        with open(self.expect, "w") as f:
            json.dump({"dataset": dataset, "task": task, "classes": classes,
                       "records": self.records, "problems": self.problems}, f, indent=1)


def edge_images(b, clean):
    """(kind, w, h, fmt) of the images; the odd ones first when not clean."""
    kinds = [("L", *sizes(b.rng), "PNG") for _ in range(args.n)]
    if not clean:
        kinds[0] = ("RGBA", 70, 52, "PNG")
        kinds[1] = ("I16", 48, 64, "PNG")
        kinds[2] = ("LA", 41, 77, "PNG")
        kinds[3] = ("L", 20, 26, "PNG")  # upscaled to the crop size
        kinds[4] = ("RGB", 64, 48, "PNG")
    return kinds


def nih(b, clean, header):
    rng = random.Random(args.seed)
    rows, tv, test = [], [], []
    kinds = edge_images(b, clean)
    npat = max(3, args.n // 3)
    for i, (kind, w, h, fmt) in enumerate(kinds):
        pid = 1 + i % npat
        name = "%08d_%03d.png" % (pid, i // npat)
        labels = sorted(rng.sample(NIH, rng.choice([0, 0, 1, 1, 2, 3])), key=NIH.index)
        age = str(rng.randint(1, 95))
        sex, view = rng.choice("MF"), rng.choice(["PA", "AP"])
        data = encode(b.rng, kind, w, h, fmt)
        cont = "images_%03d" % (1 + i % 2)
        (test if pid % 3 == 0 else tv).append(name)
        rec = {"group": str(pid), "split": "test" if pid % 3 == 0 else "trainval",
               "target": [1.0 if c in labels else 0.0 for c in NIH],
               "meta": {"age": int(age), "sex": sex, "view": view, "follow_up": i // npat},
               "text": "%s year old %s, %s view" % (age, {"M": "male", "F": "female"}[sex], view),
               "sixteen": kind == "I16"}
        if not clean and i == 5:  # empty age: the record stays, without age
            age = ""
            del rec["meta"]["age"]
            rec["text"] = "%s, %s view" % ({"M": "male", "F": "female"}[sex], view)
            b.problem("empty age")
        if not clean and i == 6:  # unknown label: no record
            labels = ["Cardiomegaly", "Pneumonitis"]
            b.problem("unknown label")
            rec = None
        if not clean and i == 8:  # truncated PNG
            data, rec = data[: len(data) // 2], None
            b.problem("corrupt image")
        if not clean and i == 9:  # not a PNG at all
            data, rec = bytes(b.rng.integers(0, 256, 300, dtype=np.uint8)), None
            b.problem("corrupt image")
        if not clean and i == 7:  # a row without its image
            b.problem("metadata row without image")
            rec = None
        else:
            b.add(cont, "images/" + name, data)
        if rec is not None:
            rec["file"] = b.keep_source(name, data)
            b.records[name] = rec
        rows.append([name, "|".join(labels) or "No Finding", str(i // npat), str(pid), age, sex,
                     view, str(w * 40), str(h * 40), "0.143", "0.143"])
    if not clean:
        b.add("images_001", "images/99999999_000.png", encode(b.rng, "L", 40, 40))  # no row
        b.problem("image without metadata row")
        junk = "images/._00000001_000.png" if b.layout == "folder" else "__MACOSX/images/._00000001_000.png"
        b.add("images_001", junk, b"\0\5\26\7junk")
        b.add("images_002", "images/.DS_Store", b"\0\0\0\1Bud1")
        b.problem("not an image", 2)
    b.write_containers("tar")
    hdr = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,"
           "View Position,OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]")
    if header == 12:
        hdr += ","
    text = hdr + "\n" + "\n".join(",".join(r) for r in rows)  # no final newline
    with open(os.path.join(b.out, "Data_Entry_2017.csv"), "w") as f:
        f.write(text)
    for fn, names in (("train_val_list.txt", tv), ("test_list.txt", test)):
        with open(os.path.join(b.out, fn), "w") as f:
            f.write("\n".join(names) + "\n")
    b.save("nih-chestxray14", "multilabel", NIH)


def ham(b, clean, with_ext):
    rng = random.Random(args.seed)
    kinds = [("RGB", *sizes(b.rng), "JPEG") for _ in range(args.n)]
    if not clean:
        kinds[0] = ("RGB", 60, 45, "PNG")
        kinds[1] = ("L", 20, 30, "JPEG")
    rows = []
    nles = max(3, int(args.n * 0.75))
    lesion_dx = {}
    for i, (kind, w, h, fmt) in enumerate(kinds):
        les = "HAM_%07d" % (i % nles)
        dx = lesion_dx.setdefault(les, HAM[rng.randrange(7)])
        iid = "ISIC_%07d" % (24306 + i)
        age = str(float(rng.choice(range(5, 90, 5))))
        sex = rng.choice(["male", "female", "unknown"])
        loc = rng.choice(["back", "face", "lower extremity", "unknown"])
        data = encode(b.rng, kind, w, h, fmt)
        cont = "HAM10000_images_part_%d" % (1 + i % 2)
        meta = {"age": float(age), "sex": sex, "localization": loc, "dx_type": "histo"}
        if with_ext:
            meta["dataset"] = "vidir_modern"
        words = [("%d year old" % int(float(age)))] + ([sex] if sex != "unknown" else [])
        text = " ".join(words) + (", " + loc if loc != "unknown" else "")
        rec = {"group": les, "split": "any", "target": [1.0 if c == dx else 0.0 for c in HAM],
               "meta": meta, "text": text, "sixteen": False}
        if not clean and i == 2:
            age = ""
            del meta["age"]
            t = sex if sex != "unknown" else ""
            if loc != "unknown":
                t = (t + ", " if t else "") + loc
            rec["text"] = t or "no metadata"
            b.problem("empty age")
        if not clean and i == 3:
            dx = "melanoma"
            b.problem("unknown label")
            rec = None
        if not clean and i == 5:  # truncated JPEG
            data, rec = data[: len(data) // 2], None
            b.problem("corrupt image")
        if not clean and i == 4:
            b.problem("metadata row without image")
            rec = None
        else:
            b.add(cont, iid + ".jpg", data)
        if rec is not None:
            rec["file"] = b.keep_source(iid, data)
            b.records[iid] = rec
        row = [les, iid + (".jpg" if with_ext else ""), dx, "histo", age, sex, loc]
        if with_ext:
            row.append("vidir_modern")
        rows.append(row)
    if not clean:
        b.add("HAM10000_images_part_1", "ISIC_9999999.jpg", encode(b.rng, "RGB", 30, 30, "JPEG"))
        b.problem("image without metadata row")
        b.add("HAM10000_images_part_2", "__MACOSX/._ISIC_0024306.jpg", b"\0\5\26\7junk")
        b.problem("not an image")
    b.write_containers("zip")
    hdr = "lesion_id,image_id,dx,dx_type,age,sex,localization" + (",dataset" if with_ext else "")
    with open(os.path.join(b.out, "HAM10000_metadata" + (".csv" if with_ext else "")), "w") as f:
        f.write(hdr + "\n" + "\n".join(",".join(r) for r in rows) + "\n")
    b.save("ham10000", "multiclass", HAM)


def isic(b, clean):
    rng = random.Random(args.seed)
    cols = ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]
    rows = []
    for i in range(args.n):
        iid = "ISIC_%07d" % (34524 + i)
        k = rng.randrange(7)
        data = encode(b.rng, "RGB", *sizes(b.rng), "JPEG")
        b.add("ISIC2018_Task3_Test_Images", "ISIC2018_Task3_Test_Images/" + iid + ".jpg", data)
        b.records[iid] = {"group": iid, "split": "test", "file": b.keep_source(iid, data),
                          "target": [1.0 if c.upper() == cols[k] else 0.0 for c in HAM],
                          "meta": {}, "text": None, "sixteen": False}
        rows.append([iid] + ["1.0" if j == k else "0.0" for j in range(7)])
    if not clean:
        b.add("ISIC2018_Task3_Test_Images", "__MACOSX/ISIC2018_Task3_Test_Images/._" + rows[0][0] + ".jpg", b"junk")
        b.add("ISIC2018_Task3_Test_Images", "ISIC2018_Task3_Test_Images/.DS_Store", b"junk")
        b.problem("not an image", 2)
        rows[1][1:] = ["0.0"] * 7  # no class
        del b.records[rows[1][0]]
        b.problem("unknown label")
    b.write_containers("zip")
    with open(os.path.join(b.out, "ISIC2018_Task3_Test_GroundTruth.csv"), "w") as f:
        f.write("image," + ",".join(cols) + "\n" + "\n".join(",".join(r) for r in rows) + "\n")
    b.save("isic2018-task3-test", "multiclass", HAM)


def folder(b, clean):
    rng = random.Random(args.seed)
    classes = ["benign", "malignant", "normal"]
    rows = []
    for i in range(args.n):
        iid = "case%03d" % i
        lab = classes[rng.randrange(3)]
        fmt = "PNG" if i % 2 else "JPEG"
        data = encode(b.rng, "RGB" if i % 3 else "L", *sizes(b.rng), fmt)
        ext = ".png" if fmt == "PNG" else ".jpg"
        sub = "images/a/" if i % 2 else "images/"
        b.add("", sub + iid + ext, data)
        b.records[iid] = {"group": iid, "split": "any", "file": b.keep_source(iid, data),
                          "target": [1.0 if c == lab else 0.0 for c in classes],
                          "meta": {"site": "s%d" % (i % 2)}, "text": "site: s%d" % (i % 2),
                          "sixteen": False}
        rows.append([iid + ext if i % 4 == 0 else iid, lab, "s%d" % (i % 2)])
    b.layout = "folder"
    b.write_containers("zip")
    with open(os.path.join(b.out, "labels.csv"), "w") as f:
        f.write("id,label,site\n" + "\n".join(",".join(r) for r in rows) + "\n")
    b.save("folder", "multiclass", classes)


ap = argparse.ArgumentParser()
ap.add_argument("format", choices=["nih", "ham", "isic", "folder"])
ap.add_argument("out")
ap.add_argument("expect")
ap.add_argument("--layout", choices=["archive", "folder"], default="archive")
ap.add_argument("--header", type=int, choices=[11, 12], default=11)
ap.add_argument("--seed", type=int, default=1)
ap.add_argument("--n", type=int, default=24)
ap.add_argument("--clean", action="store_true")
ap.add_argument("--ext", action="store_true", help="ham: metadata .csv and image ids with .jpg")
args = ap.parse_args()
bld = Builder(args.out, args.expect, args.layout, args.seed)
if args.format == "nih":
    nih(bld, args.clean, args.header)
elif args.format == "ham":
    ham(bld, args.clean, args.ext)
elif args.format == "isic":
    isic(bld, args.clean)
else:
    folder(bld, args.clean)
sys.exit(0)
