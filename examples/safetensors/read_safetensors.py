#!/usr/bin/python3
"""Reads a .safetensors file with nothing but struct, json and numpy: an
independent check that `safe-convert export` writes what the format says.

Usage: read_safetensors.py FILE   prints {name: {dtype, shape, sha256}} as JSON
(sha256 of each tensor's bytes; bf16 and f8 have no numpy dtype and are read
as raw unsigned integers of their size)."""
import hashlib, json, struct, sys
import numpy as np

RAW = {"BF16": np.uint16, "F8_E4M3": np.uint8, "F8_E5M2": np.uint8, "F8_E4M3FNUZ": np.uint8,
       "F8_E5M2FNUZ": np.uint8, "F8_E8M0": np.uint8}
NUMPY = {"BOOL": np.bool_, "U8": np.uint8, "I8": np.int8, "U16": np.uint16, "I16": np.int16,
         "U32": np.uint32, "I32": np.int32, "U64": np.uint64, "I64": np.int64,
         "F16": np.float16, "F32": np.float32, "F64": np.float64, "C64": np.complex64, **RAW}

data = open(sys.argv[1], "rb").read()
(n,) = struct.unpack("<Q", data[:8])
header = json.loads(data[8:8 + n])
buffer = data[8 + n:]
out = {"__metadata__": header.pop("__metadata__", {})}
for name, info in header.items():
    begin, end = info["data_offsets"]
    array = np.frombuffer(buffer[begin:end], dtype=np.dtype(NUMPY[info["dtype"]]).newbyteorder("<"))
    array = array.reshape(info["shape"])
    out[name] = {"dtype": info["dtype"], "shape": list(array.shape),
                 "sha256": hashlib.sha256(array.tobytes()).hexdigest()}
print(json.dumps(out))
