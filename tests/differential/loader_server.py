#!/usr/bin/python3
"""Runs the real loaders on files for the differential harness.

Imports torch, numpy, joblib and h5py once, then serves JSON-line requests
on stdin ({"id", "loader", "path", "timeout"}) and answers on stdout. Each
load runs in a forked child (a throwaway process): the child sets the canary
marker path, puts the canary module on sys.path, loads the file, flattens
whatever it got into tensors and writes the answer to a result file. The
parent kills a child that outlives its timeout (joblib loops forever on some
inputs). The canary fired if the marker file exists afterwards.

Answer: {"id", "loader", "ok", "canary", "code", "tensors": [[dtype, shape,
sha256], ...], "comparable", "error", "timed_out"}. "code" is set when the
loader did not run code itself but the structure it read holds code its
framework would run (a Keras Lambda layer read through h5py)."""
import hashlib
import json
import os
import pickle
import select
import signal
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
CANARY_DIR = os.path.join(HERE, "canary")

os.environ.setdefault("OMP_NUM_THREADS", "1")
import numpy as np  # noqa: E402
import torch  # noqa: E402
import joblib  # noqa: E402
import h5py  # noqa: E402

torch.set_num_threads(1)

NP_DTYPES = {"bool": "bool", "uint8": "u8", "int8": "i8", "uint16": "u16", "int16": "i16",
             "uint32": "u32", "int32": "i32", "uint64": "u64", "int64": "i64", "float16": "f16",
             "float32": "f32", "float64": "f64", "complex64": "c64", "complex128": "c128"}
TORCH_DTYPES = {torch.bool: "bool", torch.uint8: "u8", torch.int8: "i8", torch.int16: "i16",
                torch.int32: "i32", torch.int64: "i64", torch.float16: "f16", torch.bfloat16: "bf16",
                torch.float32: "f32", torch.float64: "f64", torch.complex64: "c64",
                torch.complex128: "c128"}
MAX_NODES = 200_000


class Uncomparable(Exception):
    pass


class Tensors(list):
    """Tensors already flattened by a loader: [[dtype, shape, sha256], ...]."""


def np_tensor(a):
    name = NP_DTYPES.get(a.dtype.name)
    if name is None:
        raise Uncomparable("numpy dtype %s" % a.dtype)
    le = a.dtype.newbyteorder("<") if a.dtype.byteorder not in ("|", "=") else a.dtype
    data = np.ascontiguousarray(a, dtype=le).tobytes()
    return [name, list(a.shape), hashlib.sha256(data).hexdigest()]


def torch_tensor(t):
    if t.layout != torch.strided or t.is_quantized:
        raise Uncomparable("torch %s tensor" % t.layout)
    name = TORCH_DTYPES.get(t.dtype)
    if name is None:
        raise Uncomparable("torch dtype %s" % t.dtype)
    t = t.detach().contiguous()
    if t.dtype == torch.bfloat16:
        data = t.view(torch.int16).numpy().tobytes()
    else:
        data = t.numpy().tobytes()
    return [name, list(t.shape), hashlib.sha256(data).hexdigest()]


def flatten(root):
    """Every tensor and numeric array reachable through containers,
    attributes and module state, each object once."""
    out, seen, stack, nodes = [], set(), [root], 0
    while stack:
        obj = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            raise Uncomparable("too many objects")
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, Tensors):
            out.extend(obj)
        elif isinstance(obj, torch.Tensor):
            out.append(torch_tensor(obj))
        elif isinstance(obj, np.ndarray):
            if obj.dtype.hasobject:
                stack.extend(obj.ravel().tolist())
            else:
                out.append(np_tensor(obj))
        elif isinstance(obj, torch.nn.Module):
            stack.extend(obj.state_dict(keep_vars=True).values())
        elif isinstance(obj, dict):
            stack.extend(obj.values())
        elif isinstance(obj, (list, tuple, set, frozenset)):
            stack.extend(obj)
        elif isinstance(obj, (str, bytes, bytearray, int, float, complex, bool, type(None),
                              np.generic, torch.dtype, torch.device, torch.Size)):
            continue
        elif hasattr(obj, "__dict__"):
            stack.extend(vars(obj).values())
    return out


def keras_code(f):
    """True if an HDF5 file holds what Keras would run: a Lambda layer (or
    the canary's name) in any attribute."""
    found = []

    def visit_attrs(obj):
        for v in obj.attrs.values():
            text = v if isinstance(v, (str, bytes)) else repr(v)
            if isinstance(text, bytes):
                text = text.decode("latin1")
            if '"Lambda"' in text or "safemodel_canary" in text:
                found.append(True)

    visit_attrs(f)
    f.visititems(lambda name, obj: visit_attrs(obj))
    return bool(found)


def load(loader, path):
    """Returns (result object, code flag) or raises."""
    if loader == "torch":
        return torch.load(path), False
    if loader == "torch_weights_only":
        return torch.load(path, weights_only=True), False
    if loader == "pickle":
        with open(path, "rb") as fh:
            return pickle.load(fh), False
    if loader == "joblib":
        return joblib.load(path), False
    if loader in ("np_load", "np_load_pickle"):
        r = np.load(path, allow_pickle=loader == "np_load_pickle")
        if isinstance(r, np.lib.npyio.NpzFile):
            with r:
                return [r[k] for k in r.files], False
        return r, False
    if loader == "zipfile":
        # A program that reads a zip with Python's zipfile (Keras .keras,
        # tools that extract checkpoints) and unpickles or np.loads members.
        import io
        import zipfile
        out = []
        with zipfile.ZipFile(path) as z:
            for name in z.namelist():
                data = z.read(name)
                if name.endswith(".pkl") or data[:1] == b"\x80":
                    out.append(pickle.loads(data))
                elif data[:6] == b"\x93NUMPY":
                    out.append(np.load(io.BytesIO(data), allow_pickle=True))
        return out, False
    if loader == "h5py":
        with h5py.File(path, "r") as f:
            arrays = Tensors()

            def visit(name, obj):
                if not isinstance(obj, h5py.Dataset):
                    return
                if obj.dtype.kind in "biufc":
                    arrays.append(np_tensor(obj[()]))
                elif obj.dtype.kind == "V" and obj.dtype.itemsize == 2:
                    # Keras writes bfloat16 as a 2-byte opaque type.
                    data = np.ascontiguousarray(obj[()]).tobytes()
                    arrays.append(["bf16", list(obj.shape), hashlib.sha256(data).hexdigest()])
            f.visititems(visit)
            return arrays, keras_code(f)
    raise ValueError("unknown loader " + loader)


def child(req, result_path, marker):
    os.environ["SAFEMODEL_CANARY_MARKER"] = marker
    sys.path.insert(0, CANARY_DIR)
    os.chdir(os.path.dirname(os.path.abspath(req["path"])))
    ans = {"ok": False, "code": False, "tensors": [], "comparable": True, "error": ""}
    try:
        obj, code = load(req["loader"], req["path"])
        ans["ok"] = True
        ans["code"] = code
        try:
            ans["tensors"] = flatten(obj)
        except Uncomparable as e:
            ans["comparable"] = False
            ans["error"] = "uncomparable: %s" % e
    except BaseException as e:  # noqa: BLE001 - any failure is a refusal by the loader
        ans["error"] = "%s: %s" % (type(e).__name__, str(e)[:300])
    with open(result_path, "w") as fh:
        json.dump(ans, fh)


def wait_child(pid, timeout):
    """Waits for the child; kills it after `timeout` seconds. True if it
    exited by itself."""
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        fd = None
    if fd is not None:
        ready, _, _ = select.select([fd], [], [], timeout)
        os.close(fd)
        if not ready:
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        return bool(ready)
    deadline = time.monotonic() + timeout
    while True:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            return True
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return False
        time.sleep(0.005)


def serve():
    work = tempfile.mkdtemp(prefix="loader_server_")
    for line in sys.stdin:
        req = json.loads(line)
        result_path = os.path.join(work, "result-%s.json" % req["id"])
        marker = os.path.join(work, "canary-%s" % req["id"])
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            try:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, 1)
                os.dup2(devnull, 2)
                child(req, result_path, marker)
            except BaseException:  # noqa: BLE001
                traceback.print_exc()
            os._exit(0)
        timed_out = not wait_child(pid, req.get("timeout", 10))
        ans = {"ok": False, "code": False, "tensors": [], "comparable": True,
               "error": "timed out" if timed_out else "the loader process died"}
        if os.path.exists(result_path):
            with open(result_path) as fh:
                ans = json.load(fh)
            os.unlink(result_path)
        ans.update({"id": req["id"], "loader": req["loader"], "timed_out": timed_out,
                    "canary": os.path.exists(marker)})
        if os.path.exists(marker):
            os.unlink(marker)
        sys.stdout.write(json.dumps(ans) + "\n")
        sys.stdout.flush()
    os.rmdir(work)


if __name__ == "__main__":
    serve()
