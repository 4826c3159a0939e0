#!/usr/bin/python3
"""Writes the safetensors fuzz seeds (tests/fuzz/seeds/safetensors/): small
valid files of several dtypes, padding, empty tensors and metadata, plus a
few near misses. Run from this directory; the output is committed."""
import json, os, struct

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "safetensors")


def image(header, buffer=b"", pad=True):
    text = header if isinstance(header, bytes) else json.dumps(header, separators=(",", ":")).encode()
    if pad:
        text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + buffer


def entry(dtype, shape, begin, end):
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


SEEDS = {
    "empty_header": image({}),
    "two_tensors": image({"__metadata__": {"format": "pt"}, "w": entry("F32", [2, 2], 0, 16),
                          "b": entry("BF16", [2], 16, 20)}, bytes(range(20))),
    "every_byte_dtype": image({d: entry(d, [2], 2 * i, 2 * i + 2) for i, d in enumerate(
        ["BOOL", "U8", "I8", "F8_E4M3", "F8_E5M2", "F8_E8M0"])}, b"\x00\x01" * 6),
    "empty_and_scalar": image({"e": entry("F64", [0, 3], 0, 0), "s": entry("I64", [], 0, 8)},
                              bytes(8)),
    "unpadded": image({"x": entry("U16", [3], 0, 6)}, bytes(6), pad=False),
    "gap": image({"x": entry("U8", [2], 2, 4)}, bytes(4)),
    "duplicate": image(b'{"x":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},'
                       b'"x":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}', b"\x00"),
}

os.makedirs(OUT, exist_ok=True)
for name, data in SEEDS.items():
    with open(os.path.join(OUT, name + ".safetensors"), "wb") as f:
        f.write(data)
