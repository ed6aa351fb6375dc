#!/usr/bin/env python3
"""Rewrite a torch.save checkpoint as .safetensors, optionally damaged, with
nothing but numpy: the tests use it to make bad models without torch.

    bin2safetensors.py IN.bin OUT.safetensors [--drop NAME]... [--reshape NAME=D0xD1...] [--half]

The zip's data.pkl is read with a restricted unpickler that knows only the
tensor-rebuild function, the storage types and OrderedDict, the same subset
the C loader accepts.
"""
import argparse
import collections
import json
import pickle
import struct
import sys
import zipfile

import numpy as np

STORAGE = {"FloatStorage": ("<f4", "F32"), "HalfStorage": ("<f2", "F16"),
           "LongStorage": ("<i8", "I64"), "IntStorage": ("<i4", "I32")}


def load(path):
    z = zipfile.ZipFile(path)
    pkl = next(n for n in z.namelist() if n.endswith("/data.pkl"))
    root = pkl[: -len("data.pkl")]

    tag = {v[0]: v[1] for v in STORAGE.values()}

    def rebuild(storage, offset, size, stride, *rest):
        dt, key = storage
        a = np.frombuffer(z.read(root + "data/" + key), dtype=dt)
        view = np.lib.stride_tricks.as_strided(a[offset:], shape=tuple(size),
                                               strides=tuple(s * a.itemsize for s in stride))
        return np.array(view, copy=True), tag[dt]

    class U(pickle.Unpickler):
        def find_class(self, mod, name):
            if (mod, name) == ("torch._utils", "_rebuild_tensor_v2"):
                return rebuild
            if (mod, name) == ("collections", "OrderedDict"):
                return collections.OrderedDict
            if mod == "torch" and name in STORAGE:
                return name
            raise pickle.UnpicklingError(f"global {mod}.{name} refused")

        def persistent_load(self, pid):
            _, kind, key, _, _ = pid
            return STORAGE[kind][0], key

    return U(z.open(pkl)).load()


def save(path, tensors):
    header, blobs, off = {}, [], 0
    for name, (a, tag) in tensors.items():
        b = np.ascontiguousarray(a).tobytes()
        header[name] = {"dtype": tag, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("inp")
    ap.add_argument("out")
    ap.add_argument("--drop", action="append", default=[])
    ap.add_argument("--reshape", action="append", default=[])
    ap.add_argument("--half", action="store_true", help="float32 tensors as float16")
    a = ap.parse_args()
    t = load(a.inp)
    for n in a.drop:
        del t[n]
    for r in a.reshape:
        n, dims = r.split("=")
        arr, tag = t[n]
        shape = [int(d) for d in dims.split("x")]
        t[n] = (np.resize(arr, shape), tag)
    if a.half:
        t = {n: (arr.astype("<f2"), "F16") if tag == "F32" else (arr, tag) for n, (arr, tag) in t.items()}
    save(a.out, t)
    return 0


if __name__ == "__main__":
    sys.exit(main())
