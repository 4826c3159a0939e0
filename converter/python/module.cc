// safemodel._native: the C++ library as a CPython extension module.
//
// Only what the Python package (safemodel/__init__.py, safemodel/torch.py)
// builds on: convert() runs ConvertFile (the same sandboxed worker as
// safe-convert) with the GIL released and returns the report's facts;
// Model (model_binding.h) reads the result. Errors cross into Python as the
// exceptions defined here (Error, ModelError), never as C++ exceptions of
// the library, which has none.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "safemodel/convert.h"
#include "safemodel/status.h"

#include "converter/python/model_binding.h"

namespace py = pybind11;

namespace safemodel::python {
namespace {

uint64_t ToU64(py::handle value, const std::string& key) {
  if (!py::isinstance<py::int_>(value) || py::isinstance<py::bool_>(value)) {
    throw py::type_error("option '" + key + "' must be an int");
  }
  // OverflowError for a negative value or one over 2^64-1.
  const unsigned long long v = PyLong_AsUnsignedLongLong(value.ptr());
  if (v == static_cast<unsigned long long>(-1) && PyErr_Occurred() != nullptr) {
    throw py::error_already_set();
  }
  return v;
}

bool ToBool(py::handle value, const std::string& key) {
  if (!py::isinstance<py::bool_>(value))
    throw py::type_error("option '" + key + "' must be a bool");
  return value.cast<bool>();
}

std::string ToPath(py::handle value, const std::string& key) {
  if (!py::isinstance<py::bytes>(value)) {
    throw py::type_error("option '" + key + "' must be bytes (os.fsencode)");
  }
  return value.cast<std::string>();
}

// ConvertOptions from keyword options; an unknown key or a value of the
// wrong type raises TypeError (before any work): a typo must not silently
// convert with the defaults.
ConvertOptions ParseOptions(const py::dict& options) {
  ConvertOptions o;
  for (const auto& [k, v] : options) {
    const std::string key = py::str(k);
    if (key == "timeout_ms") {
      o.timeout_ms = ToU64(v, key);
    } else if (key == "memory_limit_bytes") {
      o.memory_limit_bytes = ToU64(v, key);
    } else if (key == "cpu_limit_seconds") {
      o.cpu_limit_seconds = ToU64(v, key);
    } else if (key == "max_input_bytes") {
      o.max_input_bytes = ToU64(v, key);
    } else if (key == "max_output_bytes") {
      o.max_output_bytes = ToU64(v, key);
    } else if (key == "digest") {
      const std::string d = py::str(v);
      if (d == DigestAlgorithmName(DigestAlgorithm::kXxh3_128)) {
        o.digest = DigestAlgorithm::kXxh3_128;
      } else if (d == DigestAlgorithmName(DigestAlgorithm::kSha256)) {
        o.digest = DigestAlgorithm::kSha256;
      } else {
        throw py::value_error("digest must be 'xxh3-128' or 'sha256', not '" + d + "'");
      }
    } else if (key == "weights_only") {
      o.weights_only = ToBool(v, key);
    } else if (key == "keep_optimizer") {
      o.keep_optimizer = ToBool(v, key);
    } else if (key == "sync_output") {
      o.sync_output = ToBool(v, key);
    } else if (key == "force") {
      o.force = ToBool(v, key);
    } else if (key == "worker_path") {
      o.worker_path = ToPath(v, key);
    } else if (key == "hdf5_worker_path") {
      o.hdf5_worker_path = ToPath(v, key);
    } else if (key == "required_isolation") {
      if (py::isinstance<py::str>(v))
        throw py::type_error("required_isolation must be a list of names");
      o.required_isolation = v.cast<std::vector<std::string>>();
    } else {
      throw py::type_error("convert() got an unknown option '" + key + "'");
    }
  }
  return o;
}

// (status name, exit code, status message, report JSON). The caller
// (safemodel.convert) makes the report object and raises if asked.
py::tuple Convert(const py::bytes& input, const py::bytes& output, const py::dict& options) {
  const ConvertOptions parsed = ParseOptions(options);
  const std::string in = input, out = output;
  ConvertReport report;
  {
    py::gil_scoped_release release;
    report = ConvertFile(in, out, parsed);
  }
  return py::make_tuple(std::string(StatusCodeName(report.status.code())),
                        ExitCodeFor(report.status.code()), report.status.message(),
                        report.ToJson());
}

}  // namespace
}  // namespace safemodel::python

PYBIND11_MODULE(_native, m) {
  namespace sp = safemodel::python;
  m.doc() = "safemodel's C++ library; use the safemodel package, not this module";
  PyObject* error = PyErr_NewExceptionWithDoc(
      "safemodel.Error", "Base class of safemodel's errors.", nullptr, nullptr);
  if (error == nullptr) throw py::error_already_set();
  m.attr("Error") = py::handle(error);
  sp::BindModel(m, error);
  m.def("convert", &sp::Convert, py::arg("input"), py::arg("output"), py::arg("options"));
  m.def("converter_version", [] { return std::string(safemodel::ConverterVersion()); });
}
