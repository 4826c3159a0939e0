"""Variants where pickle state changes what a loader does next: BUILD states
that set __class__ or __setstate__, joblib wrappers (the array bytes after a
wrapper BUILD are opcodes to pickle.load), dtype flags, a second PROTO, a
falsy BUILD state, state dicts changed after BUILD, colliding dict keys
(issue 8 found cases 3, 4, 6; LOADERS.md section 9, cases 21, 22, 25, 26)."""
import io
import os
import pickle
import struct

import joblib
import numpy as np

from common import (APPEND, BUILD, EMPTY_DICT, EMPTY_LIST, EMPTY_TUPLE, MARK, NEWFALSE, NEWOBJ,
                    NONE, REDUCE, SETITEM, SETITEMS, STOP, TUPLE1, TUPLE2, binget, binint,
                    binput, canary_call, canary_pickle, glob, numpy_dtype_ops, proto, sbu, sglob,
                    variant, write)

MASK = (1 << 64) - 1


def array_ops(a):
    """Ops that push numpy array `a` (numpy's own protocol-2 pickle, memo
    puts removed by using a fresh pickler with fast mode)."""
    buf = io.BytesIO()
    p = pickle.Pickler(buf, protocol=2)
    p.fast = True  # no memo ops, so they cannot collide with ours
    p.dump(a)
    data = buf.getvalue()
    assert data[:2] == b"\x80\x02" and data[-1:] == STOP
    return data[2:-1]


def namespace():
    return glob("argparse", "Namespace") + EMPTY_TUPLE + NEWOBJ


def wrapper_state(shape, descr="u1", byteorder="|", extra=b""):
    """The __dict__ joblib's NumpyArrayWrapper gets (no alignment key: no
    padding byte before the data)."""
    return (EMPTY_DICT + MARK + sbu("subclass") + glob("numpy", "ndarray") + sbu("shape") +
            MARK + b"".join(binint(d) for d in shape) + b"t" + sbu("order") + sbu("C") +
            sbu("dtype") + numpy_dtype_ops(descr, byteorder) + sbu("allow_mmap") + NEWFALSE +
            extra + SETITEMS)


def class_change_numpy_wrapper():
    """Issue 8 #3: a Namespace whose BUILD sets __class__ (setattr half) to
    NumpyArrayWrapper. joblib then reads 5 raw bytes (BINBYTES' opcode and
    length) and runs what the converter saw as the bytes' payload."""
    hidden = canary_call()
    slots = EMPTY_DICT + sbu("__class__") + glob("joblib.numpy_pickle", "NumpyArrayWrapper") + SETITEM
    return (proto(2) + namespace() + wrapper_state((5,)) + slots + TUPLE2 + BUILD + b"B" +
            struct.pack("<I", len(hidden)) + hidden + b"0" + STOP)


def class_change_ndarray_wrapper(npy_path):
    """Issue 8 #4: the same with NDArrayWrapper: joblib.load calls
    np.load(allow_pickle=True) on a path taken from the file."""
    state = (EMPTY_DICT + MARK + sbu("filename") + sbu(npy_path) + sbu("subclass") +
             glob("numpy", "ndarray") + sbu("allow_mmap") + NEWFALSE + SETITEMS)
    slots = EMPTY_DICT + sbu("__class__") + glob("joblib.numpy_pickle", "NDArrayWrapper") + SETITEM
    return proto(2) + namespace() + state + slots + TUPLE2 + BUILD + STOP


def canary_npy():
    header = "{'descr': '|O', 'fortran_order': False, 'shape': (1,), }"
    header += " " * (63 - (10 + len(header)) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + canary_pickle()


def wrapper(shape, data, descr="u1", byteorder="|", align=False):
    extra = sbu("numpy_array_alignment_bytes") + binint(16) if align else b""
    ops = (glob("joblib.numpy_pickle", "NumpyArrayWrapper") + EMPTY_TUPLE + NEWOBJ +
           wrapper_state(shape, descr, byteorder, extra) + BUILD)
    if align:
        return ops + bytes([0]) + data  # padding length 0
    return ops + data


# The pickle machine's hash before issue 8: murmur's finalizer, no key.
C1, C2 = 0xff51afd7ed558ccd, 0xc4ceb9fe1a85ec53
C1_INV, C2_INV = pow(C1, -1, 1 << 64), pow(C2, -1, 1 << 64)
GOLDEN = 0x9e3779b97f4a7c15


def mix(h):
    h ^= h >> 33
    h = (h * C1) & MASK
    h ^= h >> 33
    h = (h * C2) & MASK
    h ^= h >> 33
    return h


def unmix(h):
    h ^= h >> 33
    h = (h * C2_INV) & MASK
    h ^= h >> 33
    h = (h * C1_INV) & MASK
    h ^= h >> 33
    return h


def colliding_pairs(n, rng):
    """n (x, y) int pairs whose tuples all had the same old hash."""
    target = rng.getrandbits(64)
    want = unmix((target - GOLDEN) & MASK)
    out, x = [], rng.getrandbits(40)
    while len(out) < n:
        x += 1
        h1 = (mix(0x345678 ^ (mix(x) | 1)) + GOLDEN) & MASK
        ih = want ^ h1
        if ih & 1:
            y = unmix(ih)
            out.append((x, y - (1 << 64) if y >> 63 else y))
    return out


def long1(v):
    b = v.to_bytes(9, "little", signed=True)
    while len(b) > 1 and ((b[-1] == 0 and b[-2] < 0x80) or (b[-1] == 0xFF and b[-2] >= 0x80)):
        b = b[:-1]
    return b"\x8a" + bytes([len(b)]) + b


def generate(rng, outdir):
    out = []
    out.append(variant("joblib_class_to_numpy_wrapper",
                       write(outdir, "class_numpy_wrapper.joblib", class_change_numpy_wrapper()),
                       "joblib", "refuse", "issue 8 #3"))
    npy = write(outdir, "external_canary.npy", canary_npy())
    out.append(variant("joblib_class_to_ndarray_wrapper",
                       write(outdir, "class_ndarray_wrapper.joblib",
                             class_change_ndarray_wrapper(os.path.abspath(npy))),
                       "joblib", "refuse", "issue 8 #4"))

    # __setstate__ placed in the instance __dict__, then a second BUILD:
    # Python calls it (builtins.set here) instead of updating attributes.
    data = (proto(2) + namespace() + EMPTY_DICT + sbu("__setstate__") + glob("builtins", "set") +
            SETITEM + BUILD + EMPTY_DICT + sbu("x") + binint(1) + SETITEM + BUILD + STOP)
    out.append(variant("setstate_in_dict", write(outdir, "setstate.pkl", data), "pickle", "refuse"))

    # Numeric dtype with object flags (NPY_ITEM_HASOBJECT | NPY_LIST_PICKLE).
    arr = np.arange(4, dtype=np.float32)
    ops = array_ops(arr)
    tail = b"J\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t"  # elsize, alignment, flags 0
    assert ops.count(tail) == 1
    flagged = ops.replace(tail, tail[:-3] + b"K\x3ft")
    out.append(variant("dtype_object_flags", write(outdir, "dtype_flags.pkl",
                                                   proto(2) + flagged + STOP),
                       "pickle", "refuse"))

    # A random special name in a random half of a BUILD state on a random
    # class that allows BUILD.
    name = rng.choice(["__class__", "__dict__", "__setstate__", "__reduce_ex__", "__reduce__",
                       "__getstate__", "__getattr__", "__init__", "__eq__", "__hash__"])
    target = rng.choice([namespace(), glob("types", "SimpleNamespace") + EMPTY_TUPLE + NEWOBJ,
                         glob("collections", "OrderedDict") + EMPTY_TUPLE + REDUCE])
    value = rng.choice([glob("builtins", "set"), glob("joblib.numpy_pickle", "NumpyArrayWrapper"),
                        EMPTY_DICT, binint(1)])
    half = EMPTY_DICT + sbu(name) + value + SETITEM
    state = half if rng.random() < 0.5 else NONE + half + TUPLE2
    out.append(variant("special_state_" + name.strip("_"),
                       write(outdir, "special.pkl", proto(2) + target + state + BUILD + STOP),
                       "pickle", "refuse"))

    # A second PROTO partway through makes dotted names resolve (case 25).
    data = proto(2) + EMPTY_LIST + proto(4) + sglob("safemodel_canary", "fire") + EMPTY_TUPLE + \
        REDUCE + APPEND + STOP
    out.append(variant("second_proto", write(outdir, "second_proto.pkl", data), "pickle", "refuse"))

    # A falsy non-dict BUILD state: ignored by joblib, an error in C (case 26).
    data = proto(2) + namespace() + EMPTY_LIST + BUILD + STOP
    out.append(variant("falsy_build_state", write(outdir, "falsy.pkl", data), "any", "refuse"))

    # A state dict changed after BUILD: the instance keeps what BUILD copied.
    a = rng.choice([np.arange(6, dtype=np.float32), np.ones((2, 3), np.int64)])
    data = (proto(2) + namespace() + EMPTY_DICT + binput(7) + BUILD + binget(7) + sbu("late") +
            array_ops(a) + SETITEM + b"0" + STOP)
    out.append(variant("state_changed_after_build", write(outdir, "late_state.pkl", data), "pickle",
                       "convert"))

    # joblib wrappers: the array bytes are opcodes to pickle.load (a canary).
    hidden = canary_call() + b"0"
    data = proto(2) + wrapper((len(hidden),), hidden) + STOP
    out.append(variant("joblib_array_bytes_are_opcodes", write(outdir, "bytes_opcodes.joblib", data),
                       "joblib", "refuse"))
    # With and without the alignment key (case 22): read identically.
    vals = np.array([0.0] + [rng.random() for _ in range(7)], np.float32)
    for align in (False, True):
        data = (proto(2) + EMPTY_DICT + sbu("w") + wrapper((8,), vals.tobytes(), "f4", "<", align) +
                SETITEM + STOP)
        out.append(variant("joblib_alignment_%s" % ("present" if align else "absent"),
                           write(outdir, "align_%d.joblib" % align, data), "joblib", "convert"))
    # One wrapper memoised and built twice reads two blocks.
    w = (glob("joblib.numpy_pickle", "NumpyArrayWrapper") + EMPTY_TUPLE + NEWOBJ + binput(3))
    state = wrapper_state((4,), "f4", "<")
    data = (proto(2) + EMPTY_LIST + MARK + w + state + BUILD + (vals[:4]).tobytes() + binget(3) +
            state + BUILD + (vals[4:]).tobytes() + b"e" + STOP)
    out.append(variant("joblib_wrapper_built_twice", write(outdir, "twice.joblib", data), "joblib",
                       "convert"))
    # A real joblib.dump, plain and compressed.
    obj = {"w": np.array([rng.random() for _ in range(12)], np.float32).reshape(3, 4),
           "b": np.arange(5)}
    path = os.path.join(outdir, "real.joblib")
    joblib.dump(obj, path)
    out.append(variant("joblib_dump", path, "joblib", "convert"))
    path = os.path.join(outdir, "real_z.joblib")
    joblib.dump(obj, path, compress=3)
    out.append(variant("joblib_dump_zlib", path, "joblib", "convert"))

    # Issue 8 #6: a set of tuples that all collided under the old, unkeyed
    # hash (55,000 took 56 s of worker CPU).
    pairs = colliding_pairs(rng.choice([20000, 30000]), rng)
    body = b"".join(long1(x) + long1(y) + TUPLE2 for x, y in pairs)
    data = proto(4) + b"\x8f" + MARK + body + b"\x90" + STOP
    out.append(variant("hash_flood_set", write(outdir, "flood.pkl", data), "pickle", "convert",
                       "issue 8 #6"))
    return out
