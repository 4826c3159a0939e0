"""Shared helpers of the Python module's tests (run by ctest with /usr/bin/python3 and
PYTHONPATH=<build>/python; see CMakeLists.txt here).

Exit code 77 (ctest SKIP_RETURN_CODE) when a module a test needs (numpy, torch) is missing.
"""
import importlib
import os
import pickle
import struct
import sys
import tempfile
import unittest
import zipfile

SKIP = 77
SOURCE_DIR = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
MODELS = os.path.join(SOURCE_DIR, "examples", "models")


def require(*names):
    """Imports `names` or exits with SKIP (the test cannot run here)."""
    mods = []
    for name in names:
        try:
            mods.append(importlib.import_module(name))
        except ImportError as e:
            print("SKIP: %s is not importable (%s)" % (name, e))
            sys.exit(SKIP)
    return mods


class TempDirTest(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory(prefix="sm-py-")
        self.tmp = self._tmp.name

    def tearDown(self):
        self._tmp.cleanup()

    def path(self, name):
        return os.path.join(self.tmp, name)


def canary_pickle(canary):
    """A pickle whose loading runs os.system("touch CANARY") (what a malicious checkpoint
    does), made without running it."""
    class Evil:
        def __reduce__(self):
            return (os.system, ("touch '%s'" % canary,))
    return pickle.dumps({"weight": Evil()}, protocol=2)


# torch's zip checkpoint written by hand (pickle opcodes), for dtypes that the installed
# torch cannot make (float8, uint16 in torch < 2.1): _rebuild_tensor_v3 over an
# UntypedStorage, as torch >= 2.1 writes it.
def _bu(s):
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def _int(i):
    return b"K" + bytes([i]) if 0 <= i < 256 else b"J" + struct.pack("<i", i)


def torch_v3_checkpoint(path, tensors):
    """tensors: {name: (torch dtype name, raw bytes, shape)}, each in its own storage."""
    body, files = b"}(", {}
    for i, (name, (dtype, raw, shape)) in enumerate(tensors.items()):
        strides, s = [], 1
        for d in reversed(shape):
            strides.insert(0, s)
            s *= d
        body += _bu(name)
        body += b"ctorch._utils\n_rebuild_tensor_v3\n("
        body += (b"(" + _bu("storage") + b"ctorch\nUntypedStorage\n" + _bu(str(i)) + _bu("cpu") +
                 _int(len(raw)) + b"tQ")
        body += _int(0) + b"(" + b"".join(_int(d) for d in shape) + b"t"
        body += b"(" + b"".join(_int(d) for d in strides) + b"t"
        body += b"\x89ccollections\nOrderedDict\n)R"
        body += b"ctorch\n" + dtype.encode() + b"\ntR"
        files["ckpt/data/%d" % i] = raw
    data = b"\x80\x02" + body + b"u."
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("ckpt/data.pkl", data)
        for name, raw in files.items():
            z.writestr(name, raw)
        z.writestr("ckpt/version", "3\n")


def main():
    unittest.main(module="__main__", verbosity=2)
