#!/usr/bin/python3
"""Writes examples/models/keras_cnn.h5: a small Keras model for the README.

The file has the layout tf.keras 2.x's model.save("x.h5") writes (written
here with h5py, so that no Keras is needed): the model_config JSON of a
Functional CNN (Conv2D, BatchNormalization, ReLU, pooling, Dense), its
weights under model_weights/ with layer_names and weight_names, a
training_config and Adam optimizer state (which safe-convert drops by
default and keeps with --keep-optimizer).
"""
import json
import os

import h5py
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
rng = np.random.default_rng(11)


def w(*shape):
    return (rng.standard_normal(shape) * 0.1).astype("<f4")


def node(*names):
    return [[[n, 0, 0, {}] for n in names]]


def layer(cls, name, inbound, **config):
    config.update(name=name, trainable=True, dtype="float32")
    return {"class_name": cls, "config": config, "name": name, "inbound_nodes": inbound}


init = {"class_name": "GlorotUniform", "config": {"seed": None}}
zeros = {"class_name": "Zeros", "config": {}}
layers = [
    layer("InputLayer", "image", [], batch_input_shape=[None, 28, 28, 1], sparse=False, ragged=False),
    layer("Conv2D", "conv", node("image"), filters=8, kernel_size=[3, 3], strides=[1, 1], padding="same",
          data_format="channels_last", dilation_rate=[1, 1], groups=1, activation="linear", use_bias=False,
          kernel_initializer=init, bias_initializer=zeros, kernel_regularizer=None, bias_regularizer=None,
          activity_regularizer=None, kernel_constraint=None, bias_constraint=None),
    layer("BatchNormalization", "bn", node("conv"), axis=[3], momentum=0.99, epsilon=0.001, center=True,
          scale=True, beta_initializer=zeros, gamma_initializer={"class_name": "Ones", "config": {}},
          moving_mean_initializer=zeros, moving_variance_initializer={"class_name": "Ones", "config": {}}),
    layer("ReLU", "relu", node("bn"), max_value=None, negative_slope=0.0, threshold=0.0),
    layer("MaxPooling2D", "pool", node("relu"), pool_size=[2, 2], padding="valid", strides=[2, 2],
          data_format="channels_last"),
    layer("Flatten", "flatten", node("pool"), data_format="channels_last"),
    layer("Dropout", "dropout", node("flatten"), rate=0.25, noise_shape=None, seed=None),
    layer("Dense", "logits", node("dropout"), units=10, activation="softmax", use_bias=True,
          kernel_initializer=init, bias_initializer=zeros, kernel_regularizer=None, bias_regularizer=None,
          activity_regularizer=None, kernel_constraint=None, bias_constraint=None),
]
model_config = {"class_name": "Functional", "config": {
    "name": "mnist_cnn", "layers": layers, "input_layers": [["image", 0, 0]], "output_layers": [["logits", 0, 0]]}}
training_config = {"loss": "sparse_categorical_crossentropy", "metrics": [["accuracy"]], "optimizer_config": {
    "class_name": "Adam", "config": {"name": "Adam", "learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999}}}
weights = {
    "conv": [("conv/kernel:0", w(3, 3, 1, 8))],
    "bn": [("bn/gamma:0", np.ones(8, "<f4")), ("bn/beta:0", np.zeros(8, "<f4")),
           ("bn/moving_mean:0", w(8)), ("bn/moving_variance:0", np.abs(w(8)) + 1)],
    "logits": [("logits/kernel:0", w(14 * 14 * 8, 10)), ("logits/bias:0", np.zeros(10, "<f4"))],
}
vlen = h5py.string_dtype("utf-8")
with h5py.File(os.path.join(HERE, "keras_cnn.h5"), "w") as f:
    f.attrs.create("keras_version", "2.11.0", dtype=vlen)
    f.attrs.create("backend", "tensorflow", dtype=vlen)
    f.attrs.create("model_config", json.dumps(model_config), dtype=h5py.string_dtype("ascii"))
    f.attrs.create("training_config", json.dumps(training_config), dtype=h5py.string_dtype("ascii"))
    g = f.create_group("model_weights")
    g.attrs.create("keras_version", "2.11.0", dtype=vlen)
    g.attrs.create("backend", "tensorflow", dtype=vlen)
    g.attrs["layer_names"] = np.array([l["name"].encode() for l in layers])
    for l in layers:
        lg = g.create_group(l["name"])
        items = weights.get(l["name"], [])
        lg.attrs["weight_names"] = np.array([n.encode() for n, _ in items]) if items else np.array([], "f8")
        for name, arr in items:
            lg.create_dataset(name, data=arr)
    top = g.create_group("top_level_model_weights")
    top.attrs["weight_names"] = np.array([], "f8")
    o = f.create_group("optimizer_weights")
    slots = [("Adam/iter:0", np.array(1200, "<i8"))]
    for layer_name, items in weights.items():
        for name, arr in items:
            if "moving" in name:
                continue
            base = name.split(":")[0]
            slots += [("Adam/%s/m:0" % base, np.zeros_like(arr)), ("Adam/%s/v:0" % base, np.zeros_like(arr))]
    o.attrs["weight_names"] = np.array([n.encode() for n, _ in slots])
    for name, arr in slots:
        o.create_dataset(name, data=arr)
