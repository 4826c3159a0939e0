// The TENSOR_XFORM record (converter/protocol/tensor_xform.h): its encoding,
// and CheckTensorXform refusing every field a hostile worker could set
// wrong, each with its own message, and accepting the layouts the parent
// executes.
#include "converter/protocol/tensor_xform.h"

#include <gtest/gtest.h>

#include "tests/converter/protocol/xform_testing.h"

#include <cstdint>
#include <functional>
#include <limits>
#include <string>

namespace safemodel::protocol {
namespace {

constexpr uint64_t kInput = 1 << 20;

// A (256, 64) float32 array in Fortran order at byte 128 of the input.
TensorXform Fortran() { return testing::FortranAt(128, 4, 4, {256, 64}); }

TEST(TensorXform, EncodesEveryFieldLittleEndian) {
  TensorXform x = Fortran();
  x.first = 0x0102030405060708ull;
  x.rank = 8;
  for (uint32_t d = 0; d < kMaxXformRank; ++d) {
    x.shape[d] = 1000 + d;
    x.strides[d] = -static_cast<int64_t>(d) - 1;
  }
  uint8_t bytes[kTensorXformPayloadBytes];
  EncodeTensorXform(x, bytes);
  EXPECT_EQ(bytes[0], 128);
  EXPECT_EQ(bytes[16], 0x08);
  EXPECT_EQ(bytes[23], 0x01);
  const TensorXform y = DecodeTensorXform(bytes);
  EXPECT_EQ(y.region_offset, x.region_offset);
  EXPECT_EQ(y.region_length, x.region_length);
  EXPECT_EQ(y.first, x.first);
  EXPECT_EQ(y.elem_size, x.elem_size);
  EXPECT_EQ(y.swap_unit, x.swap_unit);
  EXPECT_EQ(y.rank, x.rank);
  EXPECT_EQ(y.reserved, 0u);
  for (uint32_t d = 0; d < kMaxXformRank; ++d) {
    EXPECT_EQ(y.shape[d], x.shape[d]);
    EXPECT_EQ(y.strides[d], x.strides[d]);
  }
}

TEST(TensorXform, AcceptsFortranOrderAndPlansItsBands) {
  auto plan = CheckTensorXform(Fortran(), kInput);
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  EXPECT_EQ(plan->layout, XformLayout::kFirstDimContiguous);
  EXPECT_EQ(plan->elements, 256u * 64);
  EXPECT_EQ(plan->bytes, 256u * 64 * 4);
  EXPECT_EQ(plan->row_elements, 64u);
  EXPECT_EQ(plan->band_rows, 256u);  // the whole array fits one band
}

TEST(TensorXform, AcceptsABigEndianCOrderArray) {
  TensorXform x = Fortran();
  x.strides[0] = 64;
  x.strides[1] = 1;
  auto plan = CheckTensorXform(x, kInput);
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  EXPECT_EQ(plan->layout, XformLayout::kContiguous);
  // A dimension of size 1 may have any stride.
  x.shape[0] = 1;
  x.strides[0] = 12345;
  x.shape[1] = 16384;
  plan = CheckTensorXform(x, kInput);
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  EXPECT_EQ(plan->layout, XformLayout::kContiguous);
}

TEST(TensorXform, BandsHoldAtMostTheBandAndReadAtLeastTheMinimum) {
  TensorXform x = Fortran();
  x.region_offset = 0;
  x.shape[0] = 1 << 20;  // 4 MiB per column, 256 MiB in all
  x.strides[1] = 1 << 20;
  x.region_length = (uint64_t{1} << 20) * 64 * 4;
  auto plan = CheckTensorXform(x, x.region_length);
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  EXPECT_EQ(plan->band_rows * plan->row_elements * 4, kXformBandBytes);
  EXPECT_GE(plan->band_rows * 4, kMinXformRunBytes);
}

// Each case breaks one field of a valid record; the message names it.
struct BadCase {
  const char* name;
  std::function<void(TensorXform&)> breaks;
  const char* message;
};

TEST(TensorXform, RefusesEveryBadFieldWithItsOwnMessage) {
  const BadCase cases[] = {
      {"element size 3", [](TensorXform& x) { x.elem_size = 3; }, "element size 3 (not 1, 2, 4, 8 or 16)"},
      {"element size 0", [](TensorXform& x) { x.elem_size = 0; }, "element size 0 (not"},
      {"element size 32", [](TensorXform& x) { x.elem_size = 32; }, "element size 32 (not"},
      {"swap unit 3", [](TensorXform& x) { x.swap_unit = 3; }, "swap unit 3 for 4-byte elements"},
      {"swap unit 1", [](TensorXform& x) { x.swap_unit = 1; }, "swap unit 1 for 4-byte elements"},
      {"swap unit 8 of a 4-byte element", [](TensorXform& x) { x.swap_unit = 8; }, "swap unit 8 for 4-byte"},
      {"a swap of 1-byte elements",
       [](TensorXform& x) {
         x.elem_size = 1;
         x.swap_unit = 2;
       },
       "swap unit 2 for 1-byte elements"},
      {"swap unit 16",
       [](TensorXform& x) {
         x.elem_size = 16;
         x.swap_unit = 16;
       },
       "swap unit 16 for 16-byte elements"},
      {"reserved", [](TensorXform& x) { x.reserved = 1; }, "reserved word set"},
      {"rank 0", [](TensorXform& x) { x.rank = 0; }, "of rank 0 (1 to 8)"},
      {"rank 9", [](TensorXform& x) { x.rank = 9; }, "of rank 9 (1 to 8)"},
      {"a shape beyond the rank", [](TensorXform& x) { x.shape[2] = 1; }, "dimension 2 set beyond its rank 2"},
      {"a stride beyond the rank", [](TensorXform& x) { x.strides[7] = -1; },
       "dimension 7 set beyond its rank 2"},
      {"an empty region", [](TensorXform& x) { x.region_length = 0; }, "of region bytes 128 + 0 outside"},
      {"a region past the end", [](TensorXform& x) { x.region_offset = kInput - 100; },
       "outside the 1048576-byte input"},
      {"a region starting past the end", [](TensorXform& x) { x.region_offset = kInput + 1; },
       "outside the 1048576-byte input"},
      {"offset + length wrapping", [](TensorXform& x) { x.region_offset = ~0ull - 3; },
       "outside the 1048576-byte input"},
      {"a length wrapping", [](TensorXform& x) { x.region_length = ~0ull - 3; },
       "outside the 1048576-byte input"},
      {"a dimension of size 0", [](TensorXform& x) { x.shape[1] = 0; }, "dimension 1 of size 0"},
      {"an element count overflowing",
       [](TensorXform& x) {
         x.shape[0] = uint64_t{1} << 40;
         x.shape[1] = uint64_t{1} << 30;
       },
       "element count overflows"},
      {"a size overflowing",
       [](TensorXform& x) {
         x.elem_size = 16;
         x.swap_unit = 8;
         x.shape[0] = uint64_t{1} << 31;
         x.shape[1] = uint64_t{1} << 31;
       },
       "size in bytes overflows"},
      {"a stride reaching past the region", [](TensorXform& x) { x.strides[1] = 257; },
       "reach outside its region of 16384 elements"},
      {"a huge stride", [](TensorXform& x) { x.strides[1] = std::numeric_limits<int64_t>::max(); },
       "stride 9223372036854775807 of dimension 1 reaches outside"},
      {"a huge negative stride", [](TensorXform& x) { x.strides[1] = std::numeric_limits<int64_t>::min(); },
       "stride -9223372036854775808 of dimension 1 reaches outside"},
      // A dimension of size 1 spans nothing, but the parent's walk adds its
      // stride once: a huge one would overflow there (review, 2026-12-05).
      {"a huge stride on a dimension of size 1",
       [](TensorXform& x) {
         x.rank = 3;
         x.shape[1] = 32;
         x.strides[1] = 256;
         x.shape[2] = 1;
         x.strides[2] = std::numeric_limits<int64_t>::max();
       },
       "stride 9223372036854775807 of dimension 2 reaches outside"},
      {"a huge negative stride on a dimension of size 1",
       [](TensorXform& x) {
         x.rank = 3;
         x.shape[1] = 32;
         x.strides[1] = 256;
         x.shape[2] = 1;
         x.strides[2] = std::numeric_limits<int64_t>::min();
       },
       "stride -9223372036854775808 of dimension 2 reaches outside"},
      {"a negative stride from element 0", [](TensorXform& x) { x.strides[1] = -256; },
       "reach outside its region"},
      {"a first element past the region", [](TensorXform& x) { x.first = 1; }, "reach outside its region"},
      {"a first element far past it", [](TensorXform& x) { x.first = ~0ull; }, "reach outside its region"},
      {"a permutation",
       [](TensorXform& x) {
         x.strides[0] = 2;
         x.strides[1] = 512;
         x.shape[1] = 32;
       },
       "unsupported layout"},
      {"a strided vector",
       [](TensorXform& x) {
         x.rank = 1;
         x.shape[1] = 0;
         x.strides[1] = 0;
         x.shape[0] = 100;
         x.strides[0] = 3;
       },
       "unsupported layout"},
      {"rows over the band",
       [](TensorXform& x) {
         x.region_offset = 0;
         x.region_length = kInput;
         x.elem_size = 1;
         x.swap_unit = 0;
         x.shape[0] = 2;
         x.shape[1] = 1 << 25;  // a zero stride (torch's expand) repeats one column
         x.strides[1] = 0;
       },
       "are 33554432 bytes, over the band of 16777216"},
      {"reads under the minimum",
       [](TensorXform& x) {
         // A (16, 4096) float32 slice of a (256, 4096) Fortran array: runs of 64 bytes.
         x.region_offset = 0;
         x.region_length = kInput;
         x.shape[0] = 16;
         x.shape[1] = 4096;
         x.strides[1] = 64;
       },
       "reads would be 64 bytes each (under the minimum of 4096)"},
  };
  for (const BadCase& c : cases) {
    SCOPED_TRACE(c.name);
    TensorXform x = Fortran();
    c.breaks(x);
    auto plan = CheckTensorXform(x, kInput);
    ASSERT_FALSE(plan.ok());
    EXPECT_EQ(plan.status().code(), StatusCode::kMalformed);
    EXPECT_NE(plan.status().message().find(c.message), std::string::npos) << plan.status().message();
    EXPECT_EQ(plan.status().message().rfind("a tensor transform ", 0), 0u) << plan.status().message();
  }
}

// A compact matrix whose whole band is one read may have short columns.
TEST(TensorXform, ShortColumnsAreAcceptedWhenTheBandIsOneRead) {
  TensorXform x = Fortran();
  x.region_length = kInput - 128;
  x.shape[0] = 16;
  x.shape[1] = 4096;
  x.strides[1] = 16;
  auto plan = CheckTensorXform(x, kInput);
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  EXPECT_EQ(plan->band_rows, 16u);
}

}  // namespace
}  // namespace safemodel::protocol
