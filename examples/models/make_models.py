#!/usr/bin/python3
"""Writes the small example models bundled for the README quick start."""
import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
rng = np.random.default_rng(7)
# Weights of a 784-32-10 multilayer perceptron, as numpy savez writes them.
np.savez(os.path.join(HERE, "mlp.npz"),
         **{"dense.kernel": rng.standard_normal((784, 32)).astype("<f4") * 0.05,
            "dense.bias": np.zeros(32, dtype="<f4"),
            "out.kernel": rng.standard_normal((32, 10)).astype("<f4") * 0.1,
            "out.bias": np.zeros(10, dtype="<f4")})
