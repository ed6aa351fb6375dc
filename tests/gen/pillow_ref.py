"""The reference preprocessing: what torchvision's Resize(N, BICUBIC) +
CenterCrop(N) + convert("RGB") do to a PIL image (BiomedCLIP's validation
transform), written with Pillow alone so it runs with Debian's python3.

bm-decode matches this bit for bit, except where bm-decode(1) says it does
not on purpose: 16-bit grey PNGs (Pillow opens them in mode "I" and
convert("RGB") saturates every value above 255; bm-decode keeps the high
byte). ref_pixels(..., sixteen="high") models bm-decode's choice."""
import numpy as np
from PIL import Image


def resized_dims(w, h, n):
    if w <= h:
        return n, int(n * h / w)
    return int(n * w / h), n


def ref_pixels(path_or_file, n=224, crop=True, sixteen="high"):
    im = Image.open(path_or_file)
    im.load()
    if im.mode in ("I", "I;16", "I;16B") and sixteen == "high":
        a = np.asarray(im).astype(np.uint32) >> 8
        im = Image.fromarray(a.astype(np.uint8), "L")
    if n:
        w, h = im.size
        ow, oh = resized_dims(w, h, n)
        im = im.resize((ow, oh), Image.BICUBIC)
        if crop:
            left = int(round((ow - n) / 2.0))
            top = int(round((oh - n) / 2.0))
            im = im.crop((left, top, left + n, top + n))
    im = im.convert("RGB")
    return np.asarray(im).transpose(2, 0, 1).copy()


def read_records(path):
    """(header, [records]) of a bm record stream; tensors as numpy arrays."""
    import msgpack
    dt = {"u8": np.uint8, "i32": "<i4", "i64": "<i8", "f16": "<f2", "f32": "<f4"}

    def conv(o):
        if isinstance(o, dict):
            if set(o) == {"dtype", "shape", "data"}:
                return np.frombuffer(o["data"], dtype=dt[o["dtype"]]).reshape(o["shape"])
            return {k: conv(v) for k, v in o.items()}
        return o

    header, recs = None, []
    with open(path, "rb") as f:
        for i, r in enumerate(msgpack.Unpacker(f, raw=False, max_buffer_size=1 << 30)):
            if i == 0 and "header" in r:
                header = r["header"]
            else:
                recs.append(conv(r))
    return header, recs
