// InlineDims (loader/inline_dims.h), as both of its users instantiate it: a
// tensor's Shape (uint64 sizes, four inline) and the pickle records' Dims
// (int64 strides, three inline). Up to the inline limit nothing is
// allocated; past it the values get a block of their own, through copies,
// moves and assignments across the limit both ways (ASan checks the blocks).
#include "loader/inline_dims.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

#include "loader/model.h"
#include "loader/pickle/pickle_graph.h"
#include "tests/testing/allocation_counter.h"

namespace safemodel::loader {
namespace {

template <typename D>
class InlineDimsTest : public ::testing::Test {};
using Instantiations = ::testing::Types<Shape, pickle::Dims<int64_t>>;
TYPED_TEST_SUITE(InlineDimsTest, Instantiations);

// n distinct values of the array's type (negative ones where it is signed).
template <typename D>
std::vector<typename D::value_type> Values(size_t n, int64_t base) {
  std::vector<typename D::value_type> v;
  for (size_t i = 0; i < n; ++i) {
    v.push_back(static_cast<typename D::value_type>(std::is_signed_v<typename D::value_type>
                                                        ? -base - static_cast<int64_t>(i)
                                                        : base + static_cast<int64_t>(i)));
  }
  return v;
}

template <typename D>
bool HeldInline(const D& d) {
  const auto* p = reinterpret_cast<const char*>(d.data());
  const auto* self = reinterpret_cast<const char*>(&d);
  return p >= self && p < self + sizeof(d);
}

TYPED_TEST(InlineDimsTest, UpToTheInlineLimitNothingIsAllocated) {
  using D = TypeParam;
  for (size_t n = 0; n <= D::kInline; ++n) {
    const auto values = Values<D>(n, 2);
    const uint64_t before = testing::AllocationCount();
    D d(std::span<const typename D::value_type>(values.data(), values.size()));
    D copy = d;
    D moved = std::move(copy);
    D assigned;
    assigned = moved;
    const uint64_t news = testing::AllocationCount() - before;
    EXPECT_EQ(news, 0u) << "size " << n;
    EXPECT_EQ(d.size(), n);
    EXPECT_TRUE(HeldInline(d));
    EXPECT_EQ(d, values);
    EXPECT_EQ(moved, values);
    EXPECT_EQ(assigned.ToVector(), values);
  }
}

TYPED_TEST(InlineDimsTest, AnEmptyArrayHasNoValues) {
  using D = TypeParam;
  D d;
  EXPECT_TRUE(d.empty());
  EXPECT_EQ(d.size(), 0u);
  EXPECT_EQ(d.begin(), d.end());
  EXPECT_EQ(d, std::vector<typename D::value_type>{});
  D from_empty = std::vector<typename D::value_type>{};
  EXPECT_TRUE(from_empty.empty());
  EXPECT_EQ(d.span().size(), 0u);
}

TYPED_TEST(InlineDimsTest, PastTheLimitTheValuesGetABlockOfTheirOwn) {
  using D = TypeParam;
  D d;
  // Sizes across the limit both ways, in an order that takes every
  // transition (inline -> heap, heap -> heap, heap -> inline, -> empty).
  for (size_t n : {size_t{1}, D::kInline, D::kInline + 1, D::kInline + 6, size_t{2}, size_t{0},
                   D::kInline + 2}) {
    const auto values = Values<D>(n, 100);
    d = values;
    ASSERT_EQ(d.size(), n);
    for (size_t i = 0; i < n; ++i) EXPECT_EQ(d[i], values[i]);
    EXPECT_EQ(HeldInline(d), n <= D::kInline) << n;
    D copy(d);
    EXPECT_EQ(copy, d);
    if (n > D::kInline) {
      EXPECT_NE(copy.data(), d.data());  // a copy owns its values
    }
    D moved(std::move(copy));
    EXPECT_EQ(moved, values);
    EXPECT_TRUE(copy.empty());  // NOLINT: moved-from is empty, by contract
    D assigned = {typename D::value_type{7}};
    assigned = moved;
    D& same = assigned;
    assigned = same;  // self-assignment keeps the values
    EXPECT_EQ(assigned, values);
    assigned = std::move(moved);
    EXPECT_EQ(assigned, values);
    D& alias = assigned;
    assigned = std::move(alias);  // self-move keeps them too
    EXPECT_EQ(assigned, values);
  }
}

TEST(InlineDims, StaysSmall) {
  EXPECT_LE(sizeof(Shape), 40u);
  EXPECT_LE(sizeof(pickle::Dims<int64_t>), 32u);
}

}  // namespace
}  // namespace safemodel::loader
