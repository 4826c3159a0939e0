#!/usr/bin/python3
"""Prints what a correct conversion of a .npy/.npz must contain, as computed by
numpy: {tensor name: {"dtype", "shape", "sha256"}} where sha256 is over the
little-endian, C-order bytes of the array. Used by the fidelity tests."""
import hashlib
import json
import sys

import numpy as np

DTYPES = {"b": "bool", "i1": "i8", "u1": "u8", "i2": "i16", "u2": "u16", "i4": "i32", "u4": "u32",
          "i8": "i64", "u8": "u64", "f2": "f16", "f4": "f32", "f8": "f64", "c8": "c64", "c16": "c128"}


def describe(arr):
    arr = np.asarray(arr)
    le = arr.astype(arr.dtype.newbyteorder("<"), order="C", copy=True)
    key = "b" if arr.dtype.kind == "b" else arr.dtype.kind + str(arr.dtype.itemsize)
    return {"dtype": DTYPES[key], "shape": list(arr.shape),
            "sha256": hashlib.sha256(np.ascontiguousarray(le).tobytes()).hexdigest()}


def main(path):
    out = {}
    if path.endswith(".npz"):
        with np.load(path, allow_pickle=False) as z:
            for name in z.files:
                out[name] = describe(z[name])
    else:
        out["array"] = describe(np.load(path, allow_pickle=False))
    json.dump(out, sys.stdout, sort_keys=True)


if __name__ == "__main__":
    main(sys.argv[1])
