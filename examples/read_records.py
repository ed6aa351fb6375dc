#!/usr/bin/env python3
"""Read (and write) biomedclip-c record streams from Python: msgpack + numpy.

    bm-decode --format ham10000 HAM/ | python3 examples/read_records.py
    python3 examples/read_records.py out.bmr

A stream is msgpack maps, one per record; the first may be {"header": {...}}.
A tensor is {"dtype": "u8"|"i32"|"i64"|"f16"|"f32", "shape": [...],
"data": <little-endian row-major bytes>}. See man 5 bm-records.
"""
import sys

import msgpack
import numpy as np

DTYPES = {"u8": "<u1", "i32": "<i4", "i64": "<i8", "f16": "<f2", "f32": "<f4"}
NAMES = {np.dtype(v): k for k, v in DTYPES.items()}


def is_tensor(v):
    return isinstance(v, dict) and set(v) == {"dtype", "shape", "data"}


def to_numpy(v):
    """A tensor map as a numpy array (a read-only view of the bytes)."""
    return np.frombuffer(v["data"], dtype=DTYPES[v["dtype"]]).reshape(v["shape"])


def from_numpy(a):
    """A numpy array as a tensor map."""
    a = np.ascontiguousarray(a)
    dt = a.dtype.newbyteorder("<") if a.dtype.byteorder == ">" else a.dtype
    return {"dtype": NAMES[np.dtype(dt)], "shape": list(a.shape),
            "data": a.astype(dt.newbyteorder("<"), copy=False).tobytes()}


def read(stream):
    """Yield (header, record) pairs: header is the stream's header dict or None;
    tensors in each record are numpy arrays."""
    unpacker = msgpack.Unpacker(stream, raw=False, max_buffer_size=1 << 30)
    header = None
    for i, rec in enumerate(unpacker):
        if i == 0 and isinstance(rec, dict) and list(rec) == ["header"]:
            header = rec["header"]
            continue
        yield header, {k: to_numpy(v) if is_tensor(v) else v for k, v in rec.items()}


def write(stream, header, records):
    """Write a header dict and records (numpy arrays become tensors)."""
    pack = msgpack.Packer(use_bin_type=True).pack
    stream.write(pack({"header": header}))
    for rec in records:
        stream.write(pack({k: from_numpy(v) if isinstance(v, np.ndarray) else v
                           for k, v in rec.items()}))


def main():
    f = open(sys.argv[1], "rb") if len(sys.argv) > 1 else sys.stdin.buffer
    n = 0
    for header, rec in read(f):
        if n == 0:
            print("header:", header)
        n += 1
        desc = {k: (f"{v.dtype}{list(v.shape)}" if isinstance(v, np.ndarray) else v)
                for k, v in rec.items()}
        print(desc)
    print(f"{n} records")


if __name__ == "__main__":
    main()
