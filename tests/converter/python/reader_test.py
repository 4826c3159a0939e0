#!/usr/bin/python3
"""safemodel.load / safe_open: read-only zero-copy NumPy views, dtypes, the architecture and
metadata as plain data, verify(). Needs NumPy (skips without it)."""
import gc
import os

import common

np, = common.require("numpy")
import safemodel  # noqa: E402

NPZ = os.path.join(common.MODELS, "mlp.npz")
H5 = os.path.join(common.MODELS, "keras_cnn.h5")


class ReaderTest(common.TempDirTest):
    def convert(self, src, name="m.safemodel", **options):
        out = self.path(name)
        safemodel.convert(src, out, check=True, **options)
        return out

    def test_load_gives_the_npz_arrays(self):
        tensors = safemodel.load(self.convert(NPZ))
        with np.load(NPZ) as ref:
            self.assertEqual(sorted(tensors), sorted(ref.files))
            for name in ref.files:
                self.assertEqual(tensors[name].dtype, ref[name].dtype.newbyteorder("<"))
                np.testing.assert_array_equal(tensors[name], ref[name])

    def test_views_are_read_only_zero_copy_and_aligned(self):
        path = self.convert(NPZ)
        with safemodel.safe_open(path) as f:
            name = f.keys()[0]
            a, b = f.get_tensor(name), f.get_tensor(name)
            info = f.get_tensor_info(name)
        self.assertFalse(a.flags.writeable)
        self.assertFalse(a.flags.owndata)
        self.assertTrue(a.flags.c_contiguous)
        self.assertEqual(a.ctypes.data, b.ctypes.data)  # the same bytes: the mapping
        self.assertEqual(a.ctypes.data % 64, 0)  # proto/FORMAT.md: tensors 64-byte aligned
        self.assertEqual(a.nbytes, info.nbytes)
        with self.assertRaises(ValueError):
            a[...] = 0
        with self.assertRaises(ValueError):
            a.setflags(write=True)  # the base exposes no writable buffer
        # The mapping outlives the `with` block and the file's name: the arrays hold it.
        os.unlink(path)
        gc.collect()
        with np.load(NPZ) as ref:
            np.testing.assert_array_equal(a, ref[name])

    def test_empty_and_scalar_tensors(self):
        src = self.path("shapes.npz")
        np.savez(src, empty=np.zeros((0, 3), "<f4"), scalar=np.array(2.5, "<f8"))
        with safemodel.safe_open(self.convert(src)) as f:
            empty, scalar = f.get_tensor("empty"), f.get_tensor("scalar")
        self.assertEqual((empty.shape, empty.dtype), ((0, 3), np.dtype("<f4")))
        self.assertFalse(empty.flags.writeable)
        self.assertEqual((scalar.shape, float(scalar)), ((), 2.5))
        self.assertFalse(scalar.flags.writeable)

    def test_little_endian_on_every_host(self):
        with safemodel.safe_open(self.convert(NPZ)) as f:
            for name in f.keys():
                dt = f.get_tensor(name).dtype
                self.assertEqual(dt, dt.newbyteorder("<"), dt)  # '=' on a little-endian host

    def test_architecture_and_metadata_are_plain_data(self):
        with safemodel.safe_open(self.convert(H5)) as f:
            arch = f.architecture()
            prov = f.provenance()
            f.verify()
            f.verify(f.keys()[0])
        self.assertIsInstance(arch, dict)
        self.assertEqual(arch["schema"], "safemodel.keras/1")
        layers = arch["model"]["layers"]
        self.assertEqual([l["class_name"] for l in layers],
                         ["InputLayer", "Conv2D", "BatchNormalization", "ReLU", "MaxPooling2D",
                          "Flatten", "Dropout", "Dense"])
        conv = layers[1]["config"]
        self.assertEqual((conv["filters"], conv["kernel_size"], conv["padding"]), (8, [3, 3], "same"))
        self.assertIsInstance(layers[2]["config"]["epsilon"], float)
        self.assertIsNone(conv["kernel_regularizer"])
        self.assertIs(conv["use_bias"], False)
        self.assertEqual(layers[1]["weights"], ["conv/kernel:0"])
        self.assertEqual(arch["model"]["outputs"], [{"layer": "logits", "node": 0, "tensor": 0}])

        def walk(x):  # only plain types anywhere in the tree
            stack = [x]
            while stack:
                v = stack.pop()
                self.assertIsInstance(v, (dict, list, str, int, float, bool, bytes, type(None)))
                stack.extend(v.values() if isinstance(v, dict) else v if isinstance(v, list) else [])
        walk(arch)
        self.assertEqual(prov["source_format"], "keras_h5")
        self.assertEqual(len(prov["input_sha256"]), 64)

    def test_verify_finds_a_changed_byte(self):
        path = self.convert(NPZ)
        with safemodel.safe_open(path) as f:
            info = f.get_tensor_info(f.keys()[-1])
        with open(path, "r+b") as g:
            g.seek(info.offset)
            byte = g.read(1)
            g.seek(info.offset)
            g.write(bytes([byte[0] ^ 1]))
        with safemodel.safe_open(path) as f:
            f.get_tensor(info.name)  # opening does not read tensor bytes
            with self.assertRaises(safemodel.ModelError) as cm:
                f.verify()
            self.assertEqual(cm.exception.exit_code, 3)
            with self.assertRaises(safemodel.ModelError):
                f.verify(info.name)

    def test_errors(self):
        with self.assertRaises(safemodel.ModelError) as cm:
            safemodel.safe_open(self.path("missing.safemodel"))
        self.assertEqual(cm.exception.status, "invalid_argument")
        junk = self.path("junk.safemodel")
        with open(junk, "wb") as g:
            g.write(b"not a safemodel" * 100)
        with self.assertRaises(safemodel.ModelError) as cm:
            safemodel.load(junk)
        self.assertEqual(cm.exception.status, "malformed")
        self.assertIsInstance(cm.exception, safemodel.Error)
        with safemodel.safe_open(self.convert(NPZ)) as f:
            with self.assertRaises(KeyError):
                f.get_tensor("no such tensor")
        with self.assertRaises(ValueError):
            f.keys()  # closed

    def test_raw_dtypes_are_named(self):
        # bf16, float8_e4m3fn, float8_e5m2 and uint16 through a torch checkpoint written by
        # hand (the installed torch may not make them).
        src = self.path("dtypes.pt")
        common.torch_v3_checkpoint(src, {
            "bf": ("bfloat16", b"\x80\x3f\x00\x40", [2]),
            "e4": ("float8_e4m3fn", b"\x38\x40\x48", [3]),
            "e5": ("float8_e5m2", b"\x3c\x40", [1, 2]),
            "u16": ("uint16", b"\x01\x00\xff\xff", [2]),
        })
        with safemodel.safe_open(self.convert(src)) as f:
            got = {n: (f.get_tensor_info(n).dtype_name, f.get_tensor(n)) for n in f.keys()}
            self.assertTrue(f.get_tensor_info("bf").is_raw)
            self.assertFalse(f.get_tensor_info("u16").is_raw)
        self.assertEqual(got["bf"][0], "bf16")
        self.assertEqual(got["bf"][1].dtype, np.dtype("<u2"))
        self.assertEqual(got["bf"][1].tolist(), [0x3f80, 0x4000])  # 1.0, 2.0
        # bf16 is the top half of an f32: widening the raw view gives the values.
        self.assertEqual((got["bf"][1].astype("<u4") << 16).view("<f4").tolist(), [1.0, 2.0])
        self.assertEqual(got["e4"][0], "f8_e4m3fn")
        self.assertEqual(got["e4"][1].dtype, np.dtype("u1"))
        self.assertEqual(got["e4"][1].tolist(), [0x38, 0x40, 0x48])
        self.assertEqual((got["e5"][0], got["e5"][1].shape), ("f8_e5m2", (1, 2)))
        self.assertEqual((got["u16"][0], got["u16"][1].tolist()), ("u16", [1, 0xffff]))


if __name__ == "__main__":
    common.main()
