"""Writes a sharded Hugging Face-style checkpoint (torch.save shards and a
pytorch_model.bin.index.json) into OUT_DIR, and OUT_DIR/expected.json: for
every tensor its dtype, shape and the SHA-256 of its bytes as torch holds
them (C order, little-endian), for a bit-exact comparison.

  make_hf_sharded.py OUT_DIR [clean|malicious|extra_tensor|safetensors]

malicious: the second shard's pickle calls a function (never run here);
extra_tensor: the second shard holds a tensor the weight map does not name;
safetensors: model-0000K-of-00003.safetensors shards and a
model.safetensors.index.json instead, written with struct, json and numpy
alone (no torch), as the reference writer lays them out.
"""
import hashlib
import json
import os
import struct
import sys

import numpy as np


class Call:
    def __reduce__(self):
        return (print, ("a shard that runs code",))


ST_DTYPES = {"float32": "F32", "float16": "F16", "float64": "F64", "int64": "I64",
             "int32": "I32", "bool": "BOOL", "uint8": "U8"}


def write_safetensors(path, tensors):
    """The reference layout: tensors by element size (largest first), then
    name; the header padded with spaces to a multiple of 8."""
    order = sorted(tensors, key=lambda k: (-tensors[k].dtype.itemsize, k))
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for k in order:
        a = tensors[k]
        header[k] = {"dtype": ST_DTYPES[str(a.dtype)], "shape": list(a.shape),
                     "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        for k in order:
            f.write(np.ascontiguousarray(tensors[k]).astype(tensors[k].dtype.newbyteorder("<")).tobytes())


def safetensors_checkpoint(out):
    rng = np.random.default_rng(13)
    shards = [
        {"model.embed.weight": rng.standard_normal((32, 8), dtype=np.float32),
         "model.layers.0.attn.w": rng.standard_normal((8, 8)).astype(np.float16),
         "model.layers.0.count": np.arange(7, dtype=np.int64)},
        {"model.layers.1.attn.w": rng.standard_normal((8, 8), dtype=np.float32),
         "model.norm.mask": np.array([True, False, True]),
         "model.layers.1.ids": rng.integers(0, 255, (5, 3), dtype=np.uint8)},
        {"model.layers.2.attn.w": rng.standard_normal((4, 4)),
         "lm_head.bias": rng.integers(-9, 9, (6,), dtype=np.int32)},
    ]
    names = ["model-%05d-of-%05d.safetensors" % (i + 1, len(shards)) for i in range(len(shards))]
    weight_map, expected, total = {}, {}, 0
    for name, sd in zip(names, shards):
        for k, a in sd.items():
            weight_map[k] = name
            total += a.nbytes
            expected[k] = {"dtype": str(a.dtype), "shape": list(a.shape),
                           "sha256": hashlib.sha256(a.tobytes()).hexdigest()}
        write_safetensors(os.path.join(out, name), sd)
    with open(os.path.join(out, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(expected, f)


def main():
    out, mode = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else "clean")
    os.makedirs(out, exist_ok=True)
    if mode == "safetensors":
        safetensors_checkpoint(out)
        return
    import torch
    g = torch.Generator().manual_seed(12)
    shards = [
        {"model.embed.weight": torch.randn(32, 8, generator=g),
         "model.layers.0.attn.w": torch.randn(8, 8, generator=g).half(),
         "model.layers.0.count": torch.arange(7, dtype=torch.int64)},
        {"model.layers.1.attn.w": torch.randn(8, 8, generator=g),
         "model.norm.mask": torch.tensor([True, False, True]),
         "lm_head.weight": torch.randn(32, 8, generator=g).t().contiguous().t()},
        {"model.layers.2.attn.w": torch.randn(4, 4, generator=g).double()},
    ]
    names = ["pytorch_model-%05d-of-%05d.bin" % (i + 1, len(shards)) for i in range(len(shards))]
    weight_map, expected = {}, {}
    for name, sd in zip(names, shards):
        for k, t in sd.items():
            weight_map[k] = name
            a = t.contiguous().numpy()
            expected[k] = {"dtype": str(a.dtype), "shape": list(a.shape),
                           "sha256": hashlib.sha256(a.tobytes()).hexdigest()}
        saved = dict(sd)
        if name == names[1] and mode == "malicious":
            saved["hook"] = Call()
        if name == names[1] and mode == "extra_tensor":
            saved["unlisted"] = torch.zeros(2)
        torch.save(saved, os.path.join(out, name))
    with open(os.path.join(out, "pytorch_model.bin.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": 0}, "weight_map": weight_map}, f, indent=2)
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(expected, f)


if __name__ == "__main__":
    main()
