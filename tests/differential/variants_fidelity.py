"""Tensor-fidelity variants (issue 16) for the differential harness.

generate(rng, outdir) writes about 40 small files, chosen by `rng` (a
random.Random), in the classes where a converter's tensors can differ from
the real loader's: HDF5 allocation and fill-time modes (storage never
written), h5py's LZF filter, 2-byte floats with bfloat16's layout (h5py:
float32), name lists stored as one string, npz keys two members answer,
npz members whose content is not .npy, .npy header limits and grammar per
version, shapes beyond signed 64 bits, big-endian and Fortran-order arrays
in every container, torch views with offsets and strides, and torch rebuild
arguments torch itself refuses. Each variant says whether safe-convert must
refuse it or convert it; the harness compares converted tensors with the
loader's. Needs numpy and h5py; torch and joblib variants are left out
when those are not installed.
"""
import collections
import io
import os
import pickle
import struct
import zipfile

import h5py
import numpy as np

ALLOC = {"early": h5py.h5d.ALLOC_TIME_EARLY, "late": h5py.h5d.ALLOC_TIME_LATE,
         "incr": h5py.h5d.ALLOC_TIME_INCR}
FILL = {"never": h5py.h5d.FILL_TIME_NEVER, "alloc": h5py.h5d.FILL_TIME_ALLOC,
        "ifset": h5py.h5d.FILL_TIME_IFSET}
DTYPES = ["<f4", ">f4", "<f8", ">f8", "<i2", ">i4", "<u8", "|u1", "<f2", ">c8"]
# h5py stores complex numbers as a compound type, which is not a tensor.
H5_DTYPES = [d for d in DTYPES if "c" not in d]


def _np_rng(rng):
    return np.random.default_rng(rng.getrandbits(64))


def _values(nrng, dtype, shape):
    dt = np.dtype(dtype)
    if dt.kind == "f":
        return (nrng.standard_normal(shape) * 10).astype(dt)
    if dt.kind == "c":
        return (nrng.standard_normal(shape) + 1j * nrng.standard_normal(shape)).astype(dt)
    info = np.iinfo(dt)
    return nrng.integers(max(info.min, -1000), min(info.max, 1000), size=shape,
                         endpoint=True).astype(dt)


# ---- HDF5 ------------------------------------------------------------------------

def _name_list(obj, name, values):
    data = [v.encode() for v in values]
    obj.attrs[name] = np.array(data, dtype="S%d" % max(1, max(len(d) for d in data)))


def _keras_weights(path, datasets):
    """A Keras weights-only file: one layer 'l' whose weights are `datasets`
    (name -> callable(group, name) creating the dataset)."""
    with h5py.File(path, "w") as f:
        _name_list(f, "layer_names", ["l"])
        g = f.create_group("l")
        names = []
        for name, make in datasets:
            if make(g, name) is not False:
                names.append(name)
        _name_list(g, "weight_names", names)


def _fill_dataset(nrng, layout, alloc, fill, fill_value, dtype, shape, write):
    def make(group, name):
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_obj_track_times(False)
        if layout in ("chunked", "deflate"):
            dcpl.set_chunk(tuple(max(1, s // 2) for s in shape))
            if layout == "deflate":
                dcpl.set_deflate(1)
        elif layout == "compact":
            dcpl.set_layout(h5py.h5d.COMPACT)
        dcpl.set_alloc_time(ALLOC[alloc])
        dcpl.set_fill_time(FILL[fill])
        if fill_value is not None:
            dcpl.set_fill_value(np.array(fill_value, dtype=dtype))
        try:
            dsid = h5py.h5d.create(group.id, name.encode(), h5py.h5t.py_create(np.dtype(dtype)),
                                   h5py.h5s.create_simple(shape), dcpl=dcpl)
        except (ValueError, RuntimeError):
            return False  # a combination libhdf5 does not allow
        if write:
            ds = h5py.Dataset(dsid)
            region = tuple(slice(0, max(1, s // 2)) for s in shape)
            ds[region] = _values(nrng, dtype, tuple(max(1, s // 2) for s in shape))
        return True
    return make


def _h5_fill_modes(rng, nrng, outdir, count):
    out = []
    for i in range(count):
        datasets = []
        for k in range(6):
            layout = rng.choice(["contiguous", "chunked", "deflate", "compact"])
            alloc = rng.choice(list(ALLOC))
            fill = rng.choice(list(FILL))
            fv = rng.choice([None, None, 7, -3])
            dtype = rng.choice(["<f4", ">f4", "<i2", "<f8", ">u4"])
            shape = rng.choice([(64,), (16, 8), (3, 5, 4)])
            write = layout != "compact" and rng.random() < 0.5
            name = "%d_%s_%s_%s_%s%s" % (k, layout, alloc, fill, "fv" if fv is not None else "nofv",
                                         "_w" if write else "")
            datasets.append((name, _fill_dataset(nrng, layout, alloc, fill, fv, dtype, shape, write)))
        path = os.path.join(outdir, "h5_fill_%d.h5" % i)
        _keras_weights(path, datasets)
        out.append({"name": "h5_fill_%d" % i, "path": path, "kind": "h5", "expect": "convert",
                    "note": "HDF5 storage never (or partly) written, every fill mode"})
    return out


def _h5_lzf(rng, nrng, outdir):
    out = []
    for i in range(2):
        datasets = []
        for k in range(3):
            dtype = rng.choice(H5_DTYPES)
            n = rng.choice([1, 100, 1000, 4097])
            data = _values(nrng, dtype, (n,))
            if rng.random() < 0.5:
                data = np.repeat(data[: max(1, n // 10)], 10)[:n].astype(dtype)  # compressible
            chunk = max(1, n // rng.choice([1, 3, 7]))
            shuffle = rng.random() < 0.5

            def make(group, name, data=data, chunk=chunk, shuffle=shuffle):
                group.create_dataset(name, data=data, chunks=(chunk,), compression="lzf",
                                     shuffle=shuffle)
            datasets.append(("lzf_%d" % k, make))
        path = os.path.join(outdir, "h5_lzf_%d.h5" % i)
        _keras_weights(path, datasets)
        out.append({"name": "h5_lzf_%d" % i, "path": path, "kind": "h5", "expect": "convert",
                    "note": "h5py's LZF filter, read without a plugin"})
    return out


def _bf16_type(big_endian):
    t = h5py.h5t.IEEE_F32LE.copy()
    t.set_fields(15, 7, 8, 0, 7)
    t.set_offset(0)
    t.set_precision(16)
    t.set_size(2)
    t.set_ebias(127)
    if big_endian:
        t.set_order(h5py.h5t.ORDER_BE)
    return t


def _h5_bf16_layout(rng, nrng, outdir):
    bits = nrng.integers(0, 1 << 16, size=(6, 7)).astype("<u2")
    bits.flat[:4] = [0x7FC1, 0xFF81, 0x0001, 0x7F80]  # NaN payloads, a denormal, inf
    datasets = []
    for order in ("le", "be"):
        chunked = rng.random() < 0.5

        def make(group, name, order=order, chunked=chunked):
            t = _bf16_type(order == "be")
            dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
            if chunked:
                dcpl.set_chunk((3, 7))
            dsid = h5py.h5d.create(group.id, name.encode(), t, h5py.h5s.create_simple(bits.shape),
                                   dcpl=dcpl)
            dsid.write(h5py.h5s.ALL, h5py.h5s.ALL,
                       bits.astype(">u2" if order == "be" else "<u2"), mtype=t)
        datasets.append(("bf_%s" % order, make))
    path = os.path.join(outdir, "h5_bf16_layout.h5")
    _keras_weights(path, datasets)
    return [{"name": "h5_bf16_layout", "path": path, "kind": "h5", "expect": "convert",
             "note": "2-byte floats with bfloat16's layout: h5py returns float32"}]


def _h5_names(rng, nrng, outdir):
    out = []
    # layer_names as one string: Keras iterates its characters.
    path = os.path.join(outdir, "h5_scalar_layer_names.h5")
    with h5py.File(path, "w") as f:
        if rng.random() < 0.5:
            f.attrs.create("layer_names", "ab", dtype=h5py.string_dtype())
        else:
            f.attrs["layer_names"] = np.bytes_(b"ab")
        for layer in ("a", "b", "ab"):
            g = f.create_group(layer)
            _name_list(g, "weight_names", ["w"])
            g.create_dataset("w", data=_values(nrng, "<f4", (3,)))
    out.append({"name": "h5_scalar_layer_names", "path": path, "kind": "h5", "expect": "refuse"})
    # weight_names 'k\0junk' (NULLPAD): Keras's name, h5py's dataset 'k'.
    path = os.path.join(outdir, "h5_weight_name_nul.h5")
    with h5py.File(path, "w") as f:
        _name_list(f, "layer_names", ["d"])
        g = f.create_group("d")
        g.attrs["weight_names"] = np.array([b"k\x00junk"], dtype="S8")
        g.create_dataset("k", data=_values(nrng, "<f4", (3,)))
    out.append({"name": "h5_weight_name_nul", "path": path, "kind": "h5", "expect": "refuse"})
    return out


def _h5_byte_orders(rng, nrng, outdir):
    datasets = []
    for k, dtype in enumerate(rng.sample(H5_DTYPES, 4)):
        # (Scalar datasets convert too, but h5py returns them as numpy
        # scalars, which the harness does not count as tensors.)
        data = _values(nrng, dtype, rng.choice([(5,), (2, 3), (2, 1, 4), (1,)]))
        datasets.append(("bo_%d" % k, lambda g, n, data=data: g.create_dataset(n, data=data)))
    path = os.path.join(outdir, "h5_byte_orders.h5")
    _keras_weights(path, datasets)
    return [{"name": "h5_byte_orders", "path": path, "kind": "h5", "expect": "convert"}]


# ---- NumPy -------------------------------------------------------------------------

def _npy(dict_text, data, major=1, pad_to=None):
    """A .npy image with `dict_text` as the header (padded to `pad_to`
    characters, or to numpy's 64-byte alignment), then `data`."""
    prefix = 10 if major == 1 else 12
    header = dict_text
    if pad_to is None:
        while (prefix + len(header.encode()) + 1) % 64:
            header += " "
    else:
        header += " " * (pad_to - len(header) - 1)
    header = (header + "\n").encode("latin1" if major < 3 else "utf8")
    size = struct.pack("<H" if major == 1 else "<I", len(header))
    return b"\x93NUMPY" + bytes([major, 0]) + size + header + data


def _write(outdir, name, data):
    path = os.path.join(outdir, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


def _numpy_variants(rng, nrng, outdir):
    out = []
    arr = _values(nrng, "<f4", (2, 3))
    body = "'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), "
    # numpy's 10,000-character header limit, counted per version.
    major = rng.choice([1, 2, 3])
    for chars, expect in ((10000, "convert"), (10001, "refuse")):
        name = "npy_header_%d_v%d" % (chars, major)
        out.append({"name": name, "kind": "npy", "expect": expect,
                    "path": _write(outdir, name + ".npy",
                                   _npy("{" + body + "}", arr.tobytes(), major, pad_to=chars))})
    # Python 2 'L' suffixes: filtered in 1.0/2.0, a syntax error in 3.0.
    for major in (rng.choice([1, 2]), 3):
        name = "npy_long_suffix_v%d" % major
        text = "{'descr': '<f4', 'fortran_order': False, 'shape': (2L, 3L), }"
        out.append({"name": name, "kind": "npy", "expect": "convert" if major < 3 else "refuse",
                    "path": _write(outdir, name + ".npy", _npy(text, arr.tobytes(), major))})
    # Shapes beyond signed 64 bits, with a zero dimension (no data at all).
    for i, shape in enumerate(["(0, 18446744073709551615)", "(0, 9223372036854775808)",
                               "(0, 2305843009213693952)", "(3, 0, 4611686018427387904)"]):
        text = "{'descr': '<f8', 'fortran_order': False, 'shape': %s, }" % shape
        out.append({"name": "npy_shape_overflow_%d" % i, "kind": "npy", "expect": "refuse",
                    "path": _write(outdir, "npy_shape_overflow_%d.npy" % i, _npy(text, b""))})
    # Big-endian and Fortran order, any dtype.
    for i in range(3):
        dtype = rng.choice(DTYPES)
        a = _values(nrng, dtype, rng.choice([(4, 3), (2, 3, 5), (7,), ()]))
        if rng.random() < 0.6:
            a = np.asfortranarray(a)
        buf = io.BytesIO()
        np.save(buf, a)
        out.append({"name": "npy_order_%d" % i, "kind": "npy", "expect": "convert",
                    "path": _write(outdir, "npy_order_%d.npy" % i, buf.getvalue())})
    return out


def _npy_bytes(a):
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def _npz(outdir, name, members):
    path = os.path.join(outdir, name + ".npz")
    with zipfile.ZipFile(path, "w") as z:
        for member, data in members:
            z.writestr(member, data)
    return path


def _npz_variants(rng, nrng, outdir):
    a = _npy_bytes(_values(nrng, "<i4", (3,)))
    b = _npy_bytes(_values(nrng, ">f8", (2, 2)))
    pair = [("a.npy", a), ("a.npy.npy", b)]
    rng.shuffle(pair)
    return [
        # 'a.npy' is answered by member 'a.npy' (exact name first) and would
        # be the key of 'a.npy.npy': two members, one key.
        {"name": "npz_shadowed_key", "kind": "npz", "expect": "refuse",
         "path": _npz(outdir, "npz_shadowed_key", pair)},
        {"name": "npz_distinct_keys", "kind": "npz", "expect": "convert",
         "path": _npz(outdir, "npz_distinct_keys", [("a.npy", a), ("a.np.npy", b)])},
        # A .npy-named member without the magic: numpy returns raw bytes.
        {"name": "npz_member_not_npy", "kind": "npz", "expect": "refuse",
         "path": _npz(outdir, "npz_member_not_npy", [("a.npy", a), ("w.npy", b"not an array")])},
        {"name": "npz_fortran_big_endian", "kind": "npz", "expect": "convert",
         "path": _npz(outdir, "npz_fortran_big_endian",
                      [("f.npy", _npy_bytes(np.asfortranarray(_values(nrng, ">i8", (3, 4))))),
                       ("c.npy", _npy_bytes(_values(nrng, ">c16", (2, 3))))])},
    ]


# ---- Pickles, joblib, torch ----------------------------------------------------------

def _pickle_variants(rng, nrng, outdir):
    out = []
    arrays = {"f": np.asfortranarray(_values(nrng, rng.choice(DTYPES), (3, 4))),
              "b": _values(nrng, ">f8", (5,)),
              "s": _values(nrng, "<i2", ())}
    path = _write(outdir, "pickle_orders.pkl", pickle.dumps(arrays, protocol=rng.choice([2, 4, 5])))
    out.append({"name": "pickle_orders", "path": path, "kind": "pickle", "expect": "convert"})
    try:
        import joblib
    except ImportError:
        return out
    path = os.path.join(outdir, "joblib_orders.joblib")
    joblib.dump(arrays, path)
    out.append({"name": "joblib_orders", "path": path, "kind": "joblib", "expect": "convert"})
    return out


class _Rebuild:
    """Pickles as a call to a torch rebuild function with chosen arguments
    (what torch.save never writes, but a crafted file can)."""

    def __init__(self, function, args):
        self.function, self.args = function, args

    def __reduce_ex__(self, protocol):
        return self.function, self.args


def _released_get(outdir):
    """A torch zip whose second tensor fetches the first one's size tuple from
    the memo (LONG_BINGET 7): torch.save never writes it (a new tuple per
    tensor), torch.load reads it, and safe-convert refuses it, a deliberate
    limit (loader/README.md: a tensor's spent arguments are released as the
    pickle is read, and a later GET of one is refused)."""
    def s(text):
        return b"X" + struct.pack("<I", len(text)) + text.encode()

    def storage(key):
        return (b"((" + s("storage") + b"ctorch\nFloatStorage\n" + s(key) + s("cpu") +
                b"K\x02tQ")
    rebuild = b"ctorch._utils\n_rebuild_tensor_v2\n"
    hooks = b"ccollections\nOrderedDict\n)R"
    first = (s("a") + rebuild + storage("0") + b"K\x00(K\x02t" + b"r" + struct.pack("<I", 7) +
             b"(K\x01t\x89" + hooks + b"tR")
    later = (s("b") + rebuild + storage("1") + b"K\x00" + b"j" + struct.pack("<I", 7) +
             b"(K\x01t\x89" + hooks + b"tR")
    pkl = b"\x80\x02}(" + first + later + b"u."
    path = os.path.join(outdir, "torch_released_get.pt")
    data = struct.pack("<2f", 1.0, 2.0)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for name, body in (("a/data.pkl", pkl), ("a/data/0", data), ("a/data/1", data),
                           ("a/version", b"3")):
            z.writestr(name, body)
    return {"name": "torch_released_get", "path": path, "kind": "torch", "expect": "refuse",
            "loaders_read": ["torch", "torch_weights_only"],
            "refuse_message": "memo key 7 refers back to the arguments of a tensor",
            "note": "a GET of a released tensor argument: torch reads it, we refuse (deliberate)"}


def _torch_variants(rng, nrng, outdir):
    try:
        import torch
    except ImportError:
        return []
    from torch._utils import _rebuild_parameter, _rebuild_tensor_v2
    out = []
    base = torch.from_numpy(_values(nrng, rng.choice(["<f4", "<f8", "<i8", "<i2"]), (6, 5)).copy())
    views = {"base": base, "rows": base[2:], "cols": base[:, 1::2], "t": base.t(),
             "tail": base.view(-1)[7:19], "one": base[4, 3]}
    # Dimensions of size 1 keep whatever stride torch gives them (here
    # 2**63 - 1): never stepped, they must not change the tensor.
    views["size1_strides"] = torch.as_strided(base.view(-1), (3, 1, 1), (2, 1, 2 ** 63 - 1))
    path = os.path.join(outdir, "torch_views.pt")
    torch.save(views, path)
    out.append({"name": "torch_views", "path": path, "kind": "torch", "expect": "convert",
                "note": "views with offsets and strides into one storage"})
    # Transposed views of at least 64 KiB: the parent reads and transposes
    # them itself from the worker's TENSOR_XFORM record.
    big = torch.from_numpy(_values(nrng, rng.choice(["<f4", "<f8", "<i2"]), (300, 120)).copy())
    path = os.path.join(outdir, "torch_big_views.pt")
    torch.save({"t": big.t(), "t_unsqueezed": big.t().unsqueeze(1), "rows": big[7:].t()}, path)
    out.append({"name": "torch_big_views", "path": path, "kind": "torch", "expect": "convert",
                "note": "transposed views the parent transforms (TENSOR_XFORM)"})
    f = torch.arange(4, dtype=torch.float32)
    i = torch.arange(4, dtype=torch.int16)
    hooks = collections.OrderedDict()
    crafted = {
        "rg_int": (_rebuild_tensor_v2, (f.storage(), 0, (4,), (1,), 1, hooks), "refuse"),
        "rg_true_int_tensor": (_rebuild_tensor_v2, (i.storage(), 0, (4,), (1,), True, hooks),
                               "refuse"),
        "offset_bool": (_rebuild_tensor_v2, (f.storage(), False, (4,), (1,), False, hooks),
                        "refuse"),
        "rg_true": (_rebuild_tensor_v2, (f.storage(), 1, (3,), (1,), True, hooks), "convert"),
    }
    for name in rng.sample(sorted(crafted), 3):
        function, args, expect = crafted[name]
        path = os.path.join(outdir, "torch_%s.pt" % name)
        torch.save({"w": _Rebuild(function, args)}, path)
        out.append({"name": "torch_" + name, "path": path, "kind": "torch", "expect": expect})
    out.append(_released_get(outdir))
    param = _Rebuild(_rebuild_parameter, (f, rng.choice([1, None]), hooks))
    path = os.path.join(outdir, "torch_param_rg_not_bool.pt")
    torch.save({"p": param}, path)
    out.append({"name": "torch_param_rg_not_bool", "path": path, "kind": "torch",
                "expect": "refuse"})
    return out


def generate(rng, outdir):
    nrng = _np_rng(rng)
    variants = []
    variants += _h5_fill_modes(rng, nrng, outdir, 6)
    variants += _h5_lzf(rng, nrng, outdir)
    variants += _h5_bf16_layout(rng, nrng, outdir)
    variants += _h5_names(rng, nrng, outdir)
    variants += _h5_byte_orders(rng, nrng, outdir)
    variants += _numpy_variants(rng, nrng, outdir)
    variants += _npz_variants(rng, nrng, outdir)
    variants += _pickle_variants(rng, nrng, outdir)
    variants += _torch_variants(rng, nrng, outdir)
    return variants
