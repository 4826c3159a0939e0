"""Checks a sharded safetensors export against the checkpoint it came from.

  check_safetensors_export.py SOURCE_INDEX EXPORT_INDEX

SOURCE_INDEX is the Hugging Face index the sharded .safemodel was converted
from (pytorch_model.bin.index.json: shards read with torch.load;
model.safetensors.index.json: shards read with struct, json and numpy).
EXPORT_INDEX is what `safe-convert export` wrote; its shards are read with
struct, json and numpy alone. Checks that the weight map names every source
tensor exactly once and nothing else, that each exported shard holds exactly
the tensors the weight map gives it, that every tensor's dtype, shape and
bytes are the source's, and that total_size is the sum of tensor bytes.
Prints OK and exits 0, else prints what differs and exits 1.
"""
import json
import os
import struct
import sys

import numpy as np

NUMPY = {"BOOL": np.bool_, "U8": np.uint8, "I8": np.int8, "U16": np.uint16, "I16": np.int16,
         "U32": np.uint32, "I32": np.int32, "U64": np.uint64, "I64": np.int64,
         "F16": np.float16, "F32": np.float32, "F64": np.float64, "C64": np.complex64}


def read_safetensors(path):
    data = open(path, "rb").read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    header.pop("__metadata__", None)
    buffer = data[8 + n:]
    out = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        dtype = np.dtype(NUMPY[info["dtype"]]).newbyteorder("<")
        out[name] = np.frombuffer(buffer[begin:end], dtype=dtype).reshape(info["shape"])
    return out


def read_source(index_path):
    weight_map = json.load(open(index_path))["weight_map"]
    base = os.path.dirname(index_path)
    tensors = {}
    for shard in sorted(set(weight_map.values())):
        path = os.path.join(base, shard)
        if shard.endswith(".safetensors"):
            loaded = read_safetensors(path)
        else:
            import torch
            loaded = {k: v.contiguous().numpy() for k, v in
                      torch.load(path, map_location="cpu", weights_only=True).items()}
        tensors.update(loaded)
    return tensors


def main():
    source = read_source(sys.argv[1])
    index = json.load(open(sys.argv[2]))
    base = os.path.dirname(sys.argv[2])
    errors = []
    if sorted(index) != ["metadata", "weight_map"]:
        errors.append("index keys %s" % sorted(index))
    weight_map = index["weight_map"]
    if sorted(weight_map) != sorted(source):
        errors.append("weight_map names %s, source has %s" % (sorted(weight_map), sorted(source)))
    seen, total = set(), 0
    for shard in sorted(set(weight_map.values())):
        exported = read_safetensors(os.path.join(base, shard))
        mapped = sorted(k for k, v in weight_map.items() if v == shard)
        if sorted(exported) != mapped:
            errors.append("%s holds %s, weight_map gives it %s" % (shard, sorted(exported), mapped))
        for name, a in exported.items():
            if name in seen:
                errors.append("%s in two shards" % name)
            seen.add(name)
            total += a.nbytes
            s = source.get(name)
            if s is None:
                continue
            if a.dtype.newbyteorder("=") != s.dtype.newbyteorder("=") or a.shape != s.shape:
                errors.append("%s: %s%s, source %s%s" % (name, a.dtype, a.shape, s.dtype, s.shape))
            elif a.tobytes() != np.ascontiguousarray(s).astype(s.dtype.newbyteorder("<")).tobytes():
                errors.append("%s: bytes differ" % name)
    if index["metadata"].get("total_size") != total:
        errors.append("total_size %s, tensors hold %d" % (index["metadata"].get("total_size"), total))
    print("\n".join(errors) if errors else "OK (%d tensors)" % len(seen))
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
