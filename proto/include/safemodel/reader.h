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
//
// Trust: the file is untrusted. Every offset, size and count is checked before
// use; a file that fails a rule of proto/FORMAT.md is rejected as a whole.
#ifndef SAFEMODEL_READER_H_
#define SAFEMODEL_READER_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

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
};

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

  // Sorted by name.
  const std::vector<TensorInfo>& tensors() const;
  // nullptr if there is no tensor of that name. O(log n).
  const TensorInfo* Find(std::string_view name) const;
  // The stored bytes (little-endian, C order), pointing into the mapping.
  std::span<const std::byte> Data(const TensorInfo& tensor) const;

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
  explicit Model(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace safemodel

#endif  // SAFEMODEL_READER_H_
