"""safemodel: convert untrusted model files into code-free .safemodel files, and read them.

    report = safemodel.convert("model.pt", "model.safemodel")    # sandboxed; never raises
    safemodel.convert("model.pt", "model.safemodel", check=True)  # raises ConversionError
    tensors = safemodel.load("model.safemodel")                   # {name: numpy array}
    with safemodel.safe_open("model.safemodel") as f:
        w = f.get_tensor("fc.weight")                              # read-only view, no copy
    state_dict = safemodel.torch.load("untrusted.pt")             # replaces torch.load

Conversion runs the same sandboxed worker as safe-convert (README "Sandbox"): the input is
parsed in a separate, seccomp-confined process, never by this interpreter. Reading a
.safemodel maps it: arrays are read-only NumPy views of the file, kept valid for as long as
any of them lives. bf16 and the f8 types have no NumPy dtype: their arrays are raw uint16 /
uint8 views and TensorInfo.dtype_name names the real type.
"""
import json
import os

from . import _layout
from ._native import Error, ModelError
from . import _native

__all__ = [
    "convert", "load", "safe_open", "ConversionReport", "TensorInfo", "Error", "ModelError",
    "ConversionError", "RefusedError", "InvalidArgumentError", "MalformedError", "UnsupportedError",
    "LimitExceededError", "SandboxViolationError", "WorkerCrashedError", "ConversionTimeoutError",
    "ConversionIOError", "InternalError", "SandboxSetupError",
]
__version__ = _native.converter_version().split(" ")[-1]


class ConversionError(Error):
    """A conversion failed; .report is its ConversionReport. Raised only with check=True."""

    def __init__(self, report):
        super().__init__("%s: %s" % (report.status, report.message))
        self.report = report


class RefusedError(ConversionError):
    """The input carries code or refers to code or to another file (exit 1)."""


class InvalidArgumentError(ConversionError):
    """Bad options, or an unusable input or output path (exit 2)."""


class MalformedError(ConversionError):
    """The input is truncated, corrupt, or violates its own format (exit 3)."""


class UnsupportedError(ConversionError):
    """The input is well-formed but uses a feature safemodel does not convert (exit 3)."""


class LimitExceededError(ConversionError):
    """A size, count, time or memory limit was reached (exit 4)."""


class SandboxViolationError(ConversionError):
    """The sandbox stopped the worker (exit 5)."""


class WorkerCrashedError(ConversionError):
    """The worker crashed (exit 5)."""


class ConversionTimeoutError(ConversionError):
    """The wall-clock limit passed; the worker was killed (exit 4)."""


class ConversionIOError(ConversionError):
    """Reading the input or writing the output failed, or the input changed (exit 6)."""


class InternalError(ConversionError):
    """A bug in safemodel (exit 70). Please report it."""


class SandboxSetupError(ConversionError):
    """The sandbox could not be set up or the worker not found (exit 70)."""


_ERRORS = {
    "refused": RefusedError, "invalid_argument": InvalidArgumentError, "malformed": MalformedError,
    "unsupported": UnsupportedError, "limit_exceeded": LimitExceededError,
    "sandbox_violation": SandboxViolationError, "worker_crashed": WorkerCrashedError,
    "timeout": ConversionTimeoutError, "io_error": ConversionIOError, "internal": InternalError,
    "sandbox_setup_failed": SandboxSetupError,
}


class ConversionReport:
    """What a conversion did: the report safe-convert --report writes (README "Report format").

    status: "ok" or the failure's name ("refused", "malformed", ...); ok: status == "ok";
    exit_code: safe-convert's exit code; message: the status message (what, where, which rule);
    findings: list of dicts (severity, rule, location, message, references), worst first;
    input_path, input_bytes, input_sha256, source_format, output_path, output_bytes,
    tensor_count, tensor_bytes, worker (a dict);
    to_dict() / to_json(): the whole report.
    """

    def __init__(self, status, exit_code, message, report_json):
        self.status = status
        self.exit_code = exit_code
        self.message = message
        self._json = report_json
        self._dict = json.loads(report_json)

    ok = property(lambda self: self.status == "ok")
    findings = property(lambda self: self._dict["findings"])
    input_path = property(lambda self: self._dict["input"]["path"])
    input_bytes = property(lambda self: self._dict["input"]["bytes"])
    input_sha256 = property(lambda self: self._dict["input"]["sha256"])
    source_format = property(lambda self: self._dict["input"]["format"])
    output_path = property(lambda self: self._dict["output"]["path"])  # "" unless ok
    output_bytes = property(lambda self: self._dict["output"]["bytes"])
    tensor_count = property(lambda self: self._dict["output"]["tensors"])
    tensor_bytes = property(lambda self: self._dict["output"]["tensor_bytes"])
    worker = property(lambda self: self._dict["worker"])  # how the sandboxed worker ended

    def to_dict(self):
        return json.loads(self._json)

    def to_json(self):
        return self._json

    def raise_for_status(self):
        """Raises the ConversionError subclass of the status unless it is "ok"."""
        if not self.ok:
            raise _ERRORS.get(self.status, ConversionError)(self)

    def __bool__(self):
        return self.ok

    def __repr__(self):
        return "<ConversionReport %s exit_code=%d %s>" % (self.status, self.exit_code, self.message)


def _worker_from_layout():
    """The worker this package was built or installed with ("" if it is not there)."""
    here = os.path.dirname(os.path.realpath(__file__))
    path = os.path.normpath(os.path.join(here, _layout.WORKER))
    return path if os.access(path, os.X_OK) else ""


def convert(src, dst, *, check=False, **options):
    """Converts the untrusted model file `src` into the .safemodel `dst`, in the sandbox.

    Returns a ConversionReport; raises nothing for a failed conversion unless check=True,
    then the ConversionError subclass of its status (RefusedError, MalformedError, ...),
    carrying the report. `dst` appears only if the conversion succeeded.

    Options (ConvertOptions in safemodel/convert.h): timeout_ms, memory_limit_bytes,
    cpu_limit_seconds, max_input_bytes, max_output_bytes, digest ("xxh3-128" | "sha256"),
    weights_only, keep_optimizer, sync_output, force, worker_path, hdf5_worker_path,
    required_isolation (list of names). An unknown option raises TypeError.
    """
    for key in ("worker_path", "hdf5_worker_path"):
        if key in options:
            options[key] = os.fsencode(os.fspath(options[key]))
    # The worker: as named, else $SAFEMODEL_WORKER (handled by the library), else the one
    # this package was built or installed with. The library's own lookup (next to the
    # file holding the pipeline, i.e. this extension module) does not know the layout of
    # a Python package.
    if "worker_path" not in options and not os.environ.get("SAFEMODEL_WORKER"):
        worker = _worker_from_layout()
        if worker:
            options["worker_path"] = os.fsencode(worker)
    report = ConversionReport(*_native.convert(os.fsencode(os.fspath(src)),
                                               os.fsencode(os.fspath(dst)), options))
    if check:
        report.raise_for_status()
    return report


class TensorInfo:
    """A tensor's stored facts: name, dtype_name ("f32", "bf16", "f8_e4m3fn", ...), shape,
    offset and nbytes in the file, alias_of (the tensor whose bytes it shares, or None),
    digest (hex) and numpy_dtype (the dtype of get_tensor's array: uint16 for bf16, uint8
    for f8)."""

    __slots__ = ("name", "dtype_name", "shape", "offset", "nbytes", "alias_of", "digest")

    def __init__(self, name, dtype_name, shape, offset, nbytes, alias_of, digest):
        self.name, self.dtype_name, self.shape = name, dtype_name, shape
        self.offset, self.nbytes, self.alias_of, self.digest = offset, nbytes, alias_of, digest

    @property
    def is_raw(self):
        """True when the array's dtype is not the tensor's (bf16, f8)."""
        return self.dtype_name == "bf16" or self.dtype_name.startswith("f8")

    def __repr__(self):
        return "TensorInfo(%r, %s, %r)" % (self.name, self.dtype_name, self.shape)


class SafeOpen:
    """An opened .safemodel (see safe_open)."""

    def __init__(self, path, framework="numpy"):
        if framework not in ("numpy", "np"):
            raise ValueError("safe_open supports framework='numpy' (for torch use safemodel.torch)")
        self._model = _native.Model(os.fsencode(os.fspath(path)))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        # Arrays already handed out keep the mapping alive (they reference it).
        self._model = None
        return False

    def _m(self):
        if self._model is None:
            raise ValueError("the file is closed")
        return self._model

    def keys(self):
        """Tensor names, sorted (bytewise), as safetensors' safe_open gives them."""
        return self._m().names()

    def keys_in_source_order(self):
        """Tensor names in the order the source listed them (recorded by format 1.1;
        for an older file that records none, sorted like keys())."""
        return self._m().source_names()

    @property
    def has_source_order(self):
        """True when the file records the source's tensor order (format 1.1)."""
        return self._m().has_source_order

    def get_tensor(self, name):
        """A read-only NumPy view of tensor `name` (KeyError if there is none)."""
        return self._m().array(name)

    def get_tensor_info(self, name):
        return TensorInfo(*self._m().info(name))

    def metadata(self):
        """The metadata tree as plain Python data (None if there is none)."""
        return self._m().metadata()

    def architecture(self):
        """The architecture tree as plain Python data (None if the source had none we kept)."""
        return self._m().architecture()

    def provenance(self):
        """Where the file came from: source_format, input_sha256, findings, options, ..."""
        return self._m().provenance()

    def verify(self, name=None):
        """Checks every digest and all padding (or one tensor's digest); raises ModelError."""
        if name is None:
            self._m().verify()
        else:
            self._m().verify_tensor(name)

    @property
    def digest_algorithm(self):
        return self._m().digest_algorithm

    @property
    def format_version(self):
        return self._m().format_version


def safe_open(path, framework="numpy"):
    """Opens a .safemodel like safetensors' safe_open: keys(), get_tensor(name),
    get_tensor_info(name), metadata(), architecture(), provenance(), verify().
    Opening costs O(header); tensor bytes are read only when used. Raises ModelError
    for a file that is not a valid .safemodel."""
    return SafeOpen(path, framework)


def load(path):
    """{name: read-only NumPy view} of every tensor of the .safemodel at `path`, in the
    source's order (keys_in_source_order)."""
    with safe_open(path) as f:
        return {name: f.get_tensor(name) for name in f.keys_in_source_order()}


def __getattr__(name):
    # safemodel.torch is imported on first use: importing safemodel must not import torch.
    if name == "torch":
        import importlib
        return importlib.import_module(".torch", __name__)
    raise AttributeError("module 'safemodel' has no attribute %r" % name)
