#!/usr/bin/python3
"""Writes examples/models/keras_cnn_reference.json: what keras_cnn.h5 predicts for the fixed
input of examples/keras_inference.cc, computed with NumPy from the ORIGINAL file's weights
(read with h5py, not through safemodel), by a forward pass written out here for this one
network (Conv2D 3x3 same, no bias -> BatchNormalization -> ReLU -> MaxPooling2D 2x2 ->
Flatten -> Dropout -> Dense softmax), in float64.

    /usr/bin/python3 examples/models/keras_cnn_reference.py [--check]

--check recomputes and compares with the committed file instead of writing it (exit 77
without h5py or NumPy).
tests/examples/keras_inference_test.py compares keras_inference's output with the file.
"""
import json
import os
import sys

try:
    import h5py
    import numpy as np
except ImportError as e:  # exit 77: ctest's "skipped"
    print("SKIP: %s" % e)
    sys.exit(77)

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "keras_cnn_reference.json")


def weights(f, layer):
    g = f["model_weights"][layer]
    return [np.asarray(g[n.decode() if isinstance(n, bytes) else n], dtype=np.float64)
            for n in g.attrs["weight_names"]]


def image(k, h=28, w=28, c=1):
    y, x, ch = np.meshgrid(np.arange(h), np.arange(w), np.arange(c), indexing="ij")
    return (((7 * y + 3 * x + 5 * k + 2 * ch) % 11) / np.float32(10)).astype(np.float32).astype(np.float64)


def forward(f, x):
    (kernel,) = weights(f, "conv")  # (3, 3, 1, 8), use_bias false
    padded = np.pad(x, ((1, 1), (1, 1), (0, 0)))
    conv = np.zeros(x.shape[:2] + (kernel.shape[3],))
    for dy in range(3):
        for dx in range(3):
            conv += padded[dy:dy + x.shape[0], dx:dx + x.shape[1], :] @ kernel[dy, dx]
    gamma, beta, mean, var = weights(f, "bn")
    eps = json.loads(f.attrs["model_config"])["config"]["layers"][2]["config"]["epsilon"]
    bn = gamma * (conv - mean) / np.sqrt(var + eps) + beta
    relu = np.maximum(bn, 0)
    h, w, c = relu.shape
    pool = relu.reshape(h // 2, 2, w // 2, 2, c).max(axis=(1, 3))
    dense_kernel, dense_bias = weights(f, "logits")
    logits = pool.reshape(-1) @ dense_kernel + dense_bias
    e = np.exp(logits - logits.max())
    return e / e.sum()


def main():
    with h5py.File(os.path.join(HERE, "keras_cnn.h5"), "r") as f:
        probs = [forward(f, image(k)).tolist() for k in range(2)]
    doc = {"model": "keras_cnn.h5", "input": "image k of 2, pixel (y, x, c) = ((7y + 3x + 5k + 2c) mod 11) / 10",
           "probabilities": probs}
    text = json.dumps(doc, indent=1) + "\n"
    if "--check" in sys.argv:
        with open(OUT) as g:
            old = json.load(g)["probabilities"]
        if not np.allclose(old, probs, rtol=0, atol=1e-12):
            sys.exit("keras_cnn_reference.json is not what this script computes")
        print("keras_cnn_reference.json is current")
        return
    with open(OUT, "w") as g:
        g.write(text)


if __name__ == "__main__":
    main()
