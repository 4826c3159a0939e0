#!/usr/bin/python3
"""Checks a converted Keras architecture against its source file.

usage: check_graph.py MODEL.h5 ARCHITECTURE.json

Reads the source's model_config and weights with h5py + json and verifies,
independently of the converter, that the architecture tree has
  - the same layers (class and name, in order, nested models included),
  - the same edges (every call node's inputs, positional and passed by
    keyword, Keras 2 and Keras 3 forms, and each Functional model's inputs
    and outputs),
  - the same weight assignment: each top-level layer owns exactly its group's
    weight_names, in order; inside nested models every weight lands on the
    sublayer its Keras name belongs to, in that layer's saved order
    (trainable first, as Keras creates them).
Prints a summary and exits 0, or lists the differences and exits 1.
"""
import json
import sys

import h5py
import numpy as np

MODELS = ("Sequential", "Functional", "Model")
WRAPPERS = ("TimeDistributed", "Bidirectional")
errors = []


def fail(msg):
    errors.append(msg)


def strings(attrs, name):
    def listify(v):
        a = np.asarray(v)
        return [x.decode() if isinstance(x, bytes) else str(x) for x in ([a.item()] if a.ndim == 0 else list(a))]
    if name in attrs:
        return [] if np.asarray(attrs[name]).size == 0 else listify(attrs[name])
    out, k = [], 0
    while "%s%d" % (name, k) in attrs:
        out += listify(attrs["%s%d" % (name, k)])
        k += 1
    return out


def members(entry):
    cfg = entry.get("config")
    return cfg if isinstance(cfg, list) else (cfg or {}).get("layers", [])


def name_of(entry):
    return entry.get("name") or (entry.get("config") or {}).get("name")


def refs_in(value, keras2):
    """Tensor references inside call arguments, in order, as (layer, node, tensor).

    Keras 3 writes them as __keras_tensor__ objects; tf.keras 2 (in kwargs)
    as any 3- or 4-item list that starts with a layer name."""
    out, stack = [], [value]
    while stack:
        v = stack.pop()
        if isinstance(v, dict) and v.get("class_name") == "__keras_tensor__":
            h = v["config"]["keras_history"]
            out.append((h[0], h[1], h[2]))
        elif keras2 and isinstance(v, list) and len(v) in (3, 4) and isinstance(v[0], str):
            out.append((v[0], v[1], v[2]))
        elif isinstance(v, dict):
            stack.extend(reversed(list(v.values())))
        elif isinstance(v, list):
            stack.extend(reversed(v))
    return out


def kwarg_refs(node):
    """Tensors passed by keyword in one inbound node."""
    if isinstance(node, dict):  # Keras 3
        return refs_in(node.get("kwargs", {}), False)
    # tf.keras keeps the last entry's kwargs; an entry of 3 items has none.
    entries = [node] if node and isinstance(node[0], str) else node
    last = entries[-1] if entries else []
    return refs_in(last[3], True) if len(last) == 4 else []


def source_refs(node):
    """The inputs of one inbound node, as (layer, node, tensor) tuples."""
    if isinstance(node, dict):  # Keras 3
        return refs_in(node.get("args", []), False)
    if node and isinstance(node[0], str):
        node = [node]
    # tf.keras >= 2.4 writes a constant argument as [_CONSTANT_VALUE, -1, value, ...].
    return [("$constant", json.dumps(e[2])) if e[0] == "_CONSTANT_VALUE" else (e[0], e[1], e[2])
            for e in node]


def endpoints(v):
    if not v:
        return []
    if isinstance(v[0], str):
        v = [v]
    return [(e[0], e[1], e[2]) for e in v]


def converted_refs(refs):
    return [("$constant", json.dumps(r["constant"])) if "constant" in r
            else (r["layer"], r["node"], r["tensor"]) for r in refs]


def compare_layers(src, out, path, stats):
    """Walks source and converted trees side by side (explicit stack)."""
    stack = [(src, out, path, False)]
    while stack:
        s, o, p, functional = stack.pop()
        if s["class_name"] != o["class_name"] or name_of(s) != o["name"]:
            fail("%s: source %s '%s', converted %s '%s'" % (p, s["class_name"], name_of(s),
                                                              o["class_name"], o["name"]))
            continue
        stats["layers"] += 1
        if functional:
            src_nodes = [(source_refs(n), kwarg_refs(n)) for n in s.get("inbound_nodes", [])]
            out_nodes = [(converted_refs(n["inputs"]), converted_refs(n.get("kwarg_inputs", [])))
                         for n in o.get("inbound_nodes", [])]
            if src_nodes != out_nodes:
                fail("%s: edges %s != %s" % (p, src_nodes, out_nodes))
            stats["edges"] += sum(len(a) + len(k) for a, k in src_nodes)
        if s["class_name"] in MODELS:
            sm, om = members(s), o.get("layers", [])
            if len(sm) != len(om):
                fail("%s: %d members in the source, %d converted" % (p, len(sm), len(om)))
                continue
            is_functional = s["class_name"] != "Sequential"
            if is_functional:
                for key, okey in (("input_layers", "inputs"), ("output_layers", "outputs")):
                    if endpoints(s["config"].get(key)) != converted_refs(o.get(okey, [])):
                        fail("%s: %s differ" % (p, key))
            for k in reversed(range(len(sm))):
                stack.append((sm[k], om[k], p + "/" + str(name_of(sm[k])), is_functional))
        elif s["class_name"] in WRAPPERS:
            stack.append((s["config"]["layer"], o["layer"], p + "/" + name_of(s["config"]["layer"]), False))


def leaves_with_weights(node):
    out, stack = [], [(node, None)]
    while stack:
        n, wrapper = stack.pop()
        if n.get("weights") and not (n["class_name"] in MODELS or n["class_name"] in WRAPPERS):
            out.append((n, wrapper))
        for c in reversed(n.get("layers", [])):
            stack.append((c, wrapper))
        for key in ("layer", "backward_layer"):
            if key in n:
                stack.append((n[key], (n, key)))
    return out


BN_ORDER = ["gamma", "beta", "moving_mean", "moving_variance"]


def check_weights(model_file, arch, stats):
    with h5py.File(model_file, "r") as f:
        root = f["model_weights"]
        groups = [(layer, strings(root[layer].attrs, "weight_names")) for layer in strings(root.attrs, "layer_names")]
    model = arch["model"]
    top = [m for m in model["layers"] if not (model["class_name"] == "Sequential" and m["class_name"] == "InputLayer")]
    if [g[0] for g in groups] != [m["name"] for m in top]:
        fail("layer_names %s != model layers %s" % ([g[0] for g in groups], [m["name"] for m in top]))
        return
    for (layer, names), node in zip(groups, top):
        if node["class_name"] not in MODELS + WRAPPERS:
            if node.get("weights", []) != names:
                fail("%s: weights %s != weight_names %s" % (layer, node.get("weights"), names))
            stats["weights"] += len(names)
            continue
        leaves = leaves_with_weights(node)
        got = [w for leaf, _ in leaves for w in leaf["weights"]]
        if sorted(got) != sorted(names) or len(set(got)) != len(got):
            fail("%s: sublayer weights %s are not the group's %s" % (layer, got, names))
            continue
        stats["weights"] += len(got)
        for leaf, wrapper in leaves:
            w = leaf["weights"]
            if wrapper is None:
                # tf.keras / Keras 3 names: <...>/<sublayer>/<variable>[:0]
                owners = [x.split("/")[-2] for x in w]
                if any(o != leaf["name"] for o in owners):
                    fail("%s: weights %s do not belong to it" % (leaf["name"], w))
            else:
                side = "backward" if wrapper[1] == "backward_layer" else "forward"
                if wrapper[0]["class_name"] == "Bidirectional" and any(("/%s_" % side) not in x for x in w):
                    fail("%s: %s weights %s" % (leaf["name"], side, w))
            if leaf["class_name"] == "BatchNormalization":
                kinds = [x.split("/")[-1].split(":")[0] for x in w]
                if kinds != [k for k in BN_ORDER if k in kinds]:
                    fail("%s: BatchNormalization weights out of order: %s" % (leaf["name"], kinds))


def main(model_file, arch_file):
    arch = json.load(open(arch_file))
    with h5py.File(model_file, "r") as f:
        raw = f.attrs["model_config"]
    config = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    stats = {"layers": 0, "edges": 0, "weights": 0}
    compare_layers(config, arch["model"], str(name_of(config)), stats)
    check_weights(model_file, arch, stats)
    if errors:
        print("\n".join(errors[:50]))
        sys.exit(1)
    print("ok: %(layers)d layers, %(edges)d edges, %(weights)d weights" % stats)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
