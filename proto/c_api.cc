// The C interface (safemodel/c_api.h) over safemodel::Model.
#include "safemodel/c_api.h"

#include <exception>
#include <new>
#include <string>

#include "proto/c_api_error.h"
#include "safemodel/reader.h"

struct sm_model {
  safemodel::Model model;
};

namespace safemodel {
namespace {

// One message per thread, as errno.
std::string& LastError() {
  thread_local std::string message;
  return message;
}

int Fail(const Status& s) { return CApiFail(s); }
int Ok() { return CApiOk(); }

// The tensor at `index`, or nullptr with the last error set.
const TensorInfo* At(const sm_model* m, size_t index) {
  if (m == nullptr) {
    Fail(Status::InvalidArgument("the model is NULL"));
    return nullptr;
  }
  const auto& ts = m->model.tensors();
  if (index >= ts.size()) {
    Fail(Status::InvalidArgument("tensor index " + std::to_string(index) + " is out of range (" +
                                 std::to_string(ts.size()) + " tensors)"));
    return nullptr;
  }
  return &ts[index];
}

}  // namespace

int CApiFail(const Status& s) {
  LastError() = s.ToString();
  return static_cast<int>(s.code());
}

int CApiOk() {
  LastError().clear();
  return SM_OK;
}

}  // namespace safemodel

using safemodel::At;
using safemodel::Fail;
using safemodel::Status;

extern "C" {

const char* sm_last_error(void) { return safemodel::LastError().c_str(); }

const char* sm_status_name(int status) {
  // StatusCodeName returns views of literals: NUL-terminated.
  return safemodel::StatusCodeName(static_cast<safemodel::StatusCode>(status)).data();
}

const char* sm_dtype_name(uint32_t dtype) {
  return safemodel::DTypeName(static_cast<safemodel::DType>(dtype)).data();
}

uint32_t sm_dtype_size(uint32_t dtype) {
  return safemodel::DTypeSize(static_cast<safemodel::DType>(dtype));
}

int sm_model_open(const char* path, sm_model** out) {
  if (out == nullptr) return Fail(Status::InvalidArgument("sm_model_open: out is NULL"));
  *out = nullptr;
  if (path == nullptr) return Fail(Status::InvalidArgument("sm_model_open: path is NULL"));
  safemodel::Result<safemodel::Model> m = safemodel::Model::Open(path);
  if (!m.ok()) return Fail(m.status());
  *out = new (std::nothrow) sm_model{std::move(*m)};
  if (*out == nullptr) return Fail(Status::Internal("out of memory"));
  return safemodel::Ok();
}

void sm_model_close(sm_model* model) { delete model; }

int sm_model_verify(const sm_model* model) {
  if (model == nullptr) return Fail(Status::InvalidArgument("the model is NULL"));
  Status s = model->model.Verify();
  return s.ok() ? safemodel::Ok() : Fail(s);
}

size_t sm_model_tensor_count(const sm_model* model) {
  return model == nullptr ? 0 : model->model.tensors().size();
}

int sm_model_find(const sm_model* model, const char* name, size_t* index) {
  if (model == nullptr || name == nullptr || index == nullptr) {
    return Fail(Status::InvalidArgument("sm_model_find: a NULL argument"));
  }
  const safemodel::TensorInfo* t = model->model.Find(name);
  if (t == nullptr) {
    return Fail(Status::InvalidArgument("no tensor named '" + std::string(name) + "'"));
  }
  *index = static_cast<size_t>(t - model->model.tensors().data());
  return safemodel::Ok();
}

int sm_model_source_order(const sm_model* model, size_t position, size_t* index) {
  if (model == nullptr || index == nullptr) {
    return Fail(Status::InvalidArgument("sm_model_source_order: a NULL argument"));
  }
  const auto& order = model->model.tensors_in_source_order();
  if (position >= order.size()) {
    return Fail(Status::InvalidArgument("source position " + std::to_string(position) +
                                        " is out of range (" + std::to_string(order.size()) +
                                        " tensors)"));
  }
  *index = static_cast<size_t>(order[position] - model->model.tensors().data());
  return safemodel::Ok();
}

int sm_model_has_source_order(const sm_model* model) {
  return model != nullptr && model->model.has_source_order() ? 1 : 0;
}

const char* sm_tensor_name(const sm_model* model, size_t index) {
  const safemodel::TensorInfo* t = At(model, index);
  return t == nullptr ? nullptr : t->name.c_str();
}

uint32_t sm_tensor_dtype(const sm_model* model, size_t index) {
  const safemodel::TensorInfo* t = At(model, index);
  return t == nullptr ? 0 : static_cast<uint32_t>(t->dtype);
}

size_t sm_tensor_rank(const sm_model* model, size_t index) {
  const safemodel::TensorInfo* t = At(model, index);
  return t == nullptr ? 0 : t->shape.size();
}

const uint64_t* sm_tensor_shape(const sm_model* model, size_t index) {
  const safemodel::TensorInfo* t = At(model, index);
  return t == nullptr || t->shape.empty() ? nullptr : t->shape.data();
}

uint64_t sm_tensor_element_count(const sm_model* model, size_t index) {
  const safemodel::TensorInfo* t = At(model, index);
  return t == nullptr ? 0 : t->element_count();
}

const void* sm_tensor_data(const sm_model* model, size_t index) {
  const safemodel::TensorInfo* t = At(model, index);
  return t == nullptr ? nullptr : model->model.Data(*t).data();
}

uint64_t sm_tensor_nbytes(const sm_model* model, size_t index) {
  const safemodel::TensorInfo* t = At(model, index);
  return t == nullptr ? 0 : t->nbytes;
}

const char* sm_tensor_alias_of(const sm_model* model, size_t index) {
  const safemodel::TensorInfo* t = At(model, index);
  return t == nullptr ? nullptr : t->alias_of.c_str();
}

int sm_tensor_verify(const sm_model* model, size_t index) {
  const safemodel::TensorInfo* t = At(model, index);
  if (t == nullptr) return SM_INVALID_ARGUMENT;
  Status s = model->model.VerifyTensor(t->name);
  return s.ok() ? safemodel::Ok() : Fail(s);
}

int sm_tensor_to_dlpack(const sm_model* model, size_t index, SmDLManagedTensor** out) {
  const safemodel::TensorInfo* t = At(model, index);
  if (t == nullptr) return SM_INVALID_ARGUMENT;
  if (out == nullptr) return Fail(Status::InvalidArgument("sm_tensor_to_dlpack: out is NULL"));
  safemodel::Result<SmDLManagedTensor*> r = model->model.ToDLPack(*t);
  if (!r.ok()) return Fail(r.status());
  *out = *r;
  return safemodel::Ok();
}

int sm_tensor_to_dlpack_versioned(const sm_model* model, size_t index,
                                  SmDLManagedTensorVersioned** out) {
  const safemodel::TensorInfo* t = At(model, index);
  if (t == nullptr) return SM_INVALID_ARGUMENT;
  if (out == nullptr) return Fail(Status::InvalidArgument("sm_tensor_to_dlpack: out is NULL"));
  safemodel::Result<SmDLManagedTensorVersioned*> r = model->model.ToDLPackVersioned(*t);
  if (!r.ok()) return Fail(r.status());
  *out = *r;
  return safemodel::Ok();
}

}  // extern "C"
