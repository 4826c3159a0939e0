// The .safemodel reader for Python (model_binding.h).
//
// Arrays are views, never copies: each one is a NumPy array whose data
// pointer is inside the file's mapping and whose base object is the Model,
// so the mapping lives as long as any array of it does, whatever the
// caller does with the Model or the `with` block that opened it.
#include "converter/python/model_binding.h"

#include <fcntl.h>
#include <pybind11/numpy.h>
#include <pybind11/stl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "safemodel/dtype.h"
#include "safemodel/reader.h"
#include "safemodel/status.h"
#include "safemodel/value.h"

namespace py = pybind11;

namespace safemodel::python {
namespace {

// safemodel._native.ModelError, created by BindModel.
PyObject* g_model_error = nullptr;

[[noreturn]] void RaiseModelError(const Status& status) {
  py::object exc = py::reinterpret_steal<py::object>(
      PyObject_CallFunction(g_model_error, "s", status.ToString().c_str()));
  if (!exc) throw py::error_already_set();
  exc.attr("status") = py::str(std::string(StatusCodeName(status.code())));
  exc.attr("exit_code") = py::int_(ExitCodeFor(status.code()));
  PyErr_SetObject(g_model_error, exc.ptr());
  throw py::error_already_set();
}

// The NumPy dtype of the stored bytes. Byte order is explicit ('<'): the
// file is little-endian on every host. bf16 and the f8 types have no NumPy
// dtype: they are raw unsigned views (uint16, uint8) and TensorInfo's
// dtype_name says what the bits mean.
const char* NumpyTypeString(DType dtype) {
  switch (dtype) {
    case DType::kBool:
      return "?";
    case DType::kU8:
      return "u1";
    case DType::kI8:
      return "i1";
    case DType::kU16:
      return "<u2";
    case DType::kI16:
      return "<i2";
    case DType::kU32:
      return "<u4";
    case DType::kI32:
      return "<i4";
    case DType::kU64:
      return "<u8";
    case DType::kI64:
      return "<i8";
    case DType::kF16:
      return "<f2";
    case DType::kBF16:
      return "<u2";
    case DType::kF32:
      return "<f4";
    case DType::kF64:
      return "<f8";
    case DType::kC64:
      return "<c8";
    case DType::kC128:
      return "<c16";
    case DType::kF8E4M3FN:
    case DType::kF8E5M2:
    case DType::kF8E4M3FNUZ:
    case DType::kF8E5M2FNUZ:
    case DType::kF8E8M0FNU:
      return "u1";
    case DType::kInvalid:
      break;
  }
  return nullptr;
}

// A Value tree as Python data (None, bool, int, float, str, bytes, list,
// dict in the stored key order), built with an explicit stack: the tree
// comes from an untrusted file.
py::object ValueToPython(const Value& root) {
  struct Pending {
    const Value* value;
    py::handle parent;  // a list or dict kept alive by `holder`
    py::object key;     // index or key in `parent`
  };
  py::list holder(1);
  std::vector<Pending> stack;
  stack.push_back({&root, holder, py::int_(0)});
  while (!stack.empty()) {
    Pending p = std::move(stack.back());
    stack.pop_back();
    const Value& v = *p.value;
    py::object obj;
    switch (v.kind()) {
      case Value::Kind::kNull:
        obj = py::none();
        break;
      case Value::Kind::kBool:
        obj = py::bool_(v.bool_value());
        break;
      case Value::Kind::kInt:
        obj = py::int_(v.int_value());
        break;
      case Value::Kind::kDouble:
        obj = py::float_(v.double_value());
        break;
      case Value::Kind::kString:
        obj = py::str(v.string_value());
        break;
      case Value::Kind::kBytes:
        obj = py::bytes(v.string_value());
        break;
      case Value::Kind::kList: {
        py::list list(v.list().size());
        for (size_t i = 0; i < v.list().size(); ++i)
          stack.push_back({&v.list()[i], list, py::int_(i)});
        obj = std::move(list);
        break;
      }
      case Value::Kind::kMap: {
        py::dict dict;
        // Keys go in now, in order; values replace the placeholders later
        // (replacing a value keeps a dict's order).
        for (const auto& [key, child] : v.entries()) {
          py::str k(key);
          dict[k] = py::none();
          stack.push_back({&child, dict, k});
        }
        obj = std::move(dict);
        break;
      }
    }
    // A new list's slots are NULL: only PyList_SetItem (which steals the
    // reference) may fill them; PyObject_SetItem would release the NULL.
    const int rc =
        PyList_Check(p.parent.ptr())
            ? PyList_SetItem(p.parent.ptr(), p.key.cast<py::ssize_t>(), obj.release().ptr())
            : PyObject_SetItem(p.parent.ptr(), p.key.ptr(), obj.ptr());
    if (rc != 0) throw py::error_already_set();
  }
  return holder[0];
}

py::dict FindingToPython(const Finding& f) {
  py::dict d;
  d["severity"] = SeverityName(f.severity);
  d["rule"] = f.rule;
  d["location"] = f.location;
  d["message"] = f.message;
  d["references"] = f.references;
  return d;
}

// One opened file: the reader's own read-only mapping (Model::Open), or a
// private copy-on-write mapping made here (Model::FromBuffer) whose pages
// the caller may write without touching the file (safemodel.torch).
class PyModel {
 public:
  static std::unique_ptr<PyModel> Open(const std::string& path, bool copy_on_write) {
    auto m = std::unique_ptr<PyModel>(new PyModel());
    Status status;
    {
      py::gil_scoped_release release;
      status = copy_on_write ? m->MapPrivate(path) : m->OpenShared(path);
    }
    if (!status.ok()) RaiseModelError(status);
    return m;
  }

  ~PyModel() {
    model_.reset();  // before the bytes it points into
    if (map_ != nullptr) munmap(map_, map_size_);
  }
  PyModel(const PyModel&) = delete;
  PyModel& operator=(const PyModel&) = delete;

  const Model& model() const { return *model_; }
  bool writable() const { return map_ != nullptr; }

  const TensorInfo& Info(const std::string& name) const {
    const TensorInfo* t = model_->Find(name);
    if (t == nullptr) throw py::key_error("no tensor named '" + name + "'");
    return *t;
  }

  // A view of tensor `name`; `self` is this Model's Python object.
  py::array Array(py::object self, const std::string& name) const {
    const TensorInfo& t = Info(name);
    const char* type = NumpyTypeString(t.dtype);
    if (type == nullptr) RaiseModelError(Status::Unsupported("tensor '" + name + "' has no dtype"));
    py::dtype dtype = py::dtype::from_args(py::str(type));
    std::vector<py::ssize_t> shape, strides(t.shape.size());
    for (uint64_t d : t.shape) {
      // The reader checked that the elements fit in the file, so every
      // dimension of a non-empty tensor does; an empty one may still say
      // 2^63 somewhere.
      if (d > static_cast<uint64_t>(std::numeric_limits<py::ssize_t>::max())) {
        RaiseModelError(Status::Unsupported("tensor '" + name + "' has a dimension over 2^63-1"));
      }
      shape.push_back(static_cast<py::ssize_t>(d));
    }
    py::ssize_t stride = dtype.itemsize();
    for (size_t i = shape.size(); i-- > 0;) {
      strides[i] = stride;
      stride *= shape[i] == 0 ? 1 : shape[i];
    }
    std::span<const std::byte> data = model_->Data(t);
    py::array array = data.empty() ? py::array(dtype, shape, strides)  // nothing to view
                                   : py::array(dtype, shape, strides, data.data(), self);
    if (!writable()) array.attr("setflags")(py::arg("write") = false);
    return array;
  }

 private:
  PyModel() = default;

  Status OpenShared(const std::string& path) {
    auto r = Model::Open(path);
    if (!r.ok()) return r.status();
    model_.emplace(std::move(r).value());
    return Status::Ok();
  }

  Status MapPrivate(const std::string& path) {
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
      return errno == ENOENT
                 ? Status::InvalidArgument("'" + path + "' does not exist")
                 : Status::IoError("cannot open '" + path + "': " + std::strerror(errno));
    }
    struct stat st {};
    Status status;
    if (fstat(fd, &st) != 0) {
      status = Status::IoError("cannot stat '" + path + "': " + std::strerror(errno));
    } else if (!S_ISREG(st.st_mode)) {
      status = Status::InvalidArgument("'" + path + "' is not a regular file");
    } else if (st.st_size > 0) {
      map_size_ = static_cast<size_t>(st.st_size);
      void* p = mmap(nullptr, map_size_, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
      if (p == MAP_FAILED) {
        status = Status::IoError("cannot map '" + path + "': " + std::strerror(errno));
      } else {
        map_ = p;
      }
    }
    close(fd);
    if (!status.ok()) return status;
    auto r = Model::FromBuffer({static_cast<const std::byte*>(map_), map_size_});
    if (!r.ok()) return r.status().WithContext(path);
    model_.emplace(std::move(r).value());
    return Status::Ok();
  }

  std::optional<Model> model_;
  void* map_ = nullptr;
  size_t map_size_ = 0;
};

py::tuple InfoTuple(const TensorInfo& t) {
  static const char kHex[] = "0123456789abcdef";
  std::string digest;
  for (char c : t.digest) {
    const auto b = static_cast<unsigned char>(c);
    digest += kHex[b >> 4];
    digest += kHex[b & 15];
  }
  return py::make_tuple(
      t.name, std::string(DTypeName(t.dtype)), py::tuple(py::cast(t.shape)), t.offset, t.nbytes,
      t.alias_of.empty() ? py::object(py::none()) : py::object(py::str(t.alias_of)), digest);
}

py::dict ProvenanceToPython(const Model& m) {
  const Provenance& p = m.provenance();
  py::dict d;
  d["source_format"] = p.source_format;
  d["input_sha256"] = p.input_sha256;
  d["input_size"] = p.input_size;
  d["converter_version"] = p.converter_version;
  py::list findings;
  for (const Finding& f : p.findings) findings.append(FindingToPython(f));
  d["findings"] = findings;
  d["options"] = p.options;
  return d;
}

void Check(Status status) {
  if (!status.ok()) RaiseModelError(status);
}

}  // namespace

void BindModel(py::module_& m, py::handle base_error) {
  g_model_error = PyErr_NewExceptionWithDoc(
      "safemodel.ModelError",
      "A .safemodel file could not be opened or failed verification; .status names the "
      "rule class ('malformed', 'io_error', ...), .exit_code is safe-convert's.",
      base_error.ptr(), nullptr);
  if (g_model_error == nullptr) throw py::error_already_set();
  m.attr("ModelError") = py::handle(g_model_error);

  py::class_<PyModel>(m, "Model")
      .def(py::init(&PyModel::Open), py::arg("path"), py::arg("copy_on_write") = false)
      .def("names",
           [](const PyModel& s) {
             py::list names;
             for (const TensorInfo& t : s.model().tensors()) names.append(py::str(t.name));
             return names;
           })
      .def("source_names",
           [](const PyModel& s) {
             py::list names;
             for (const TensorInfo* t : s.model().tensors_in_source_order()) {
               names.append(py::str(t->name));
             }
             return names;
           })
      .def_property_readonly("has_source_order",
                             [](const PyModel& s) { return s.model().has_source_order(); })
      .def("info",
           [](const PyModel& s, const std::string& name) { return InfoTuple(s.Info(name)); })
      .def("array",
           [](py::object self, const std::string& name) {
             return self.cast<const PyModel&>().Array(self, name);
           })
      .def("architecture", [](const PyModel& s) { return ValueToPython(s.model().architecture()); })
      .def("metadata", [](const PyModel& s) { return ValueToPython(s.model().metadata()); })
      .def("provenance", [](const PyModel& s) { return ProvenanceToPython(s.model()); })
      .def("verify",
           [](const PyModel& s) {
             Status status;
             {
               py::gil_scoped_release release;
               status = s.model().Verify();
             }
             Check(status);
           })
      .def("verify_tensor",
           [](const PyModel& s, const std::string& name) {
             s.Info(name);
             Status status;
             {
               py::gil_scoped_release release;
               status = s.model().VerifyTensor(name);
             }
             Check(status);
           })
      .def_property_readonly("writable", &PyModel::writable)
      .def_property_readonly("file_size", [](const PyModel& s) { return s.model().file_size(); })
      .def_property_readonly("format_version",
                             [](const PyModel& s) {
                               return py::make_tuple(s.model().format_major(),
                                                     s.model().format_minor());
                             })
      .def_property_readonly("digest_algorithm", [](const PyModel& s) {
        return std::string(DigestAlgorithmName(s.model().digest_algorithm()));
      });
}

}  // namespace safemodel::python
