"""safemodel.torch.load: a replacement for torch.load on untrusted checkpoints.

    state_dict = safemodel.torch.load("untrusted.pt")
    model.load_state_dict(state_dict)

The checkpoint is converted in the sandbox (safemodel.convert) into a .safemodel in a
private temporary directory, which is mapped and removed at once; the tensors are then
views of that mapping. Nothing of the checkpoint is ever unpickled by this interpreter, and
a checkpoint that cannot be converted raises the ConversionError of its status
(RefusedError for one that carries code): there is no fallback to torch.load.

Zero copy, and writable: the mapping is private and copy-on-write, so a tensor is backed by
the page cache until it is written, and writing it (an optimizer step) copies only the
pages written, never touching any file. The mapping stays alive while any tensor of it
does (until then the converted copy holds disk space in the temporary directory, as an
unlinked file).
"""
import collections
import os
import tempfile

import safemodel as _safemodel
from . import _native


class UnsupportedDTypeError(_safemodel.Error, TypeError):
    """A tensor's dtype has no torch dtype in this version of torch."""


# dtype_name -> name of the torch dtype the raw NumPy view is reinterpreted as. NumPy has
# no bf16 or f8 dtype: those arrays are uint16 / uint8 and torch views them (same size).
_REINTERPRET = {
    "bf16": "bfloat16",
    "f8_e4m3fn": "float8_e4m3fn",
    "f8_e5m2": "float8_e5m2",
    "f8_e4m3fnuz": "float8_e4m3fnuz",
    "f8_e5m2fnuz": "float8_e5m2fnuz",
    "f8_e8m0fnu": "float8_e8m0fnu",
}
# Unsigned types torch < 2.3 lacks; they are refused there, never reinterpreted as signed.
_UNSIGNED = {"u16": "uint16", "u32": "uint32", "u64": "uint64"}


def _to_torch(torch, model, name):
    info = _safemodel.TensorInfo(*model.info(name))
    array = model.array(name)
    if info.dtype_name == "bool":
        model.verify_tensor(name)  # every byte 0 or 1 (torch assumes it)
    wanted = _REINTERPRET.get(info.dtype_name) or _UNSIGNED.get(info.dtype_name)
    if wanted is not None and not hasattr(torch, wanted):
        raise UnsupportedDTypeError("tensor %r is %s, which torch %s cannot represent"
                                    % (name, info.dtype_name, torch.__version__))
    if wanted is None:
        return torch.from_numpy(array)
    # torch.from_numpy takes no unsigned type but uint8: the bits go through the signed
    # type of the same size, then torch reinterprets them (a view, no copy).
    if array.itemsize > 1:
        array = array.view("<i%d" % array.itemsize)
    return torch.from_numpy(array).view(getattr(torch, wanted))


def _ref(node):
    """The tensor name of a {"$tensor": name} reference, else None."""
    if isinstance(node, dict) and len(node) == 1 and isinstance(node.get("$tensor"), str):
        return node["$tensor"]
    return None


def _layout(tree, names, source_order):
    """[(key, tensor name)] in the checkpoint's order, read from the metadata tree the
    converter keeps: a state_dict's own keys (a key tied to another tensor names that
    tensor), else the dotted path of each tensor reference through the nesting ("model.fc.
    weight", "layers.0.bias"). Tensors the tree does not reference (with no tree: all of a
    plain dict of tensors) follow in `source_order`, the order the file records (the
    pickle's dict order, as torch.load gives it; sorted for a file that records none)."""
    pairs = []
    if isinstance(tree, dict) and all(_ref(v) is not None for k, v in tree.items() if k != "$attrs"):
        pairs = [(k, _ref(v)) for k, v in tree.items() if k != "$attrs"]
    elif tree is not None:
        stack = [("", tree)]
        while stack:
            path, node = stack.pop()
            ref = _ref(node)
            if ref is not None:
                pairs.append((path, ref))
            elif isinstance(node, dict):
                items = [(k, v) for k, v in node.items() if k != "$attrs"]
                stack.extend(((path + "." if path else "") + k, v) for k, v in reversed(items))
            elif isinstance(node, list):
                stack.extend(("%s.%d" % (path, i) if path else str(i), v)
                             for i, v in reversed(list(enumerate(node))))
    pairs = [(k, n) for k, n in pairs if n in names]
    used = {n for _, n in pairs}
    pairs += [(n, n) for n in source_order if n in names and n not in used]
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise _safemodel.Error("the checkpoint's tensors do not have distinct dotted names")
    return pairs


def _state_dict_metadata(tree):
    """A state_dict's _metadata (module versions, read by load_state_dict), if the
    checkpoint is a state_dict that has one."""
    if isinstance(tree, dict) and isinstance(tree.get("$attrs"), dict):
        meta = tree["$attrs"].get("_metadata")
        if isinstance(meta, dict):
            return meta
    return None


def load(f, map_location=None, *, tmpdir=None, **options):
    """Converts the untrusted checkpoint `f` (a path or a binary file object) in the sandbox
    and returns its tensors as an OrderedDict name -> torch.Tensor. For a state_dict
    (nn.Module.state_dict()): the same keys in the same order as torch.load gives, with its
    _metadata, tied weights as one tensor under each key; for a plain dict of tensors the
    same keys in the same order as torch.load gives (the order the file records). A checkpoint that nests its
    tensors ({"model": {...}, "epoch": 3}) is flattened to them, keyed by their dotted
    path ("model.fc.weight"); its other values are not returned. `map_location`: None or "cpu" keeps them where they are (CPU),
    another device or device string moves them there (a copy). `tmpdir`: where the
    converted copy is made (default: tempfile's). Other keyword options are
    safemodel.convert's. Raises the ConversionError subclass of a failed conversion.
    """
    import torch

    with tempfile.TemporaryDirectory(prefix="safemodel-", dir=tmpdir) as d:
        src = f
        if hasattr(f, "read"):
            src = os.path.join(d, "input")
            with open(src, "xb") as out:
                while True:
                    chunk = f.read(1 << 20)
                    if not chunk:
                        break
                    out.write(chunk)
        dst = os.path.join(d, "model.safemodel")
        options.setdefault("sync_output", False)  # a temporary file: no need to reach the disk
        _safemodel.convert(src, dst, check=True, **options)
        model = _native.Model(os.fsencode(dst), copy_on_write=True)
    tree = model.metadata()
    state = collections.OrderedDict()
    meta = _state_dict_metadata(tree)
    if meta is not None:
        state._metadata = collections.OrderedDict(meta)
    move = map_location not in (None, "cpu") and not (
        isinstance(map_location, torch.device) and map_location.type == "cpu")
    if move and not isinstance(map_location, (str, torch.device)):
        raise TypeError("map_location must be None, a device or a device string")
    made = {}
    for key, name in _layout(tree, set(model.names()), model.source_names()):
        if name not in made:
            made[name] = _to_torch(torch, model, name)
            if move:
                made[name] = made[name].to(map_location)
        state[key] = made[name]  # tied weights: one tensor, as torch.load gives them
    return state
