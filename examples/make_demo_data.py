#!/usr/bin/env python3
"""Make a small data set in the HAM10000 release layout whose classes are
visible: each diagnosis is a lesion of its own colour and shape on a skin-toned
background, with noise, so a model can learn it and a person can see it.

    python3 examples/make_demo_data.py OUTDIR [--per-class N] [--seed S]

OUTDIR gets HAM10000_images_part_1.zip, HAM10000_images_part_2.zip (600x450
JPEGs named ISIC_xxxxxxx.jpg) and HAM10000_metadata.csv with the real columns
(lesion_id,image_id,dx,dx_type,age,sex,localization,dataset). Some lesions
have two images, as in the real set. Needs numpy and Pillow only."""
import argparse
import csv
import io
import os
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


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("outdir")
    ap.add_argument("--per-class", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    os.makedirs(args.outdir, exist_ok=True)
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


if __name__ == "__main__":
    main()
