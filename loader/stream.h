// Streaming a tensor's elements as little-endian, C-order bytes.
//
// This is the one place that walks strided element arrays. Before reading a
// single element it proves, with checked arithmetic, that every element the
// shape and strides can reach lies inside the source bytes.
//
// Worst case: O(elements) per tensor, in chunks; memory is one chunk plus
// the source's own bytes.
//
// Trust: the source's view, strides and offset come from an untrusted file
// and are all checked here.
#ifndef SAFEMODEL_LOADER_STREAM_H_
#define SAFEMODEL_LOADER_STREAM_H_

#include <cstdint>

#include "loader/model.h"
#include "proto/base/byte_reader.h"
#include "safemodel/status.h"

namespace safemodel::loader {

// Chunks sent to a sink are at most this large: big enough that per-chunk
// costs vanish, small enough to stay in L2/L3 and bound the worker's buffer.
inline constexpr uint64_t kChunkBytes = 1 << 20;

class ChunkSink {
 public:
  virtual ~ChunkSink() = default;
  // Receives the next non-empty piece of the tensor's bytes.
  virtual Status Write(ByteView chunk) = 0;
};

// Checks that `elements` can supply every element of a tensor of `shape` and
// `dtype` (bounds, swap unit, stride count). Cheap; reads no element.
Status CheckElements(const Elements& elements, DType dtype, std::span<const uint64_t> shape,
                     std::string_view what);
// The same checks; then the bytes of `elements.view` from its lowest to its
// highest element (empty for no element): what streaming the tensor reads,
// which is less than the view when the view is a shared storage.
Result<ByteView> ElementBytes(const Elements& elements, DType dtype, std::span<const uint64_t> shape,
                              std::string_view what);

// Streams the tensor in chunks of at most kChunkBytes. Contiguous little-endian
// sources are passed through without a copy.
Status StreamElements(const Elements& elements, DType dtype, std::span<const uint64_t> shape,
                      std::string_view what, ChunkSink& sink);

}  // namespace safemodel::loader

#endif  // SAFEMODEL_LOADER_STREAM_H_
