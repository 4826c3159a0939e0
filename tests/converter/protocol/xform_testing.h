// A TENSOR_XFORM record for tests (converter/protocol/tensor_xform.h): the
// protocol's, the parent's transform and the worker-stream tests build the
// same Fortran-order records.
#ifndef SAFEMODEL_TESTS_CONVERTER_PROTOCOL_XFORM_TESTING_H_
#define SAFEMODEL_TESTS_CONVERTER_PROTOCOL_XFORM_TESTING_H_

#include <cstdint>
#include <vector>

#include "converter/protocol/tensor_xform.h"

namespace safemodel::testing {

// A Fortran-order array (strides 1, d0, d0*d1, ...) of `elem`-byte elements,
// byte-swapped by `swap` units, whose region starts at byte `offset` of the
// input and holds exactly its elements.
inline protocol::TensorXform FortranAt(uint64_t offset, uint32_t elem, uint32_t swap,
                                       const std::vector<uint64_t>& shape) {
  protocol::TensorXform x;
  x.region_offset = offset;
  x.elem_size = elem;
  x.swap_unit = swap;
  x.rank = static_cast<uint32_t>(shape.size());
  int64_t stride = 1;
  for (uint32_t d = 0; d < x.rank; ++d) {
    x.shape[d] = shape[d];
    x.strides[d] = stride;
    stride *= static_cast<int64_t>(shape[d]);
  }
  x.region_length = static_cast<uint64_t>(stride) * elem;
  return x;
}

}  // namespace safemodel::testing

#endif  // SAFEMODEL_TESTS_CONVERTER_PROTOCOL_XFORM_TESTING_H_
