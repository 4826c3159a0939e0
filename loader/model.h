// What a format parser produces: a plain description of the model (tensors,
// architecture, metadata, findings) plus, for each tensor, a source that
// yields its bytes on demand. No behaviour beyond producing bytes.
//
// Tensor bytes are produced lazily, one tensor at a time, when the worker
// streams them, so that memory stays bounded by the largest tensor rather
// than by the file. A source describes the elements as a strided array over
// some bytes (usually the read-only map of the input, zero copy); the shared
// streaming code (stream.h) turns that into little-endian C-order bytes.
//
// Trust: what a parser puts here comes from an untrusted file; stream.h
// proves every view in bounds before reading it, and the parent checks the
// whole description again.
#ifndef SAFEMODEL_LOADER_MODEL_H_
#define SAFEMODEL_LOADER_MODEL_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "proto/base/byte_reader.h"
#include "safemodel/dtype.h"
#include "safemodel/finding.h"
#include "safemodel/status.h"
#include "safemodel/value.h"

namespace safemodel::loader {

// A heap buffer for tensor bytes, zero-filled on allocation.
//
// The rule for every buffer a tensor is written into: its bytes are fully
// defined before the tensor is streamed, so that no byte of the worker's
// memory (heap pointers, an earlier tensor) can reach the output. Buffers
// that a library fills are zeroed here, because a library may leave parts
// untouched on purpose: libhdf5 writes nothing for storage that was never
// allocated when the fill time is "never" (h5py returns zeros there, from its
// np.zeros buffer). calloc costs nothing for large buffers (fresh mmap pages
// are zero) and one memset for reused heap memory. Allocation failure is a
// LimitExceeded status.
class OwnedBuffer {
 public:
  static Result<OwnedBuffer> Allocate(uint64_t size, std::string_view what);
  OwnedBuffer() = default;
  uint8_t* data() { return data_.get(); }
  const uint8_t* data() const { return data_.get(); }
  uint64_t size() const { return size_; }
  ByteView view() const { return ByteView(data_.get(), size_); }

 private:
  struct Free {
    void operator()(uint8_t* p) const;
  };
  std::unique_ptr<uint8_t, Free> data_;
  uint64_t size_ = 0;
};

// The elements of one tensor as a strided array over `view`.
struct Elements {
  // Memory the elements live in (from the first element's byte): a view of
  // the input map, or of `owned`.
  ByteView view;
  // Keeps produced bytes alive (an inflated zip member, an HDF5 read);
  // `view` then points into it. Moving Elements keeps `view` valid.
  OwnedBuffer owned;
  // 0 or 1: elements are little-endian already. 2, 4, 8: swap every unit of
  // this many bytes (big-endian input; complex types swap each component).
  uint32_t swap_unit = 0;
  // Element strides, one per dimension (may be 0, as torch's expand makes,
  // or negative); empty means C-contiguous. `offset` is the element index of
  // element [0, ..., 0] within `view`.
  std::vector<int64_t> strides;
  uint64_t offset = 0;
};

// Produces a tensor's elements. Called once, when the tensor is streamed.
using ElementSource = std::function<Result<Elements>()>;

// A source over bytes that are already in memory (typically the input map).
ElementSource ViewSource(ByteView bytes, uint32_t swap_unit = 0,
                         std::vector<int64_t> strides = {}, uint64_t offset = 0);

struct Tensor {
  std::string name;  // unique within the model; the parser makes it so
  DType dtype = DType::kInvalid;
  std::vector<uint64_t> shape;
  // Non-empty: the same bytes as the named tensor (tied weights); no source.
  std::string alias_of;
  ElementSource source;
  // Where the tensor is in the input, for messages ("npz member 'w.npy'").
  std::string origin;
  // Position in ParsedModel::tensors as the parser produced it, which is the
  // source's order (the order the format's real loader lists the tensors;
  // loader/README.md per format). Set by the worker before it sorts by name.
  uint64_t source_index = 0;
};

struct ParsedModel {
  // Parser state the sources need (an open HDF5 file, a zip archive, an
  // inflated member). Declared first so that it is destroyed last, after
  // every source.
  std::vector<std::shared_ptr<void>> keepalive;
  std::string source_format;  // lower-case identifier: "npy", "npz", "keras_h5", ...
  // In the source's order (see Tensor::source_index); the worker sorts.
  std::vector<Tensor> tensors;
  Value architecture;         // null when there is none
  Value metadata;             // a map, or null
  std::vector<Finding> findings;  // dropped items and notes (refusals go with the error)
};

}  // namespace safemodel::loader

#endif  // SAFEMODEL_LOADER_MODEL_H_
