// The value-side helpers of the graph conversion: the C-contiguous strides
// that both the torch handlers and the emission derive from a shape.
#include "loader/pickle/pickle_tree.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <optional>
#include <vector>

namespace safemodel::loader::pickle {
namespace {

std::optional<std::vector<int64_t>> Strides(std::vector<uint64_t> shape) {
  return CContiguousStrides(shape);
}

TEST(CContiguousStrides, LastDimensionOneEachOtherTheProductAfterIt) {
  EXPECT_EQ(Strides({2, 3, 4}), (std::vector<int64_t>{12, 4, 1}));
  EXPECT_EQ(Strides({7}), (std::vector<int64_t>{1}));
  EXPECT_EQ(Strides({}), std::vector<int64_t>{});  // a scalar: no strides
}

// torch's rule for an empty dimension: it counts as 1 in the products.
TEST(CContiguousStrides, ASizeZeroCountsAsOne) {
  EXPECT_EQ(Strides({0, 5}), (std::vector<int64_t>{5, 1}));
  EXPECT_EQ(Strides({3, 0, 2}), (std::vector<int64_t>{2, 2, 1}));
}

// A product past int64, the whole shape's included, has no C-contiguous
// strides: the handlers then keep the strides the file states.
TEST(CContiguousStrides, AProductPastInt64HasNone) {
  EXPECT_EQ(Strides({uint64_t{1} << 32, uint64_t{1} << 31}), std::nullopt);
  EXPECT_EQ(Strides({uint64_t{1} << 63}), std::nullopt);
  EXPECT_EQ(Strides({2, uint64_t{1} << 62}), std::nullopt);
  EXPECT_EQ(Strides({1, uint64_t{1} << 62}), (std::vector<int64_t>{int64_t{1} << 62, 1}));
}

// The check without the vector agrees with the strides made.
TEST(CContiguousStrides, IsCContiguousAgreesWithTheStridesMade) {
  const std::vector<uint64_t> shape = {3, 0, 2};
  EXPECT_TRUE(IsCContiguous(shape, std::vector<int64_t>{2, 2, 1}));
  EXPECT_FALSE(IsCContiguous(shape, std::vector<int64_t>{2, 1, 1}));
  EXPECT_FALSE(IsCContiguous(shape, std::vector<int64_t>{2, 1}));  // rank differs
  const std::vector<uint64_t> empty;
  EXPECT_TRUE(IsCContiguous(empty, std::vector<int64_t>{}));
  const std::vector<uint64_t> huge = {2, uint64_t{1} << 62};
  EXPECT_FALSE(IsCContiguous(huge, std::vector<int64_t>{int64_t{1} << 62, 1}));  // past int64
}

}  // namespace
}  // namespace safemodel::loader::pickle
