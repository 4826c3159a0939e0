// TENSOR_XFORM (issue 15: a transposed or big-endian tensor without the pipe),
// defined once for the worker (converter/worker/worker_main.cc), which sends
// it, and the parent (converter/worker_stream.cc, converter/input_transform.h),
// which checks and executes it.
//
// For an input of one file, a tensor whose elements are the input's own
// bytes, but in another order (Fortran order, a transposed torch storage) or
// byte order (big-endian), may be sent as one record describing how to read
// them: a region of the input, the element size, an optional byte swap, and
// the strided view (first element, shape, element strides) that puts them in
// C order, little-endian. The parent checks every field (CheckTensorXform),
// reads the region from its own descriptor of the input and produces the
// bytes with the same kernel the worker uses (loader/stream.h), then writes
// and digests them as TENSOR_DATA. The record stands for the whole current
// tensor, from its first byte to its last. A hostile worker gains nothing: it
// could send the same bytes (or any others) as data; it can name no byte
// outside the input the user gave, and the checks below bound the parent's
// work per output byte (reads of at least kMinXformRunBytes each, but for a
// last short band: see kMinXformRunBytes).
//
// Layouts the parent executes (anything else is refused; the worker sends it
// through the pipe instead):
//   contiguous: the strides are C order (dimensions of size 1 aside); the
//     region is read in pieces and byte-swapped (a big-endian array).
//   first dimension contiguous: rank >= 2, strides[0] == 1 (Fortran order, a
//     transposed matrix). Read in bands of `band_rows` indices of dimension
//     0: one run of band_rows elements per index of the other dimensions,
//     which the parent transposes (and swaps) into C-order rows.
#ifndef SAFEMODEL_CONVERTER_PROTOCOL_TENSOR_XFORM_H_
#define SAFEMODEL_CONVERTER_PROTOCOL_TENSOR_XFORM_H_

#include <cstdint>

#include "safemodel/status.h"

namespace safemodel::protocol {

// Rank of the view: every real tensor so far has rank <= 6 (a 3-D
// convolution's kernel is 5); the payload has a fixed size.
inline constexpr uint32_t kMaxXformRank = 8;
// The payload: { u64 region_offset, u64 region_length, u64 first, u32
// elem_size, u32 swap_unit, u32 rank, u32 reserved (0), u64 shape[8], i64
// strides[8] }, little-endian; dimensions beyond `rank` are 0.
inline constexpr uint64_t kTensorXformPayloadBytes = 40 + kMaxXformRank * 16;
// One band of a first-dimension-contiguous view is read into a buffer of at
// most this: the parent's memory for a transform is this constant, not the
// tensor (a 1 GiB Fortran array: 64 bands of 16 MiB).
inline constexpr uint64_t kXformBandBytes = 16ull << 20;
// Each read of a full band is at least this long (or the whole band in one
// read): fewer would cost the parent a system call per few elements. Views
// that cannot meet it go through the pipe. The last band of a tensor may be
// shorter (shape[0] % band_rows indices): at most row_elements short reads,
// once per tensor, after at least as many full-length ones.
inline constexpr uint64_t kMinXformRunBytes = 4096;

struct TensorXform {
  uint64_t region_offset = 0;  // the region: bytes of the input
  uint64_t region_length = 0;
  uint64_t first = 0;          // element index of element [0, ..., 0] within the region
  uint32_t elem_size = 0;      // 1, 2, 4, 8 or 16
  uint32_t swap_unit = 0;      // 0: little-endian already; 2, 4, 8: reverse each unit
  uint32_t rank = 0;           // 1..kMaxXformRank
  uint32_t reserved = 0;
  uint64_t shape[kMaxXformRank] = {};
  int64_t strides[kMaxXformRank] = {};  // in elements; may be 0 or negative
};

enum class XformLayout { kContiguous, kFirstDimContiguous };

// What CheckTensorXform proved, for executing the record.
struct XformPlan {
  XformLayout layout = XformLayout::kContiguous;
  uint64_t elements = 0;    // product of the shape (>= 1)
  uint64_t bytes = 0;       // elements x elem_size: the tensor's size
  uint64_t band_rows = 0;   // kFirstDimContiguous: indices of dimension 0 per band
  uint64_t row_elements = 0;  // kFirstDimContiguous: product of dimensions 1..rank-1
};

void EncodeTensorXform(const TensorXform& x, uint8_t out[kTensorXformPayloadBytes]);
TensorXform DecodeTensorXform(const uint8_t in[kTensorXformPayloadBytes]);

// Checks every field for an input of `input_size` bytes: the element size,
// the swap unit, the rank and the unused dimensions, the reserved word, the
// region inside the input, every element the view can reach inside the
// region (checked arithmetic, no overflow), and a layout the parent
// executes within kXformBandBytes and kMinXformRunBytes. Errors are
// kMalformed with the field and the rule. The worker calls it too, before
// choosing the record over the pipe.
Result<XformPlan> CheckTensorXform(const TensorXform& x, uint64_t input_size);

}  // namespace safemodel::protocol

#endif  // SAFEMODEL_CONVERTER_PROTOCOL_TENSOR_XFORM_H_
