#!/usr/bin/python3
"""examples/keras_inference.cc against NumPy: converts examples/models/keras_cnn.h5 with the
built safe-convert, runs keras_inference on the .safemodel alone, and compares its class
probabilities with examples/models/keras_cnn_reference.json (computed from the original .h5
by examples/models/keras_cnn_reference.py). Then variants of the model whose architecture
the example does not implement (made with h5py; skipped without it) are refused, exit 3,
naming the layer.

Usage: keras_inference_test.py BIN_DIR SOURCE_DIR
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

TOLERANCE = 1e-5  # float32 arithmetic against a float64 reference, on probabilities


def run(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, **kw)


def convert(bin_dir, src, dst):
    r = run([os.path.join(bin_dir, "safe-convert"), src, dst, "--no-sync"])
    if r.returncode != 0:
        sys.exit("safe-convert %s failed: %s" % (src, r.stderr))


def variants(tmp, h5, bin_dir, infer):
    """Edits of model_config that the example must refuse, with the words it must say."""
    try:
        import h5py
    except ImportError:
        print("h5py missing: refusal variants skipped")
        return 0
    cases = [
        (lambda ls: ls[3].update(class_name="PReLU"), "'relu' (PReLU): this layer type is not supported"),
        (lambda ls: ls[1]["config"].update(dilation_rate=[2, 2]), "'conv' (Conv2D): dilation_rate [2,2]"),
        (lambda ls: ls[1]["config"].update(padding="causal"), "padding 'causal' is not supported"),
        (lambda ls: ls[7]["config"].update(activation="gelu"), "activation 'gelu' is not supported"),
        (lambda ls: ls[2]["config"].update(axis=[1]), "normalizes another axis"),
        (lambda ls: ls[7]["inbound_nodes"][0][0].__setitem__(0, "flatten"), "only a chain"),
    ]
    failures = 0
    for i, (edit, words) in enumerate(cases):
        path = os.path.join(tmp, "variant%d.h5" % i)
        shutil.copy(h5, path)
        with h5py.File(path, "r+") as f:
            config = json.loads(f.attrs["model_config"])
            edit(config["config"]["layers"])
            f.attrs.modify("model_config", json.dumps(config))
        out = os.path.join(tmp, "variant%d.safemodel" % i)
        convert(bin_dir, path, out)
        r = run([infer, out])
        if r.returncode != 3 or words not in r.stderr:
            print("variant %d: exit %d, stderr %r; expected exit 3 and %r" % (i, r.returncode, r.stderr, words))
            failures += 1
        else:
            print("variant %d refused: %s" % (i, r.stderr.strip()))
    return failures


def main():
    bin_dir, src = sys.argv[1], sys.argv[2]
    h5 = os.path.join(src, "examples", "models", "keras_cnn.h5")
    with open(os.path.join(src, "examples", "models", "keras_cnn_reference.json")) as f:
        want = json.load(f)["probabilities"]
    infer = os.path.join(bin_dir, "keras_inference")
    with tempfile.TemporaryDirectory() as tmp:
        model = os.path.join(tmp, "cnn.safemodel")
        convert(bin_dir, h5, model)
        r = run([infer, model, "--json"])
        if r.returncode != 0:
            sys.exit("keras_inference failed: %s" % r.stderr)
        got = json.loads(r.stdout)
        failures = 0
        if len(got) != len(want) or any(len(g) != len(w) for g, w in zip(got, want)):
            sys.exit("shape of the output %r differs from the reference" % got)
        for k, (g, w) in enumerate(zip(got, want)):
            worst = max(abs(a - b) for a, b in zip(g, w))
            best = max(range(len(w)), key=w.__getitem__)
            ok = worst <= TOLERANCE and max(range(len(g)), key=g.__getitem__) == best
            print("image %d: class %d, largest difference from NumPy %.2e %s" % (k, best, worst, "" if ok else "FAIL"))
            failures += not ok
        text = run([infer, model]).stdout
        print(text, end="")
        if "image 0: class" not in text:
            failures += 1
        failures += variants(tmp, h5, bin_dir, infer)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
