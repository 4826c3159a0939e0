// The parent's side of a TENSOR_XFORM (converter/protocol/tensor_xform.h):
// reads the elements a checked record describes from the parent's own
// descriptor of the input and sends them, in C order and little-endian, to a
// sink, through the kernel the worker uses (loader/stream.h: the tiled
// transpose and the byte swap).
//
// Memory: one buffer of at most kXformBandBytes (a band of a
// first-dimension-contiguous view) or kXformPieceBytes (a contiguous one),
// whatever the tensor's size.
#ifndef SAFEMODEL_CONVERTER_INPUT_TRANSFORM_H_
#define SAFEMODEL_CONVERTER_INPUT_TRANSFORM_H_

#include <cstdint>
#include <memory>

#include "converter/protocol/tensor_xform.h"
#include "loader/stream.h"
#include "safemodel/dtype.h"
#include "safemodel/status.h"

namespace safemodel {

// A contiguous view is read in pieces of this: small enough to stay in L2
// while it is swapped, digested and written (as TENSOR_REF's pieces).
inline constexpr uint64_t kXformPieceBytes = 256 << 10;

// The read buffers, kept from one tensor to the next (a checkpoint of many
// transposed weights allocates and faults them in once). Only bytes a read
// filled are ever used.
class XformBuffers {
 public:
  // Two buffers of at least `bytes` each; nullptr if memory is short.
  uint8_t* Get(int i, uint64_t bytes);

 private:
  struct Free {
    void operator()(uint8_t* p) const;
  };
  std::unique_ptr<uint8_t, Free> bufs_[2];
  uint64_t size_ = 0;
};

// `x` and `plan` come from protocol::CheckTensorXform for this input's
// size; `dtype` is the tensor's (its size is x.elem_size, not bool: the
// caller checks both). A failed or short read of the input is kIoError
// naming the byte; buffers that cannot be allocated, kLimitExceeded; the
// sink's errors are returned as they are.
Status StreamInputTransform(int input_fd, const protocol::TensorXform& x, const protocol::XformPlan& plan,
                            DType dtype, XformBuffers& buffers, loader::ChunkSink& sink);

}  // namespace safemodel

#endif  // SAFEMODEL_CONVERTER_INPUT_TRANSFORM_H_
