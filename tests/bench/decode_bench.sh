#!/bin/sh
# decode_bench.sh [N] - bm-decode against a Python Pillow loop doing the same
# work (read a tar.gz, decode, resize bicubic to short side 224, center crop,
# RGB) on N (default 300) generated 1024x1024 8-bit grey PNGs in an NIH-style
# release. Prints images/s of each and the ratio. Numbers, not pass/fail:
# run it on a quiet machine.
set -eu
N=${1:-300}
BM_BIN=${BM_BIN:-$(cd "$(dirname "$0")/../.." && pwd)/bin}
PY=${PY:-/usr/bin/python3}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
mkdir -p "$T/nih"
$PY - "$T/nih" "$N" <<'PY'
import io, sys, tarfile
import numpy as np
from PIL import Image
out, n = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(0)
y, x = np.mgrid[0:1024, 0:1024]
rows = []
with tarfile.open(out + "/images_001.tar.gz", "w:gz") as t:
    for i in range(n):
        # chest-film-like: smooth anatomy-scale structure plus sensor noise
        a = 120 + 60 * np.sin(x / (40 + i % 7)) * np.cos(y / (55 + i % 5)) + rng.normal(0, 6, (1024, 1024))
        b = io.BytesIO()
        Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "L").save(b, "PNG")
        name = "%08d_000.png" % (i + 1)
        ti = tarfile.TarInfo("images/" + name)
        ti.size = b.tell()
        b.seek(0)
        t.addfile(ti, b)
        rows.append("%s,No Finding,0,%d,50,M,PA,2500,2048,0.168,0.168" % (name, i + 1))
hdr = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,"
       "View Position,OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]")
open(out + "/Data_Entry_2017.csv", "w").write(hdr + "\n" + "\n".join(rows) + "\n")
open(out + "/train_val_list.txt", "w").write("\n".join(r.split(",")[0] for r in rows) + "\n")
open(out + "/test_list.txt", "w").write("")
PY
echo "decode_bench: $N PNGs 1024x1024 grey, $(du -k "$T/nih/images_001.tar.gz" | cut -f1) KB tar.gz, $(nproc) cores"

# wall-clock images/s, and CPU seconds per image (user + sys: less disturbed
# by other load on the machine)
run_c() {
  /usr/bin/time -f "%e %U %S" -o "$T/time" "$BM_BIN/bm-decode" -q "$@" --format nih "$T/nih" >"$T/out.bmr" 2>/dev/null
  awk -v n="$N" '{printf "%.1f %.1f", n / $1, 1000 * ($2 + $3) / n}' "$T/time"
}
set -- $(run_c); c_rate=$1; c_cpu=$2
echo "bm-decode ($(nproc) threads):       $c_rate images/s, $c_cpu ms CPU/image"
set -- $(run_c -j 1); c1_rate=$1; c1_cpu=$2
echo "bm-decode (1 thread):          $c1_rate images/s, $c1_cpu ms CPU/image"

py_rate=$($PY - "$T/nih/images_001.tar.gz" <<'PY'
import io, sys, tarfile, time
import numpy as np
from PIL import Image
t0 = time.time()
n = 0
with tarfile.open(sys.argv[1], "r:gz") as t:
    for m in t:
        if not m.isfile():
            continue
        im = Image.open(io.BytesIO(t.extractfile(m).read()))
        w, h = im.size
        ow, oh = (224, int(224 * h / w)) if w <= h else (int(224 * w / h), 224)
        im = im.resize((ow, oh), Image.BICUBIC)
        l, tp = int(round((ow - 224) / 2.0)), int(round((oh - 224) / 2.0))
        a = np.asarray(im.crop((l, tp, l + 224, tp + 224)).convert("RGB")).transpose(2, 0, 1).tobytes()
        n += 1
import resource
ru = resource.getrusage(resource.RUSAGE_SELF)
print("%.1f %.1f" % (n / (time.time() - t0), 1000 * (ru.ru_utime + ru.ru_stime) / n))
PY
)
set -- $py_rate; py_rate=$1; py_cpu=$2
echo "Python Pillow loop (1 process): $py_rate images/s, $py_cpu ms CPU/image (incl. start-up)"
echo "ratio bm-decode / Pillow, images/s: $(echo "$c_rate $py_rate" | awk '{printf "%.2f", $1 / $2}') (all cores), $(echo "$c1_rate $py_rate" | awk '{printf "%.2f", $1 / $2}') (1 thread); CPU per image: $(echo "$py_cpu $c1_cpu" | awk '{printf "%.2f", $1 / $2}')x less"
