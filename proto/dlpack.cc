// DLPack export of .safemodel tensors (safemodel/reader.h, Model::ToDLPack).
#include <cstddef>
#include <memory>
#include <vector>

#include "proto/base/byte_reader.h"
#include "safemodel/dlpack.h"
#include "safemodel/reader.h"

namespace safemodel {

namespace {

// The layouts of DLPack 1.1 (dlpack.h) on LP64, which safemodel/dlpack.h
// promises: a consumer casts our pointers to its own types.
static_assert(sizeof(SmDLDevice) == 8 && sizeof(SmDLDataType) == 4);
static_assert(offsetof(SmDLTensor, device) == 8 && offsetof(SmDLTensor, ndim) == 16 &&
              offsetof(SmDLTensor, dtype) == 20 && offsetof(SmDLTensor, shape) == 24 &&
              offsetof(SmDLTensor, strides) == 32 && offsetof(SmDLTensor, byte_offset) == 40 &&
              sizeof(SmDLTensor) == 48);
static_assert(offsetof(SmDLManagedTensor, manager_ctx) == 48 &&
              offsetof(SmDLManagedTensor, deleter) == 56 && sizeof(SmDLManagedTensor) == 64);
static_assert(offsetof(SmDLManagedTensorVersioned, manager_ctx) == 8 &&
              offsetof(SmDLManagedTensorVersioned, deleter) == 16 &&
              offsetof(SmDLManagedTensorVersioned, flags) == 24 &&
              offsetof(SmDLManagedTensorVersioned, dl_tensor) == 32);

// The DLPack type of a dtype: code, bits per element.
SmDLDataType DLType(DType d) {
  const auto bits = static_cast<uint8_t>(DTypeSize(d) * 8);
  uint8_t code = SM_DL_FLOAT;
  switch (d) {
    case DType::kBool: code = SM_DL_BOOL; break;
    case DType::kU8: case DType::kU16: case DType::kU32: case DType::kU64: code = SM_DL_UINT; break;
    case DType::kI8: case DType::kI16: case DType::kI32: case DType::kI64: code = SM_DL_INT; break;
    case DType::kBF16: code = SM_DL_BFLOAT; break;
    case DType::kC64: case DType::kC128: code = SM_DL_COMPLEX; break;
    case DType::kF8E4M3FN: code = SM_DL_FLOAT8_E4M3FN; break;
    case DType::kF8E5M2: code = SM_DL_FLOAT8_E5M2; break;
    case DType::kF8E4M3FNUZ: code = SM_DL_FLOAT8_E4M3FNUZ; break;
    case DType::kF8E5M2FNUZ: code = SM_DL_FLOAT8_E5M2FNUZ; break;
    case DType::kF8E8M0FNU: code = SM_DL_FLOAT8_E8M0FNU; break;
    default: break;  // f16, f32, f64: IEEE floats
  }
  return SmDLDataType{code, bits, 1};
}

// What the deleter frees: the managed struct itself, the shape it points
// to, and the share of the mapping.
template <typename Managed>
struct Context {
  Managed managed{};
  std::vector<int64_t> shape;
  std::shared_ptr<const void> keep;
};

template <typename Managed>
Managed* Make(std::shared_ptr<const void> keep, const TensorInfo& t,
              std::span<const std::byte> data) {
  auto* ctx = new Context<Managed>();
  ctx->keep = std::move(keep);
  ctx->shape.assign(t.shape.begin(), t.shape.end());  // each < 2^63 (FORMAT.md)
  SmDLTensor& d = ctx->managed.dl_tensor;
  // DLPack has no const: the consumer promises not to write (the mapping is
  // read-only and a write faults).
  d.data = const_cast<std::byte*>(data.data());
  d.device = SmDLDevice{SM_DL_CPU, 0};
  d.ndim = static_cast<int32_t>(t.shape.size());
  d.dtype = DLType(t.dtype);
  d.shape = ctx->shape.empty() ? nullptr : ctx->shape.data();
  d.strides = nullptr;
  d.byte_offset = 0;
  ctx->managed.manager_ctx = ctx;
  ctx->managed.deleter = [](Managed* self) {
    if (self != nullptr) delete static_cast<Context<Managed>*>(self->manager_ctx);
  };
  return &ctx->managed;
}

}  // namespace

Result<SmDLManagedTensor*> Model::ToDLPack(const TensorInfo& tensor) const {
  if (Find(tensor.name) != &tensor) {
    return Status::InvalidArgument("tensor '" + Printable(tensor.name) + "' is not of this model");
  }
  return Make<SmDLManagedTensor>(impl_, tensor, Data(tensor));
}

Result<SmDLManagedTensorVersioned*> Model::ToDLPackVersioned(const TensorInfo& tensor) const {
  if (Find(tensor.name) != &tensor) {
    return Status::InvalidArgument("tensor '" + Printable(tensor.name) + "' is not of this model");
  }
  SmDLManagedTensorVersioned* m = Make<SmDLManagedTensorVersioned>(impl_, tensor, Data(tensor));
  m->version = SmDLPackVersion{SM_DL_MAJOR_VERSION, SM_DL_MINOR_VERSION};
  m->flags = SM_DL_FLAG_READ_ONLY;
  return m;
}

}  // namespace safemodel
