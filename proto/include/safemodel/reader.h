// File: safemodel/reader.h
//
// Reading .safemodel files: what an inference engine links.
//
// `Model::Open` maps the file read-only and validates the prefix, the header
// and the layout of every tensor; it costs O(header), not O(file): tensor
// bytes are not touched. Tensors are then read in place, zero copy, as spans
// into the mapping. Digests are checked on request, for all tensors or one.
//
// Example:
//   auto model = safemodel::Model::Open("resnet.safemodel");
//   if (!model.ok()) { /* model.status().ToString() says why */ }
//   const safemodel::TensorInfo* w = model->Find("fc.weight");
//   std::span<const std::byte> bytes = model->Data(*w);   // no copy
//   if (auto s = model->VerifyTensor("fc.weight"); !s.ok()) { ... }
//   auto floats = model->As<float>(*w);  // std::span<const float>, or an error
//                                        // (dtype not f32, buffer misaligned)
//
// Trust: the file is untrusted. Every offset, size and count is checked before
// use; a file that fails a rule of proto/FORMAT.md is rejected as a whole.
#ifndef SAFEMODEL_READER_H_
#define SAFEMODEL_READER_H_

#include <complex>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <type_traits>
#include <string>
#include <string_view>
#include <vector>

#include "safemodel/dlpack.h"
#include "safemodel/dtype.h"
#include "safemodel/export.h"
#include "safemodel/finding.h"
#include "safemodel/status.h"
#include "safemodel/value.h"

namespace safemodel {

enum class DigestAlgorithm : uint32_t { kXxh3_128 = 1, kSha256 = 2 };

// "xxh3-128" | "sha256"
SAFEMODEL_EXPORT const char* DigestAlgorithmName(DigestAlgorithm algorithm);

struct TensorInfo {
  std::string name;
  DType dtype = DType::kInvalid;
  std::vector<uint64_t> shape;  // C order; empty for a scalar
  // Absolute file offset and length of the stored bytes. For an alias these
  // are those of the tensor it aliases.
  uint64_t offset = 0;
  uint64_t nbytes = 0;
  std::string alias_of;  // non-empty: shares the bytes of that tensor (tied weights)
  std::string digest;    // stored digest (raw bytes); empty for an alias
  // 0-based position in the order the source listed its tensors (format
  // 1.1; FORMAT.md section 4 says what that order is per input format).
  // Empty for a 1.0 file, which does not record it.
  std::optional<uint64_t> source_index;

  // Number of elements: the product of the shape (1 for a scalar). Cannot
  // overflow for a tensor of an opened Model (FORMAT.md bounds the sizes).
  uint64_t element_count() const {
    uint64_t n = 1;
    for (uint64_t d : shape) n *= d;
    return n;
  }
};

// The dtype whose elements are a C++ type T, for Model::As<T>. bool, the
// fixed-width integers, float, double and std::complex<float>; f16, bf16 and
// the f8 types have no standard C++20 type: read them with AsBits.
template <typename T>
struct DTypeOf;
#define SAFEMODEL_DTYPE_OF_(T, D) \
  template <>                     \
  struct DTypeOf<T> {             \
    static constexpr DType value = D; \
  }
SAFEMODEL_DTYPE_OF_(bool, DType::kBool);
SAFEMODEL_DTYPE_OF_(uint8_t, DType::kU8);
SAFEMODEL_DTYPE_OF_(int8_t, DType::kI8);
SAFEMODEL_DTYPE_OF_(uint16_t, DType::kU16);
SAFEMODEL_DTYPE_OF_(int16_t, DType::kI16);
SAFEMODEL_DTYPE_OF_(uint32_t, DType::kU32);
SAFEMODEL_DTYPE_OF_(int32_t, DType::kI32);
SAFEMODEL_DTYPE_OF_(uint64_t, DType::kU64);
SAFEMODEL_DTYPE_OF_(int64_t, DType::kI64);
SAFEMODEL_DTYPE_OF_(float, DType::kF32);
SAFEMODEL_DTYPE_OF_(double, DType::kF64);
SAFEMODEL_DTYPE_OF_(std::complex<float>, DType::kC64);
SAFEMODEL_DTYPE_OF_(std::complex<double>, DType::kC128);
#undef SAFEMODEL_DTYPE_OF_

struct Provenance {
  std::string source_format;      // "npy", "npz", "keras_h5", ...
  std::string input_sha256;       // lower-case hex
  uint64_t input_size = 0;
  std::string converter_version;  // "safemodel 0.1.0"
  std::vector<Finding> findings;  // what was dropped or noted
  std::vector<std::string> options;
};

class SAFEMODEL_EXPORT Model {
 public:
  // Maps and validates `path`. O(header + trailer). A path that does not
  // exist is kInvalidArgument; other open/map failures are kIoError.
  static Result<Model> Open(const std::string& path);
  // Validates a file image already in memory; `bytes` must outlive the Model.
  static Result<Model> FromBuffer(std::span<const std::byte> bytes);

  Model(Model&&) noexcept;
  Model& operator=(Model&&) noexcept;
  ~Model();

  uint32_t format_major() const;
  uint32_t format_minor() const;
  uint64_t file_size() const;

  // Sorted by name (bytewise), the file's canonical order.
  const std::vector<TensorInfo>& tensors() const;
  // True when the file records the source's tensor order (format 1.1 and
  // later; every file this version writes).
  bool has_source_order() const;
  // The tensors in the order the source listed them (TensorInfo::source_index),
  // pointing into tensors(). For a file without a recorded order (1.0), name
  // order: the same as tensors(). O(1) after Open.
  const std::vector<const TensorInfo*>& tensors_in_source_order() const;
  // nullptr if there is no tensor of that name. O(log n).
  const TensorInfo* Find(std::string_view name) const;
  // The stored bytes (little-endian, C order), pointing into the mapping.
  std::span<const std::byte> Data(const TensorInfo& tensor) const;

  // The elements as T, zero copy. kInvalidArgument when the tensor's dtype
  // is not DTypeOf<T> (no conversion), or when its bytes are not aligned for
  // T (only possible for a FromBuffer image at an unaligned address; files
  // are mapped page-aligned and tensors aligned to 64 bytes). As<bool> also
  // checks that every byte is 0 or 1 (reads the tensor; kMalformed if not),
  // since any other byte is not a C++ bool.
  template <typename T>
  Result<std::span<const T>> As(const TensorInfo& tensor) const {
    if (tensor.dtype != DTypeOf<T>::value) return WrongType(tensor, DTypeOf<T>::value);
    if constexpr (std::is_same_v<T, bool>) {
      if (Status s = CheckBools(tensor); !s.ok()) return s;
    }
    return Elements<T>(tensor);
  }
  // The raw element bits of any dtype as an unsigned integer of the element
  // size (uint16_t for f16/bf16, uint8_t for f8), zero copy.
  // kInvalidArgument when sizeof(T) differs from the element size.
  template <typename T>
  Result<std::span<const T>> AsBits(const TensorInfo& tensor) const {
    static_assert(std::is_unsigned_v<T> && !std::is_same_v<T, bool>, "AsBits takes uint8_t..uint64_t");
    if (DTypeSize(tensor.dtype) != sizeof(T)) return WrongType(tensor, DType::kInvalid);
    return Elements<T>(tensor);
  }

  // The tensor as a DLPack managed tensor (safemodel/dlpack.h: the layout of
  // DLManagedTensor; cast the pointer), so that torch, NumPy or ONNX Runtime
  // take it without a copy: CPU device, compact C order (strides NULL),
  // the DLPack type of its dtype (c128 is complex 128 bits; f8 types need a
  // DLPack 1.1 consumer). The memory is the read-only mapping: a consumer
  // that writes to it crashes (the legacy struct cannot say read-only; the
  // versioned one sets SM_DL_FLAG_READ_ONLY). The tensor keeps the mapping
  // alive until the consumer calls its deleter, even after this Model is
  // destroyed (a FromBuffer image must outlive it).
  Result<SmDLManagedTensor*> ToDLPack(const TensorInfo& tensor) const;
  Result<SmDLManagedTensorVersioned*> ToDLPackVersioned(const TensorInfo& tensor) const;

  const Value& architecture() const;  // null if the source had none we could keep
  const Value& metadata() const;
  const Provenance& provenance() const;
  DigestAlgorithm digest_algorithm() const;

  // Checks the header digest, every tensor digest, and that all padding is
  // zero. Reads the whole file.
  Status Verify() const;
  // Checks one tensor's digest (reads only that tensor).
  Status VerifyTensor(std::string_view name) const;

 private:
  struct Impl;
  explicit Model(std::shared_ptr<Impl> impl);
  Status WrongType(const TensorInfo& tensor, DType wanted) const;
  Status Misaligned(const TensorInfo& tensor, size_t alignment) const;
  Status CheckBools(const TensorInfo& tensor) const;
  template <typename T>
  Result<std::span<const T>> Elements(const TensorInfo& tensor) const {
    std::span<const std::byte> bytes = Data(tensor);
    if (reinterpret_cast<uintptr_t>(bytes.data()) % alignof(T) != 0) {
      return Misaligned(tensor, alignof(T));
    }
    return std::span<const T>(reinterpret_cast<const T*>(bytes.data()), bytes.size() / sizeof(T));
  }
  // Shared with the DLPack tensors handed out, which keep the mapping.
  std::shared_ptr<Impl> impl_;
};

}  // namespace safemodel

#endif  // SAFEMODEL_READER_H_
