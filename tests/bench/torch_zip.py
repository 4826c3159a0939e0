"""Writes a torch.save-layout checkpoint of any size in constant memory.

torch.save needs every tensor in memory; a 16 GiB checkpoint for the
linearity benchmark must not. write() streams a zip of the layout torch 1.13
writes for a dict of float32 tensors: ARCHIVE/data.pkl (the pickle, with a
persistent id per storage), ARCHIVE/data/KEY for each storage in sorted key
order, ARCHIVE/version ("3\\n"); stored members whose data start on a 64-byte
boundary (the padding in an "FB" extra field, as torch's writer pads), zip64
records where offsets pass 4 GiB (Python's zipfile writes those). data.pkl
is produced by pickling what torch's _save pickles, with placeholders for the
tensors; template_check() proves it byte-identical to torch.save's own
data.pkl for the same shapes. Imports torch (for the pickled class names).
"""
import collections
import hashlib
import io
import pickle
import struct
import zipfile

_STORAGE = "storage"  # torch memoizes these strings in its pickle: one object each
_LOCATION = "cpu"
_ALIGN = 64  # torch's PyTorchStreamWriter kFieldAlignment
_VERSION = b"3\n"


class _Tensor:
    """A float32 tensor of `shape` whose storage is data/`key`."""

    def __init__(self, key, shape):
        self.key, self.shape = key, tuple(shape)


def _numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def _strides(shape):
    out, s = [], 1
    for d in reversed(shape):
        out.append(s)
        s *= d
    return tuple(reversed(out))


def data_pkl(shapes):
    """The data.pkl torch.save writes for {name: float32 tensor of shape}, names in order."""
    import torch

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, _Storage):
                return (_STORAGE, torch.FloatStorage, obj.key, _LOCATION, obj.numel)
            return None

        def reducer_override(self, obj):
            if isinstance(obj, _Tensor):
                # torch.Tensor._reduce_ex_internal for a plain CPU tensor.
                return (torch._utils._rebuild_tensor_v2,
                        (_Storage(obj.key, _numel(obj.shape)), 0, obj.shape, _strides(obj.shape), False,
                         collections.OrderedDict()))
            return NotImplemented

    model = {name: _Tensor(str(i), shape) for i, (name, shape) in enumerate(shapes.items())}
    buf = io.BytesIO()
    Pickler(buf, protocol=2).dump(model)
    return buf.getvalue()


class _Storage:
    def __init__(self, key, numel):
        self.key, self.numel = key, numel


def _aligned_info(zf, name):
    """A stored ZipInfo whose data will start on a 64-byte boundary at zf's position."""
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_STORED
    start = zf.fp.tell() + 30 + len(name.encode()) + 4  # local header, name, the extra's own header
    info.extra = b"FB" + struct.pack("<H", -start % _ALIGN) + b"Z" * (-start % _ALIGN)
    return info


def write(path, shapes, fill, archive="archive"):
    """Writes the checkpoint; returns {name: sha256 hex of its bytes}.

    shapes: {name: shape} (float32). fill(i, name, nbytes) returns an iterable
    of bytes-like chunks, nbytes in all, the i-th tensor's bytes."""
    digests = {}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        zf.writestr(_aligned_info(zf, archive + "/data.pkl"), data_pkl(shapes))
        names = list(shapes)
        for key in sorted(str(i) for i in range(len(names))):  # torch's order: sorted strings
            name = names[int(key)]
            nbytes = 4 * _numel(shapes[name])
            info = _aligned_info(zf, "%s/data/%s" % (archive, key))
            info.file_size = nbytes  # no zip64 local header below 4 GiB, as torch
            h = hashlib.sha256()
            with zf.open(info, "w") as out:
                written = 0
                for chunk in fill(int(key), name, nbytes):
                    out.write(chunk)
                    h.update(chunk)
                    written += len(chunk)
            if written != nbytes:
                raise ValueError("%s: %d bytes written, %d expected" % (name, written, nbytes))
            digests[name] = h.hexdigest()
        zf.writestr(_aligned_info(zf, archive + "/version"), _VERSION)
    return digests


def template_check(workdir):
    """Checks data.pkl against a real torch.save of small tensors; raises if they differ."""
    import os
    import torch
    shapes = {"a": (4,), "b.weight": (3, 2), "c": (2, 1, 5)}
    path = os.path.join(workdir, "template.pt")
    torch.save({n: torch.zeros(s, dtype=torch.float32) for n, s in shapes.items()}, path)
    with zipfile.ZipFile(path) as z:
        real = z.read(os.path.splitext(os.path.basename(path))[0] + "/data.pkl")
    os.unlink(path)
    if real != data_pkl(shapes):
        raise RuntimeError("torch_zip.data_pkl differs from torch.save's data.pkl for %s" % shapes)
