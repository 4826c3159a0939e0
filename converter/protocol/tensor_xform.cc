#include "converter/protocol/tensor_xform.h"

#include <algorithm>
#include <string>

#include "proto/base/byte_reader.h"

namespace safemodel::protocol {

namespace {

// Wide enough for any sum of kMaxXformRank terms of (dimension - 1) x stride,
// each first bounded by the region's element count (< 2^64).
__extension__ using Int128 = __int128;

std::string N(uint64_t v) { return std::to_string(v); }

Status Bad(const std::string& what) { return Status::Malformed("a tensor transform " + what); }

// C order: each dimension's stride is the product of the later dimensions'
// sizes (a dimension of size 1 may have any stride: it is never stepped).
bool IsCContiguous(const TensorXform& x) {
  uint64_t expect = 1;
  for (uint32_t d = x.rank; d-- > 0;) {
    if (x.shape[d] == 1) continue;
    if (x.strides[d] < 0 || static_cast<uint64_t>(x.strides[d]) != expect) return false;
    expect *= x.shape[d];  // bounded by the element count, checked first
  }
  return true;
}

}  // namespace

void EncodeTensorXform(const TensorXform& x, uint8_t out[kTensorXformPayloadBytes]) {
  StoreLE(out, x.region_offset, 8);
  StoreLE(out + 8, x.region_length, 8);
  StoreLE(out + 16, x.first, 8);
  StoreLE(out + 24, x.elem_size, 4);
  StoreLE(out + 28, x.swap_unit, 4);
  StoreLE(out + 32, x.rank, 4);
  StoreLE(out + 36, x.reserved, 4);
  for (uint32_t d = 0; d < kMaxXformRank; ++d) {
    StoreLE(out + 40 + 8 * d, x.shape[d], 8);
    StoreLE(out + 40 + 8 * kMaxXformRank + 8 * d, static_cast<uint64_t>(x.strides[d]), 8);
  }
}

TensorXform DecodeTensorXform(const uint8_t in[kTensorXformPayloadBytes]) {
  TensorXform x;
  x.region_offset = LoadLE(in, 8);
  x.region_length = LoadLE(in + 8, 8);
  x.first = LoadLE(in + 16, 8);
  x.elem_size = static_cast<uint32_t>(LoadLE(in + 24, 4));
  x.swap_unit = static_cast<uint32_t>(LoadLE(in + 28, 4));
  x.rank = static_cast<uint32_t>(LoadLE(in + 32, 4));
  x.reserved = static_cast<uint32_t>(LoadLE(in + 36, 4));
  for (uint32_t d = 0; d < kMaxXformRank; ++d) {
    x.shape[d] = LoadLE(in + 40 + 8 * d, 8);
    x.strides[d] = static_cast<int64_t>(LoadLE(in + 40 + 8 * kMaxXformRank + 8 * d, 8));
  }
  return x;
}

Result<XformPlan> CheckTensorXform(const TensorXform& x, uint64_t input_size) {
  const uint32_t e = x.elem_size;
  if (e != 1 && e != 2 && e != 4 && e != 8 && e != 16) {
    return Bad("with element size " + N(e) + " (not 1, 2, 4, 8 or 16)");
  }
  if (x.swap_unit != 0 &&
      ((x.swap_unit != 2 && x.swap_unit != 4 && x.swap_unit != 8) || x.swap_unit > e || e % x.swap_unit != 0)) {
    return Bad("with swap unit " + N(x.swap_unit) + " for " + N(e) +
               "-byte elements (0, or 2, 4 or 8 dividing the element size)");
  }
  if (x.reserved != 0) return Bad("with its reserved word set");
  if (x.rank == 0 || x.rank > kMaxXformRank) {
    return Bad("of rank " + N(x.rank) + " (1 to " + N(kMaxXformRank) + ")");
  }
  for (uint32_t d = x.rank; d < kMaxXformRank; ++d) {
    if (x.shape[d] != 0 || x.strides[d] != 0) {
      return Bad("with dimension " + N(d) + " set beyond its rank " + N(x.rank));
    }
  }
  if (x.region_length == 0 || x.region_offset > input_size || x.region_length > input_size - x.region_offset) {
    return Bad("of region bytes " + N(x.region_offset) + " + " + N(x.region_length) + " outside the " +
               N(input_size) + "-byte input");
  }
  XformPlan plan;
  plan.elements = 1;
  for (uint32_t d = 0; d < x.rank; ++d) {
    if (x.shape[d] == 0) return Bad("with dimension " + N(d) + " of size 0 (no elements to read)");
    if (__builtin_mul_overflow(plan.elements, x.shape[d], &plan.elements)) {
      return Bad("whose element count overflows");
    }
  }
  if (__builtin_mul_overflow(plan.elements, static_cast<uint64_t>(e), &plan.bytes) ||
      plan.bytes > (uint64_t{1} << 62)) {
    return Bad("whose size in bytes overflows");
  }
  // The lowest and highest element index any multi-index reaches must be
  // inside the region.
  const uint64_t capacity = x.region_length / e;
  Int128 lo = x.first, hi = x.first;
  for (uint32_t d = 0; d < x.rank; ++d) {
    const Int128 span = static_cast<Int128>(x.shape[d] - 1) * x.strides[d];
    // The stride itself too: a dimension of size 1 spans nothing whatever
    // its stride, but the parent's walk still adds it once (and takes it
    // back), which must not overflow (review, 2026-12-05).
    const Int128 stride = x.strides[d];
    if (span > static_cast<Int128>(capacity) || -span > static_cast<Int128>(capacity) ||
        stride > static_cast<Int128>(capacity) || -stride > static_cast<Int128>(capacity)) {
      return Bad("whose stride " + std::to_string(x.strides[d]) + " of dimension " + N(d) +
                 " reaches outside its region of " + N(capacity) + " elements");
    }
    (span > 0 ? hi : lo) += span;
  }
  if (lo < 0 || hi >= static_cast<Int128>(capacity)) {
    return Bad("whose first element and strides reach outside its region of " + N(capacity) + " elements");
  }
  if (IsCContiguous(x)) {
    plan.layout = XformLayout::kContiguous;
    return plan;
  }
  if (x.rank < 2 || x.strides[0] != 1) {
    return Bad("of an unsupported layout (neither C order nor a first dimension of stride 1)");
  }
  plan.layout = XformLayout::kFirstDimContiguous;
  plan.row_elements = plan.elements / x.shape[0];
  const uint64_t row_bytes = plan.row_elements * e;
  if (row_bytes > kXformBandBytes) {
    return Bad("whose rows of dimensions 1.." + N(x.rank - 1) + " are " + N(row_bytes) +
               " bytes, over the band of " + N(kXformBandBytes));
  }
  plan.band_rows = std::min<uint64_t>(x.shape[0], kXformBandBytes / row_bytes);
  // A band's runs are adjacent, and read at once, only for a compact matrix.
  const bool one_read = x.rank == 2 && plan.band_rows == x.shape[0] &&
                        x.strides[1] == static_cast<int64_t>(x.shape[0]);
  if (plan.band_rows * e < kMinXformRunBytes && !one_read) {
    return Bad("whose reads would be " + N(plan.band_rows * e) + " bytes each (under the minimum of " +
               N(kMinXformRunBytes) + ")");
  }
  return plan;
}

}  // namespace safemodel::protocol
