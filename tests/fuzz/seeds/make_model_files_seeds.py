#!/usr/bin/python3
"""Packs multi-file fixtures of tests/fixtures/keras3_tf into seeds for
model_files_fuzzer (the packing is described there). Writes
seeds/model_files/<name>.bin. Usage: make_model_files_seeds.py"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
FX = os.path.join(HERE, "..", "..", "fixtures", "keras3_tf")
ROLES = {"saved_model": 1, "keras_metadata": 2, "index": 3, "data": 4, "state": 5, "json": 6, "shard": 7}
KINDS = {"savedmodel": 0, "checkpoint": 1, "sharded": 2}  # (kind - 1) as the fuzzer decodes it

SEEDS = {
    "sm_keras_metadata": ("savedmodel", "tf/sm_keras_metadata"),
    "sm_user_metadata": ("savedmodel", "tf/sm_user_metadata"),
    "sm_read_write_file": ("savedmodel", "tf/sm_read_write_file"),
    "sm_lambda": ("savedmodel", "tf/sm_lambda_keras_metadata"),
    "sm_tf22": ("savedmodel", "corpus/keras-team__tf-keras__lso_savedmodel_tf2.2"),
    "ckpt_basic": ("checkpoint", "tf/ckpt_basic"),
    "ckpt_two_shards": ("checkpoint", "tf/ckpt_two_shards"),
    "ckpt_tf1_multiblock": ("checkpoint", "tf/ckpt_tf1_multiblock"),
    "ckpt_big_endian": ("checkpoint", "tf/ckpt_big_endian"),
    "ckpt_tf22": ("checkpoint", "corpus/keras-team__tf-keras__lso_ckpt_tf2.2"),
    "sharded": ("sharded", "keras3/k3_sharded"),
}


def role(name):
    base = os.path.basename(name)
    if base == "saved_model.pb":
        return "saved_model"
    if base == "keras_metadata.pb":
        return "keras_metadata"
    if base == "checkpoint":
        return "state"
    if base.endswith(".index"):
        return "index"
    if ".data-" in base:
        return "data"
    if base.endswith(".weights.json"):
        return "json"
    if base.endswith(".weights.h5"):
        return "shard"
    return None


os.makedirs(os.path.join(HERE, "model_files"), exist_ok=True)
for seed, (kind, rel) in SEEDS.items():
    root = os.path.join(FX, rel)
    out = bytes([KINDS[kind]])
    for dirpath, _, files in sorted(os.walk(root)):
        for f in sorted(files):
            path = os.path.join(dirpath, f)
            name = os.path.relpath(path, root)
            r = role(name)
            if r is None or os.path.islink(path):
                continue
            data = open(path, "rb").read()
            out += bytes([ROLES[r] - 1, len(name)]) + name.encode() + struct.pack("<I", len(data)) + data
    with open(os.path.join(HERE, "model_files", seed + ".bin"), "wb") as fh:
        fh.write(out)
print("%d seeds written" % len(SEEDS))
