"""Shared helpers for the differential harness's variant generators
(variants_*.py): pickle assembly, the canary payload, and builders for tar,
zip and HDF5 containers. Facts used here are in ../shared/docs/LOADERS.md.

A generator module exports generate(rng, outdir) -> list of dict, each with
"name", "path" (a file it wrote under outdir), "kind" (npy, npz, h5, torch,
joblib, pickle, or any) and optionally "expect" ("refuse", "convert" or
None) and "note" (one line for the log)."""
import io
import os
import struct
import tarfile
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.path.dirname(os.path.dirname(HERE))
FIXTURES = os.path.join(SOURCE_DIR, "tests", "fixtures")
CANARY_MODULE = "safemodel_canary"

# ---- Pickle opcodes -------------------------------------------------------

MARK, STOP, TUPLE, EMPTY_TUPLE, EMPTY_DICT, EMPTY_LIST = b"(", b".", b"t", b")", b"}", b"]"
REDUCE, BUILD, SETITEM, SETITEMS, APPEND, NONE = b"R", b"b", b"s", b"u", b"a", b"N"
NEWOBJ, TUPLE1, TUPLE2, NEWTRUE, NEWFALSE = b"\x81", b"\x85", b"\x86", b"\x88", b"\x89"
STACK_GLOBAL, MEMOIZE = b"\x93", b"\x94"


def proto(n):
    return b"\x80" + bytes([n])


def sbu(s):
    """SHORT_BINUNICODE."""
    b = s.encode()
    assert len(b) < 256
    return b"\x8c" + bytes([len(b)]) + b


def binunicode(s):
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def glob(module, name):
    """GLOBAL (protocol 0+)."""
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def sglob(module, name):
    """STACK_GLOBAL (protocol 4+)."""
    return sbu(module) + sbu(name) + STACK_GLOBAL


def binint(v):
    if 0 <= v < 256:
        return b"K" + bytes([v])
    return b"J" + struct.pack("<i", v)


def binbytes(b):
    if len(b) < 256:
        return b"C" + bytes([len(b)]) + b
    return b"B" + struct.pack("<I", len(b)) + b


def binput(i):
    return b"q" + bytes([i])


def binget(i):
    return b"h" + bytes([i])


def canary_call():
    """Ops that call safemodel_canary.fire(): a real unpickler imports the
    canary module (the marker fires on import)."""
    return glob(CANARY_MODULE, "fire") + EMPTY_TUPLE + REDUCE


def canary_pickle(protocol=2):
    return proto(protocol) + canary_call() + STOP


def numpy_dtype_ops(descr, byteorder="<", flags=0):
    """numpy.dtype(descr, False, True) with its BUILD state, as numpy pickles it."""
    return (glob("numpy", "dtype") + sbu(descr) + NEWFALSE + NEWTRUE + b"\x87" + REDUCE +
            MARK + binint(3) + sbu(byteorder) + NONE + NONE + NONE + b"J\xff\xff\xff\xff" +
            b"J\xff\xff\xff\xff" + binint(flags) + TUPLE + BUILD)


# ---- Files ------------------------------------------------------------------


def fixture(*parts):
    return os.path.join(FIXTURES, *parts)


def read_fixture(*parts):
    with open(fixture(*parts), "rb") as f:
        return f.read()


def write(outdir, name, data):
    path = os.path.join(outdir, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


def variant(name, path, kind, expect=None, note=""):
    return {"name": name, "path": path, "kind": kind, "expect": expect, "note": note}


# ---- Tar ----------------------------------------------------------------------


def tar_checksum(block):
    """The checksum tarfile accepts (unsigned sum, field as spaces)."""
    b = bytearray(block)
    b[148:156] = b" " * 8
    return sum(b)


def set_tar_checksum(block):
    b = bytearray(block)
    b[148:156] = b"%06o\0 " % tar_checksum(b)
    return bytes(b)


def tar_bytes(members):
    """members: list of (name, data) or (name, data, type, linkname)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
        for m in members:
            name, data = m[0], m[1]
            info = tarfile.TarInfo(name)
            info.mtime = 0
            if len(m) > 2 and m[2] in (tarfile.SYMTYPE, tarfile.LNKTYPE):
                info.type = m[2]
                info.linkname = m[3]
                t.addfile(info)
            else:
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def torch_legacy_tar(storages_pickle):
    """A torch legacy tar archive (torch.serialization.legacy_load) whose
    `storages` member starts with `storages_pickle` (read first); `tensors`
    and `pickle` are empty and harmless."""
    return tar_bytes([
        ("storages", storages_pickle),
        ("tensors", proto(2) + binint(0) + STOP),
        ("pickle", proto(2) + NONE + STOP),
    ])


# ---- Zip ------------------------------------------------------------------------


def zip_bytes(entries, compression=zipfile.ZIP_STORED):
    """entries: list of (name, data). Names are written as given (zipfile
    allows duplicates, with a warning)."""
    buf = io.BytesIO()
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with zipfile.ZipFile(buf, "w", compression) as z:
            for name, data in entries:
                info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = compression
                z.writestr(info, data)
    return buf.getvalue()


def rename_zip_member(data, old, new):
    """Replaces a member's name (same length) in the local and central headers."""
    assert len(old) == len(new)
    return data.replace(old, new)


def torch_zip(state_dict, folder="archive"):
    import torch
    buf = io.BytesIO()
    torch.save(state_dict, buf)
    data = buf.getvalue()
    if folder != "archive":
        # torch names the folder after the file; keep a fixed one.
        pass
    return data


# ---- HDF5 ---------------------------------------------------------------------------


def with_user_block(prefix, h5, block=512):
    """`prefix` padded with zeros to `block` bytes (512 * 2^k), then an HDF5
    file: libhdf5 finds the superblock at `block` and reads the file there."""
    assert len(prefix) <= block
    return prefix + b"\0" * (block - len(prefix)) + h5


def swallowing_pickle(total_len, protocol=2, tail=b""):
    """The start of a pickle that puts the next `total_len` bytes in a bytes
    object; append those bytes, then `tail` (more opcodes), then STOP."""
    return proto(protocol) + b"B" + struct.pack("<I", total_len)
