#!/usr/bin/python3
"""safemodel.convert: the report, typed errors on request, options, the sandboxed worker.
Needs no NumPy."""
import hashlib
import json
import os

import common
import safemodel

NPZ = os.path.join(common.MODELS, "mlp.npz")
H5 = os.path.join(common.MODELS, "keras_cnn.h5")


class ConvertTest(common.TempDirTest):
    def test_report_of_a_conversion(self):
        out = self.path("mlp.safemodel")
        r = safemodel.convert(NPZ, out)
        self.assertTrue(r.ok, r)
        self.assertTrue(r)
        self.assertEqual((r.status, r.exit_code, r.message), ("ok", 0, ""))
        self.assertEqual(r.source_format, "npz")
        with open(NPZ, "rb") as f:
            self.assertEqual(r.input_sha256, hashlib.sha256(f.read()).hexdigest())
        self.assertEqual(r.output_path, out)
        self.assertEqual(r.output_bytes, os.path.getsize(out))
        self.assertGreater(r.tensor_count, 0)
        self.assertEqual(r.findings, [])
        self.assertEqual(r.worker["program"], "safemodel-worker")
        self.assertEqual(r.worker["outcome"], "exited")
        self.assertEqual(json.loads(r.to_json()), r.to_dict())
        self.assertEqual(r.to_dict()["status"], "ok")

    def test_output_is_deterministic(self):
        out = self.path("a.safemodel")
        safemodel.convert(NPZ, out, sync_output=False, check=True)
        safemodel.convert(NPZ, self.path("b.safemodel"), check=True)
        with open(out, "rb") as a, open(self.path("b.safemodel"), "rb") as b:
            self.assertEqual(a.read(), b.read())  # deterministic, options or not

    def test_hdf5_input_is_handed_to_the_hdf5_worker(self):
        r = safemodel.convert(H5, self.path("cnn.safemodel"), check=True)
        self.assertEqual(r.source_format, "keras_h5")
        # Named .h5: the HDF5 worker is started directly (no hand-off).
        self.assertTrue(r.worker["name_hint"])
        self.assertFalse(r.worker["hand_off"])
        self.assertEqual(r.worker["program"], "safemodel-worker-hdf5")
        # The optimizer state is dropped, and says so.
        self.assertTrue(any(f["severity"] == "dropped" for f in r.findings), r.findings)

    def test_refused_pickle_never_runs_and_raises_only_when_asked(self):
        canary = self.path("canary")
        src = self.path("evil.pkl")
        with open(src, "wb") as f:
            f.write(common.canary_pickle(canary))
        out = self.path("evil.safemodel")
        r = safemodel.convert(src, out)
        self.assertEqual((r.status, r.exit_code), ("refused", 1))
        self.assertFalse(r.ok)
        self.assertTrue(any(f["severity"] == "refused" for f in r.findings), r.findings)
        self.assertIn("system", json.dumps(r.findings))
        self.assertEqual(len(r.input_sha256), 64)
        with self.assertRaises(safemodel.RefusedError) as cm:
            safemodel.convert(src, out, check=True)
        e = cm.exception
        self.assertIsInstance(e, safemodel.ConversionError)
        self.assertIsInstance(e, safemodel.Error)
        self.assertEqual(e.report.exit_code, 1)
        self.assertIn("refused", str(e))
        self.assertFalse(os.path.exists(out))
        self.assertFalse(os.path.exists(canary))

    def test_each_status_has_its_error(self):
        bad = self.path("bad.npz")
        with open(NPZ, "rb") as f:
            data = f.read()
        with open(bad, "wb") as f:
            f.write(data[: len(data) // 2])
        with self.assertRaises(safemodel.MalformedError) as cm:
            safemodel.convert(bad, self.path("x.safemodel"), check=True)
        self.assertEqual(cm.exception.report.exit_code, 3)
        with self.assertRaises(safemodel.InvalidArgumentError):
            safemodel.convert(self.path("missing.npz"), self.path("x.safemodel"), check=True)
        with self.assertRaises(safemodel.LimitExceededError) as cm:
            safemodel.convert(NPZ, self.path("x.safemodel"), max_input_bytes=10, check=True)
        self.assertEqual(cm.exception.report.exit_code, 4)
        self.assertFalse(os.path.exists(self.path("x.safemodel")))

    def test_existing_output_needs_force(self):
        out = self.path("m.safemodel")
        with open(out, "w") as f:
            f.write("keep me")
        r = safemodel.convert(NPZ, out)
        self.assertEqual(r.status, "invalid_argument")
        with open(out) as f:
            self.assertEqual(f.read(), "keep me")
        self.assertTrue(safemodel.convert(NPZ, out, force=True).ok)

    def test_options_are_checked_before_any_work(self):
        out = self.path("m.safemodel")
        for bad in ({"timeout": 5}, {"force": 1}, {"timeout_ms": "5"}, {"timeout_ms": True},
                    {"required_isolation": "userns"}):
            with self.assertRaises(TypeError, msg=bad):
                safemodel.convert(NPZ, out, **bad)
        with self.assertRaises(ValueError):
            safemodel.convert(NPZ, out, digest="md5")
        with self.assertRaises(OverflowError):
            safemodel.convert(NPZ, out, timeout_ms=-1)
        self.assertFalse(os.path.exists(out))
        r = safemodel.convert(NPZ, out, required_isolation=["no-such-layer"])
        self.assertEqual(r.status, "invalid_argument")

    def test_digest_option_reaches_the_file(self):
        out = self.path("m.safemodel")
        safemodel.convert(NPZ, out, digest="sha256", check=True)
        with safemodel.safe_open(out) as f:
            self.assertEqual(f.digest_algorithm, "sha256")

    def test_paths_as_bytes_and_pathlike(self):
        import pathlib
        out = os.fsencode(self.tmp) + b"/\xff name.safemodel"  # not UTF-8
        self.assertTrue(safemodel.convert(pathlib.Path(NPZ), out).ok)
        self.assertTrue(os.path.exists(out))

    def test_worker_named_explicitly_or_by_environment(self):
        r = safemodel.convert(NPZ, self.path("a.safemodel"), worker_path=self.path("none"))
        self.assertEqual(r.status, "sandbox_setup_failed")
        with self.assertRaises(safemodel.SandboxSetupError):
            r.raise_for_status()
        old = os.environ.get("SAFEMODEL_WORKER")
        try:
            os.environ["SAFEMODEL_WORKER"] = "relative/safemodel-worker"
            r = safemodel.convert(NPZ, self.path("b.safemodel"))
            self.assertEqual(r.exit_code, 70)
            self.assertIn("absolute", r.message)
        finally:
            if old is None:
                del os.environ["SAFEMODEL_WORKER"]
            else:
                os.environ["SAFEMODEL_WORKER"] = old


if __name__ == "__main__":
    common.main()
