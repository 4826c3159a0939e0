#!/usr/bin/python3
"""safemodel.torch.load against torch.load on the same checkpoints, refusals without a
fallback, copy-on-write tensors. Needs NumPy and torch (skips without them)."""
import collections
import io
import os
import pickle
import warnings

import common

np, torch = common.require("numpy", "torch")
import safemodel  # noqa: E402
import safemodel.torch  # noqa: E402


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3)
        self.bn = torch.nn.BatchNorm2d(4)
        self.fc = torch.nn.Linear(4 * 6 * 6, 3)

    def forward(self, x):
        return self.fc(torch.relu(self.bn(self.conv(x))).flatten(1))


def no_torch_load(*args, **kwargs):
    raise AssertionError("torch.load was called")


class TorchLoadTest(common.TempDirTest):
    def setUp(self):
        super().setUp()
        self._torch_load = torch.load
        torch.load = no_torch_load  # safemodel.torch must never fall back to it

    def tearDown(self):
        torch.load = self._torch_load
        super().tearDown()

    def save(self, obj, name="ckpt.pt", **kwargs):
        path = self.path(name)
        torch.save(obj, path, **kwargs)
        return path

    def assert_same_state(self, got, want):
        self.assertEqual(list(got), list(want))  # same keys, same order
        for k in want:
            self.assertEqual(got[k].dtype, want[k].dtype, k)
            self.assertEqual(got[k].shape, want[k].shape, k)
            self.assertTrue(torch.equal(got[k], want[k]), k)

    def test_state_dict_as_torch_load_gives_it(self):
        torch.manual_seed(1)
        net = Net().eval()
        for legacy in (False, True):
            path = self.save(net.state_dict(), "net%d.pt" % legacy,
                             _use_new_zipfile_serialization=not legacy)
            got = safemodel.torch.load(path)
            want = self._torch_load(path)
            self.assert_same_state(got, want)
            self.assertEqual(got._metadata, want._metadata)
            other = Net().eval()
            other.load_state_dict(got, strict=True)
            x = torch.randn(2, 1, 8, 8)
            self.assertTrue(torch.equal(other(x), net(x)))

    def test_dtypes(self):
        state = {
            "f32": torch.randn(3, 2), "f64": torch.randn(2, dtype=torch.float64),
            "f16": torch.randn(4).half(), "bf16": torch.randn(5).bfloat16(),
            "i64": torch.arange(6), "i8": torch.tensor([-1, 2], dtype=torch.int8),
            "u8": torch.tensor([255, 0], dtype=torch.uint8), "bool": torch.tensor([True, False]),
            "c64": torch.randn(2, dtype=torch.complex64), "scalar": torch.tensor(2.5),
            "empty": torch.zeros(0, 3),
        }
        path = self.save(state)
        got = safemodel.torch.load(path)
        want = self._torch_load(path)
        # A plain dict of tensors: the order the .safemodel records, torch.load's.
        self.assertNotEqual(list(want), sorted(want))  # the order is a fact, not sorting
        self.assert_same_state(got, want)
        # A state_dict (an OrderedDict with module versions in _metadata) does.
        ordered = collections.OrderedDict(state)
        ordered._metadata = collections.OrderedDict({"": {"version": 1}})
        path = self.save(ordered, "ordered.pt")
        self.assert_same_state(safemodel.torch.load(path), self._torch_load(path))
        self.assertEqual(got["bf16"].dtype, torch.bfloat16)

    def test_plain_dict_keeps_torch_loads_order(self):
        # Insertion order deliberately not sorted (nor reverse-sorted), in both the zip
        # and the legacy serialization; keys whose natural and bytewise orders differ.
        keys = ["z.weight", "a.bias", "layer10.w", "layer2.w", "m", "B", "b"]
        state = {k: torch.full((2,), float(i)) for i, k in enumerate(keys)}
        for legacy in (False, True):
            path = self.save(state, "plain%d.pt" % legacy,
                             _use_new_zipfile_serialization=not legacy)
            want = self._torch_load(path)
            self.assertEqual(list(want), keys)
            got = safemodel.torch.load(path)
            self.assert_same_state(got, want)
            with safemodel.safe_open(self.convert_copy(path)) as f:
                self.assertTrue(f.has_source_order)
                self.assertEqual(f.keys_in_source_order(), keys)
                self.assertEqual(f.keys(), sorted(keys))

    def convert_copy(self, path):
        dst = path + ".safemodel"
        safemodel.convert(path, dst, check=True)
        return dst

    def test_tensors_are_writable_copy_on_write_views(self):
        path = self.save({"w": torch.ones(1024, 64)})
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # torch.from_numpy warns on a read-only array
            a = safemodel.torch.load(path)["w"]
            b = safemodel.torch.load(path)["w"]
        a.mul_(3)  # an optimizer step: writes to private pages
        self.assertTrue(torch.equal(a, torch.full((1024, 64), 3.0)))
        self.assertTrue(torch.equal(b, torch.ones(1024, 64)))
        self.assertEqual(a.data_ptr() % 64, 0)

    def test_tied_weights_share_memory(self):
        w = torch.randn(4, 4)
        path = self.save({"embed.weight": w, "head.weight": w})
        got = safemodel.torch.load(path)
        self.assertEqual(list(got), ["embed.weight", "head.weight"])
        self.assertEqual(got["embed.weight"].data_ptr(), got["head.weight"].data_ptr())
        self.assertTrue(torch.equal(got["head.weight"], w))

    def test_nested_checkpoint_is_flattened(self):
        net = Net()
        path = self.save({"model": net.state_dict(), "epoch": 3, "opt": {"lr": 0.1}})
        got = safemodel.torch.load(path)
        self.assertEqual(list(got), ["model." + k for k in net.state_dict()])
        for k, v in net.state_dict().items():
            self.assertTrue(torch.equal(got["model." + k], v))
        path = self.save([{"w": torch.ones(1)}, {"w": torch.zeros(1)}], "list.pt")
        self.assertEqual(list(safemodel.torch.load(path)), ["0.w", "1.w"])

    def test_file_object_and_map_location(self):
        path = self.save({"w": torch.arange(4.0)})
        with open(path, "rb") as f:
            got = safemodel.torch.load(io.BytesIO(f.read()), map_location="cpu", tmpdir=self.tmp)
        self.assertTrue(torch.equal(got["w"], torch.arange(4.0)))
        self.assertEqual(sorted(os.listdir(self.tmp)), ["ckpt.pt"])  # its temporary files are gone
        with self.assertRaises(TypeError):
            safemodel.torch.load(path, map_location=lambda s, loc: s)

    def test_malicious_checkpoints_are_refused_and_never_run(self):
        canary = self.path("canary")

        class Evil:
            def __reduce__(self):
                return (os.system, ("touch '%s'" % canary,))

        for legacy in (False, True):
            path = self.save({"w": torch.ones(2), "x": Evil()}, "evil%d.pt" % legacy,
                             _use_new_zipfile_serialization=not legacy)
            with self.assertRaises(safemodel.RefusedError) as cm:
                safemodel.torch.load(path)
            self.assertEqual(cm.exception.report.exit_code, 1)
            self.assertIn("posix.system", str(cm.exception.report.findings))
        raw = self.path("evil.pkl")
        with open(raw, "wb") as f:
            f.write(common.canary_pickle(canary))
        scratch = self.path("scratch")
        os.mkdir(scratch)
        with self.assertRaises(safemodel.RefusedError):
            safemodel.torch.load(raw, tmpdir=scratch)
        self.assertEqual(os.listdir(scratch), [])  # nothing left behind
        self.assertFalse(os.path.exists(canary))
        # Not a checkpoint at all: an error too, never torch.load.
        junk = self.path("junk.pt")
        with open(junk, "wb") as f:
            f.write(pickle.dumps([1, 2])[:-3])
        with self.assertRaises(safemodel.ConversionError):
            safemodel.torch.load(junk)

    def test_dtypes_this_torch_lacks_are_refused(self):
        path = self.path("v3.pt")
        common.torch_v3_checkpoint(path, {"e4": ("float8_e4m3fn", b"\x38\x40", [2]),
                                          "u16": ("uint16", b"\x01\x00", [1])})
        for name in ("e4", "u16"):
            wanted = {"e4": "float8_e4m3fn", "u16": "uint16"}[name]
            if hasattr(torch, wanted):
                self.assertEqual(safemodel.torch.load(path)[name].dtype, getattr(torch, wanted))
            else:
                with self.assertRaises(safemodel.torch.UnsupportedDTypeError) as cm:
                    safemodel.torch.load(path)
                self.assertIsInstance(cm.exception, TypeError)


if __name__ == "__main__":
    common.main()
