"""Writes a sharded Hugging Face-style checkpoint (torch.save shards and a
pytorch_model.bin.index.json) into OUT_DIR, and OUT_DIR/expected.json: for
every tensor its dtype, shape and the SHA-256 of its bytes as torch holds
them (C order, little-endian), for a bit-exact comparison.

  make_hf_sharded.py OUT_DIR [clean|malicious|extra_tensor]

malicious: the second shard's pickle calls a function (never run here);
extra_tensor: the second shard holds a tensor the weight map does not name.
"""
import hashlib
import json
import os
import sys

import torch


class Call:
    def __reduce__(self):
        return (print, ("a shard that runs code",))


def main():
    out, mode = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else "clean")
    os.makedirs(out, exist_ok=True)
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
