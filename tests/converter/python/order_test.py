#!/usr/bin/python3
"""The source order a .safemodel records (TensorInfo.source_index, proto/FORMAT.md section
4) against each format's real loader: np.load's .files for npz, h5py's reading of the
layer_names and weight_names attributes that Keras loads weights by, the data offsets of a
safetensors file. Needs NumPy and h5py (skips without them)."""
import json
import os
import struct
import zipfile

import common

np, h5py = common.require("numpy", "h5py")
import safemodel  # noqa: E402

H5 = os.path.join(common.MODELS, "keras_cnn.h5")


class SourceOrderTest(common.TempDirTest):
    def convert(self, src, name=None):
        out = self.path(name or os.path.basename(src) + ".safemodel")
        safemodel.convert(src, out, check=True)
        return out

    def order(self, src):
        with safemodel.safe_open(self.convert(src)) as f:
            self.assertTrue(f.has_source_order)
            self.assertEqual(f.keys(), sorted(f.keys()))
            return f.keys_in_source_order()

    def test_npz_member_order_is_np_loads(self):
        names = ["zeta", "alpha", "layer10", "layer2", "Mid", "beta"]
        path = self.path("a.npz")
        np.savez(path, **{n: np.full(3, i, np.float32) for i, n in enumerate(names)})
        with np.load(path) as ref:
            self.assertEqual(ref.files, names)
            self.assertEqual(self.order(path), ref.files)
        # Members written in an order of our own, compressed: still the archive's order.
        path = self.path("b.npz")
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
            for n in reversed(names):
                with z.open(n + ".npy", "w") as m:
                    np.lib.format.write_array(m, np.arange(4, dtype=np.int16))
        with np.load(path) as ref:
            self.assertEqual(ref.files, list(reversed(names)))
            self.assertEqual(self.order(path), ref.files)
        # safemodel.load's dict follows the same order.
        self.assertEqual(list(safemodel.load(self.convert(path, "c.safemodel"))), ref.files)

    def test_npy_is_one_tensor(self):
        path = self.path("x.npy")
        np.save(path, np.ones((2, 2)))
        self.assertEqual(self.order(path), ["array"])

    def test_keras_h5_is_layer_then_weight_order(self):
        with h5py.File(H5, "r") as f:
            g = f["model_weights"]
            want = []
            for layer in g.attrs["layer_names"]:
                layer = layer.decode() if isinstance(layer, bytes) else layer
                for w in g[layer].attrs["weight_names"]:
                    want.append(w.decode() if isinstance(w, bytes) else w)
        self.assertNotEqual(want, sorted(want))  # bn/gamma before bn/beta
        # The tensors are named by Keras's weight names (loader/README.md).
        self.assertEqual(self.order(H5), want)

    def test_safetensors_is_data_offset_order(self):
        # Header keys in one order, data in another: the order is the data's.
        entries = {"b": (2, 4), "a": (4, 8), "c": (0, 2)}
        header = {k: {"dtype": "U8", "shape": [e - s], "data_offsets": [s, e]}
                  for k, (s, e) in entries.items()}
        text = json.dumps(header).encode()
        text += b" " * (-len(text) % 8)
        path = self.path("m.safetensors")
        with open(path, "wb") as f:
            f.write(struct.pack("<Q", len(text)) + text + bytes(range(8)))
        self.assertEqual(self.order(path), ["c", "b", "a"])


if __name__ == "__main__":
    common.main()
