#!/usr/bin/env python3
"""Make small data sets in the real release layouts whose classes are
visible in the pixels, so a model can learn them and a person can see them.

    python3 examples/make_demo_data.py OUTDIR [--dataset ham10000|nih|pairs]
                                       [--per-class N] [--seed S]

ham10000 (default): each diagnosis is a lesion of its own colour and shape on
  a skin-toned background, with noise. OUTDIR gets HAM10000_images_part_1.zip,
  HAM10000_images_part_2.zip (600x450 JPEGs named ISIC_xxxxxxx.jpg) and
  HAM10000_metadata.csv with the real columns (lesion_id,image_id,dx,dx_type,
  age,sex,localization,dataset). Some lesions have two images, as in the real
  set. The localization leans towards a site per diagnosis (a signal for the
  metadata text, never the diagnosis's name).
nih: grey "chest films" (128x128 PNGs) in which each of the 14 findings is a
  bright disc in a cell of its own on a 4x4 grid; an image has 0 to 3 of them
  (multi-label, "No Finding" for none). OUTDIR gets images_001.tar.gz and
  images_002.tar.gz (members images/NNNNNNNN_NNN.png), Data_Entry_2017.csv
  (the 11-field header), train_val_list.txt and test_list.txt split by
  patient, as released. --per-class N makes about 5 N images. Age and view
  lean with the findings (metadata text signal).
pairs: image-caption pairs; each image is a shape of a colour in a place, and
  its caption says so ("a red square on the left"). OUTDIR gets images/NNN.png,
  pairs.csv (filepath,title; paths relative to OUTDIR) and pairs.tar (a
  webdataset shard: NNN.png + NNN.txt). --per-class N makes 6 N pairs.

Seeded: the same arguments give the same files. Needs numpy and Pillow only."""
import argparse
import csv
import io
import os
import tarfile
import zipfile

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]
# (lesion RGB, shape) per class: different enough to see, close enough to need learning
LOOK = {
    "akiec": ((200, 80, 60), "square"),
    "bcc": ((230, 170, 170), "ring"),
    "bkl": ((120, 80, 40), "ellipse"),
    "df": ((160, 110, 90), "small"),
    "mel": ((40, 25, 20), "blob"),
    "nv": ((150, 95, 60), "ellipse"),
    "vasc": ((170, 20, 60), "square"),
}
SITES = ["back", "face", "lower extremity", "trunk", "upper extremity", "abdomen", "scalp"]


def lesion_image(dx, rng, w=600, h=450):
    skin = np.array([225, 180, 150]) + rng.integers(-20, 20, 3)
    img = Image.new("RGB", (w, h), tuple(int(c) for c in skin))
    d = ImageDraw.Draw(img)
    colour, shape = LOOK[dx]
    colour = tuple(int(np.clip(c + rng.integers(-15, 15), 0, 255)) for c in colour)
    cx, cy = w // 2 + rng.integers(-60, 60), h // 2 + rng.integers(-40, 40)
    r = int(rng.integers(60, 110))
    if shape == "square":
        d.rectangle([cx - r, cy - r, cx + r, cy + r], fill=colour)
    elif shape == "ring":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], outline=colour, width=max(8, r // 4))
    elif shape == "ellipse":
        d.ellipse([cx - r, cy - r // 2, cx + r, cy + r // 2], fill=colour)
    elif shape == "small":
        d.ellipse([cx - r // 3, cy - r // 3, cx + r // 3, cy + r // 3], fill=colour)
    else:  # an irregular blob of overlapping circles
        for _ in range(6):
            ox, oy, rr = rng.integers(-r // 2, r // 2), rng.integers(-r // 2, r // 2), r // 2
            d.ellipse([cx + ox - rr, cy + oy - rr, cx + ox + rr, cy + oy + rr], fill=colour)
    a = np.asarray(img).astype(np.int16) + rng.integers(-12, 12, (h, w, 3))
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))


def ham10000(args, rng):
    lean = np.random.default_rng([args.seed, 1])
    rows, images = [], []
    image_no, lesion_no = 24306, 0
    for dx in CLASSES:
        made = 0
        while made < args.per_class:
            lesion_no += 1
            lesion = f"HAM_{lesion_no:07d}"
            age = "" if rng.random() < 0.05 else f"{int(rng.integers(4, 18)) * 5}.0"
            sex = ["male", "female"][int(rng.integers(0, 2))]
            site = SITES[int(rng.integers(0, len(SITES)))]
            # the site leans to one per diagnosis (metadata text with a signal,
            # never its name), drawn apart so the images stay those of earlier versions
            if lean.random() < 0.6:
                site = SITES[CLASSES.index(dx)]
            for _ in range(min(1 + int(rng.random() < 0.3), args.per_class - made)):
                name = f"ISIC_{image_no:07d}"
                image_no += 1
                made += 1
                rows.append([lesion, name, dx, "histo", age, sex, site, "vidir_modern"])
                images.append((name, lesion_image(dx, rng)))
    order = rng.permutation(len(images))
    half = (len(images) + 1) // 2
    for part, idx in ((1, order[:half]), (2, order[half:])):
        with zipfile.ZipFile(os.path.join(args.outdir, f"HAM10000_images_part_{part}.zip"), "w") as z:
            for i in sorted(idx):
                buf = io.BytesIO()
                images[i][1].save(buf, "JPEG", quality=90)
                z.writestr(images[i][0] + ".jpg", buf.getvalue())
    with open(os.path.join(args.outdir, "HAM10000_metadata.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization", "dataset"])
        w.writerows(rows)
    print(f"{len(rows)} images of {lesion_no} lesions in {args.outdir}")


NIH = ["Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule",
       "Pneumonia", "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis",
       "Pleural_Thickening", "Hernia"]


def chest_film(findings, rng, n=128):
    """A grey film: a dim body with noise, and one bright disc per finding in its own
    cell of a 4x4 grid (cell k = finding k), so each label is visible on its own."""
    a = np.full((n, n), 40.0) + rng.normal(0, 6, (n, n))
    yy, xx = np.mgrid[0:n, 0:n]
    a += 50.0 * np.exp(-(((xx - n / 2) / (n / 2.6)) ** 2 + ((yy - n / 2) / (n / 2.2)) ** 2))
    cell = n // 4
    for k in findings:
        cy = (k // 4) * cell + cell // 2 + rng.integers(-cell // 8, cell // 8 + 1)
        cx = (k % 4) * cell + cell // 2 + rng.integers(-cell // 8, cell // 8 + 1)
        r = cell * (0.28 + 0.08 * rng.random())
        a[(xx - cx) ** 2 + (yy - cy) ** 2 <= r * r] = 200.0 + rng.integers(0, 40)
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "L")


def nih(args, rng):
    n_img = 5 * args.per_class
    rows, tv, test = [], [], []
    patient, i = 0, 0
    members = []
    while i < n_img:
        patient += 1
        is_test = rng.random() < 0.25
        for follow in range(min(1 + int(rng.integers(0, 3)), n_img - i)):
            k = int(rng.choice([0, 1, 1, 1, 2, 2, 3]))
            found = sorted(int(c) for c in rng.choice(len(NIH), k, replace=False))
            name = f"{patient:08d}_{follow:03d}.png"
            labels = "|".join(NIH[c] for c in found) or "No Finding"
            # age and view lean with the findings: a signal, never a label name
            age = int(np.clip(30 + 12 * len(found) + rng.integers(-10, 11), 1, 95))
            view = "AP" if (found and rng.random() < 0.7) or rng.random() < 0.2 else "PA"
            sex = "M" if rng.random() < 0.5 else "F"
            rows.append([name, labels, str(follow), str(patient), str(age), sex, view,
                         "2500", "2048", "0.143", "0.143"])
            (test if is_test else tv).append(name)
            buf = io.BytesIO()
            chest_film(found, rng).save(buf, "PNG")
            members.append((name, buf.getvalue()))
            i += 1
    half = (len(members) + 1) // 2
    for part, chunk in ((1, members[:half]), (2, members[half:])):
        with tarfile.open(os.path.join(args.outdir, f"images_{part:03d}.tar.gz"), "w:gz") as t:
            for name, data in chunk:
                ti = tarfile.TarInfo("images/" + name)
                ti.size, ti.mtime = len(data), 1500000000
                t.addfile(ti, io.BytesIO(data))
    with open(os.path.join(args.outdir, "Data_Entry_2017.csv"), "w", newline="") as f:
        f.write("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,"
                "View Position,OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]\n")
        csv.writer(f, lineterminator="\n").writerows(rows)
    for fname, names in (("train_val_list.txt", tv), ("test_list.txt", test)):
        with open(os.path.join(args.outdir, fname), "w") as f:
            f.write("".join(n + "\n" for n in names))
    print(f"{len(rows)} images of {patient} patients ({len(test)} test) in {args.outdir}")


COLOURS = {"red": (220, 40, 40), "green": (40, 190, 60), "blue": (50, 70, 220),
           "yellow": (230, 210, 40), "white": (245, 245, 245), "purple": (150, 50, 190)}
SHAPES = ["square", "disc", "ring", "bar"]
PLACES = {"on the left": (0.3, 0.5), "on the right": (0.7, 0.5), "at the top": (0.5, 0.3),
          "at the bottom": (0.5, 0.7), "in the centre": (0.5, 0.5)}


def pair_image(colour, shape, place, rng, n=96):
    img = Image.new("RGB", (n, n), tuple(int(c) for c in rng.integers(20, 70, 3)))
    d = ImageDraw.Draw(img)
    fx, fy = PLACES[place]
    cx, cy = int(fx * n + rng.integers(-4, 5)), int(fy * n + rng.integers(-4, 5))
    r = int(n * (0.16 + 0.04 * rng.random()))
    c = tuple(int(np.clip(v + rng.integers(-20, 21), 0, 255)) for v in COLOURS[colour])
    if shape == "square":
        d.rectangle([cx - r, cy - r, cx + r, cy + r], fill=c)
    elif shape == "disc":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=c)
    elif shape == "ring":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], outline=c, width=max(3, r // 3))
    else:
        d.rectangle([cx - r, cy - r // 3, cx + r, cy + r // 3], fill=c)
    a = np.asarray(img).astype(np.int16) + rng.integers(-10, 11, (n, n, 3))
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))


def pairs(args, rng):
    os.makedirs(os.path.join(args.outdir, "images"), exist_ok=True)
    rows = []
    with tarfile.open(os.path.join(args.outdir, "pairs.tar"), "w") as t:
        for i in range(6 * args.per_class):
            colour = list(COLOURS)[int(rng.integers(0, len(COLOURS)))]
            shape = SHAPES[int(rng.integers(0, len(SHAPES)))]
            place = list(PLACES)[int(rng.integers(0, len(PLACES)))]
            caption = f"a {colour} {shape} {place}"
            buf = io.BytesIO()
            pair_image(colour, shape, place, rng).save(buf, "PNG")
            path = f"images/{i:03d}.png"
            with open(os.path.join(args.outdir, path), "wb") as f:
                f.write(buf.getvalue())
            rows.append([path, caption])
            for name, data in ((f"{i:03d}.png", buf.getvalue()), (f"{i:03d}.txt", caption.encode())):
                ti = tarfile.TarInfo(name)
                ti.size, ti.mtime = len(data), 1500000000
                t.addfile(ti, io.BytesIO(data))
    with open(os.path.join(args.outdir, "pairs.csv"), "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["filepath", "title"])
        w.writerows(rows)
    print(f"{len(rows)} image-caption pairs in {args.outdir}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("outdir")
    ap.add_argument("--dataset", choices=["ham10000", "nih", "pairs"], default="ham10000")
    ap.add_argument("--per-class", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    os.makedirs(args.outdir, exist_ok=True)
    {"ham10000": ham10000, "nih": nih, "pairs": pairs}[args.dataset](args, rng)


if __name__ == "__main__":
    main()
