#!/usr/bin/python3
"""Prints what a correct conversion of a Keras .h5 file must contain, as read
by h5py the way Keras's own loader reads it:
{tensor name: {"dtype", "shape", "sha256"}}, sha256 over the little-endian,
C-order bytes. Independent of the C++ code it checks.

usage: expected_tensors.py FILE [--keep-optimizer]

Tensor names follow the documented rule: Keras's weight names in file order
(layer_names, then each layer's weight_names; then top_level_model_weights),
a repeated name getting "#2", "#3", ...; kept optimizer weights are
"optimizer_weights/<name>"; Keras 3 weight stores use dataset paths.
"""
import hashlib
import json
import sys

import h5py
import numpy as np

DTYPES = {"b": "bool", "i1": "i8", "u1": "u8", "i2": "i16", "u2": "u16", "i4": "i32", "u4": "u32",
          "i8": "i64", "u8": "u64", "f2": "f16", "f4": "f32", "f8": "f64"}


def strings(attrs, name):
    """Keras's load_attributes_from_hdf5_group: iterates the attribute, so a
    scalar str gives its characters and a scalar bytes_ its byte values (and
    h5py.Empty raises), exactly as in Keras."""
    def listify(value):
        return [x.decode("utf-8") if hasattr(x, "decode") else x for x in value]
    if name in attrs:
        return listify(attrs[name])
    out, k = [], 0
    while "%s%d" % (name, k) in attrs:
        out += listify(attrs["%s%d" % (name, k)])
        k += 1
    return out


def describe(ds):
    arr = ds[()]
    if ds.dtype.kind == "V" and ds.attrs.get("dtype") in ("bfloat16", b"bfloat16"):
        raw, dtype = np.ascontiguousarray(arr).tobytes(), "bf16"
    else:
        arr = np.asarray(arr)
        key = "b" if arr.dtype.kind == "b" else arr.dtype.kind + str(arr.dtype.itemsize)
        dtype = DTYPES[key]
        raw = np.ascontiguousarray(arr.astype(arr.dtype.newbyteorder("<"))).tobytes()
    return {"dtype": dtype, "shape": list(ds.shape), "sha256": hashlib.sha256(raw).hexdigest()}


def main(path, keep_optimizer):
    out, used = {}, set()

    def take(base):
        name, k = base, 2
        while name in used:
            name, k = "%s#%d" % (base, k), k + 1
        used.add(name)
        return name

    with h5py.File(path, "r") as f:
        # keras.models.load_model reads model_config + model_weights when
        # they exist, whatever else is at the root.
        if "model_config" in f.attrs or "model_weights" in f:
            roots = [f["model_weights"]] if "model_weights" in f else []
        elif "layer_names" in f.attrs or "layer_names0" in f.attrs:
            roots = [f]
        else:
            def visit(name, obj):
                if isinstance(obj, h5py.Dataset) and (keep_optimizer or not name.startswith("optimizer/")):
                    out[name] = describe(obj)
            f.visititems(visit)
            json.dump(out, sys.stdout, sort_keys=True)
            return
        for root in roots:
            names = strings(root.attrs, "layer_names")
            for layer in names:
                g = root[layer]
                for w in strings(g.attrs, "weight_names"):
                    out[take(w)] = describe(g[w])
            if "top_level_model_weights" in root and "top_level_model_weights" not in names:
                g = root["top_level_model_weights"]
                for w in strings(g.attrs, "weight_names"):
                    out[take(w)] = describe(g[w])
        if keep_optimizer and "optimizer_weights" in f and roots and roots[0] is not f:
            g = f["optimizer_weights"]
            for w in strings(g.attrs, "weight_names"):
                out[take("optimizer_weights/" + w)] = describe(g[w])
    json.dump(out, sys.stdout, sort_keys=True)


if __name__ == "__main__":
    main(sys.argv[1], "--keep-optimizer" in sys.argv[2:])
