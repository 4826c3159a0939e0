// The .npy array description (format versions 1.0, 2.0, 3.0): magic,
// version, header length and the header dict, read into an NpyHeader. A
// leaf: it knows nothing of archives or pickles; the .npy and .npz parsers
// (npy.h) and the pickle scanners build on it.
//
// The header is a Python dict literal ({'descr': '<f4', 'fortran_order':
// False, 'shape': (3, 4), }). numpy reads it with ast.literal_eval; here a
// small parser accepts exactly that grammar (strings, bools, non-negative
// integers, tuples, the three keys once each) and nothing else. Nothing is
// evaluated. Acceptance is never looser than numpy's: at most
// kMaxNpyHeaderChars characters, Python 2 `2L` suffixes only in 1.0/2.0
// headers (numpy filters them there and nowhere else), and shapes whose
// dimensions fit signed 64-bit sizes (ElementCount).
//
// Worst case: O(h) for a header of h characters (at most kMaxNpyHeaderChars).
//
// Trust: the bytes are untrusted; every read is bounds-checked.
#ifndef SAFEMODEL_LOADER_NUMPY_NPY_HEADER_H_
#define SAFEMODEL_LOADER_NUMPY_NPY_HEADER_H_

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "safemodel/dtype.h"
#include "safemodel/status.h"

#include "loader/model.h"
#include "proto/base/byte_reader.h"

namespace safemodel::loader {

// The first bytes of every .npy image.
inline constexpr std::string_view kNpyMagic = "\x93NUMPY";

// numpy refuses headers longer than 10,000 characters (decoded: latin1 for
// versions 1.0 and 2.0, UTF-8 for 3.0) unless allow_pickle is given, so no
// file np.load reads by default has more; neither do we.
inline constexpr uint64_t kMaxNpyHeaderChars = 10'000;
// The most bytes such a header can take (4-byte UTF-8 characters).
inline constexpr uint64_t kMaxNpyHeaderBytes = 4 * kMaxNpyHeaderChars;

struct NpyHeader {
  std::string descr;  // as written, e.g. "<f4"
  DType dtype = DType::kInvalid;
  uint32_t swap_unit = 0;  // > 1 for big-endian multi-byte data
  bool is_object = false;  // descr 'O': the data is a pickle
  bool fortran_order = false;
  std::vector<uint64_t> shape;
  uint64_t data_offset = 0;  // bytes from the start of the .npy to the data
  uint64_t data_bytes = 0;   // product(shape) * itemsize (0 for object arrays)
};

// Parses the magic, version, header length and header dict of a .npy image
// (only the leading bytes are needed). Object arrays parse successfully with
// is_object set: what to do with them is the caller's decision.
Result<NpyHeader> ParseNpyHeader(ByteView bytes, std::string_view where);

// Element layout of an array's data: swap unit and strides for Fortran order.
Elements NpyElements(const NpyHeader& header, ByteView data);
// The same from the few fields it reads.
Elements NpyElements(uint32_t swap_unit, bool fortran_order, std::span<const uint64_t> shape,
                     ByteView data);

}  // namespace safemodel::loader

#endif  // SAFEMODEL_LOADER_NUMPY_NPY_HEADER_H_
