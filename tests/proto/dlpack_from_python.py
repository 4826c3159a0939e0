#!/usr/bin/python3
"""torch and NumPy take a .safemodel tensor through DLPack, without a copy,
via the C interface of libsafemodel.so loaded with ctypes.

Usage: dlpack_from_python.py LIBSAFEMODEL_SO MODEL   (the model of
tests/proto/reader_api_test.cc: a_f32 [2, 3] holds bytes j * 3 & 0xff)."""
import ctypes, sys
import numpy as np
import torch.utils.dlpack

lib = ctypes.CDLL(sys.argv[1])
lib.sm_model_open.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_void_p)]
lib.sm_model_find.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_size_t)]
lib.sm_tensor_to_dlpack.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_void_p)]
lib.sm_tensor_data.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
lib.sm_tensor_data.restype = ctypes.c_void_p
lib.sm_model_close.argtypes = [ctypes.c_void_p]
lib.sm_last_error.restype = ctypes.c_char_p
capsule_new = ctypes.pythonapi.PyCapsule_New
capsule_new.restype = ctypes.py_object
capsule_new.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]

model = ctypes.c_void_p()
assert lib.sm_model_open(sys.argv[2].encode(), ctypes.byref(model)) == 0, lib.sm_last_error()
index = ctypes.c_size_t()
assert lib.sm_model_find(model, b"a_f32", ctypes.byref(index)) == 0
expected = np.frombuffer(bytes((j * 3) & 0xFF for j in range(24)), dtype="<f4").reshape(2, 3)
address = lib.sm_tensor_data(model, index)


def capsule():
    managed = ctypes.c_void_p()
    assert lib.sm_tensor_to_dlpack(model, index, ctypes.byref(managed)) == 0
    return capsule_new(managed, b"dltensor", None)


class Exporter:  # what np.from_dlpack asks of an object
    def __dlpack__(self, stream=None):
        return capsule()

    def __dlpack_device__(self):
        return (1, 0)


t = torch.utils.dlpack.from_dlpack(capsule())
a = np.from_dlpack(Exporter())
lib.sm_model_close(model)  # the tensors keep the mapping
assert t.data_ptr() == address, "torch copied"
assert a.ctypes.data == address, "numpy copied"
assert list(t.shape) == [2, 3] and str(t.dtype) == "torch.float32"
assert np.array_equal(t.numpy(), expected, equal_nan=True)
assert np.array_equal(a, expected, equal_nan=True)
del t, a
print("dlpack: ok")
