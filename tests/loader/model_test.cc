// The parsed model's compact per-tensor parts (loader/model.h): Shape holds
// up to kInlineRank dimensions without an allocation and spills beyond; an
// ElementSource is a producer and its words or a held callable; an Origin is
// a fixed text or a teller asked only when a message needs the text.
#include "loader/model.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "tests/testing/allocation_counter.h"

namespace safemodel::loader {
namespace {

TEST(Shape, RanksUpToTheInlineLimitAllocateNothing) {
  for (size_t rank = 0; rank <= Shape::kInlineRank; ++rank) {
    std::vector<uint64_t> dims;
    for (size_t d = 0; d < rank; ++d) dims.push_back(d + 2);
    const uint64_t before = testing::AllocationCount();
    Shape s(std::span<const uint64_t>(dims.data(), dims.size()));
    Shape copy = s;
    Shape moved = std::move(copy);
    const uint64_t news = testing::AllocationCount() - before;
    EXPECT_EQ(news, 0u) << "rank " << rank;
    EXPECT_EQ(s.size(), rank);
    EXPECT_EQ(s, dims);
    EXPECT_EQ(moved, dims);
    EXPECT_EQ(moved.ToVector(), dims);
  }
}

TEST(Shape, AnEmptyShapeIsAScalar) {
  Shape s;
  EXPECT_TRUE(s.empty());
  EXPECT_EQ(s.size(), 0u);
  EXPECT_EQ(s.begin(), s.end());
  EXPECT_EQ(s, std::vector<uint64_t>{});
  Shape from_empty = std::vector<uint64_t>{};
  EXPECT_TRUE(from_empty.empty());
  EXPECT_EQ(std::span<const uint64_t>(s).size(), 0u);
}

TEST(Shape, ARankAboveTheInlineLimitSpillsAndKeepsEveryDimension) {
  std::vector<uint64_t> dims;
  for (size_t d = 0; d < Shape::kInlineRank + 3; ++d) dims.push_back(100 + d);
  Shape s = dims;
  ASSERT_EQ(s.size(), dims.size());
  for (size_t d = 0; d < dims.size(); ++d) EXPECT_EQ(s[d], dims[d]);
  Shape copy = s;
  EXPECT_EQ(copy, s);
  EXPECT_NE(copy.data(), s.data());  // a copy of its own, not a shared pointer
  Shape moved = std::move(copy);
  EXPECT_EQ(moved, dims);
  EXPECT_TRUE(copy.empty());  // NOLINT: moved-from is empty, by contract of this class
  // Assignments across the limit both ways, and onto itself.
  Shape small = {7};
  small = s;
  EXPECT_EQ(small, dims);
  small = Shape{1, 2};
  EXPECT_EQ(small, (std::vector<uint64_t>{1, 2}));
  Shape& alias = small;
  small = alias;
  EXPECT_EQ(small, (std::vector<uint64_t>{1, 2}));
  moved = std::move(moved);
  EXPECT_EQ(moved, dims);
}

TEST(ElementSource, AViewIsAPlainDescriptor) {
  const std::string bytes = "abcdefgh";
  const ByteView view = AsBytes(bytes);
  const uint64_t before = testing::AllocationCount();
  ElementSource source = ViewSource(view.subspan(2, 4), 2);
  ElementSource moved = std::move(source);
  EXPECT_EQ(testing::AllocationCount() - before, 0u);
  EXPECT_FALSE(source);  // NOLINT: moved-from
  ASSERT_TRUE(moved);
  Result<Elements> e = moved();
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->view.data(), view.data() + 2);
  EXPECT_EQ(e->view.size(), 4u);
  EXPECT_EQ(e->swap_unit, 2u);
  EXPECT_TRUE(e->strides.empty());
  EXPECT_EQ(e->offset, 0u);
}

TEST(ElementSource, AStridedViewAndACallableKeepTheirState) {
  const std::string bytes = "abcdef";
  ElementSource strided = ViewSource(AsBytes(bytes), 0, {1, 3}, 1);
  Result<Elements> e = strided();
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->strides, (std::vector<int64_t>{1, 3}));
  EXPECT_EQ(e->offset, 1u);

  int calls = 0;
  ElementSource counted = [&calls]() -> Result<Elements> {
    ++calls;
    return Status::Malformed("made on call " + std::to_string(calls));
  };
  ElementSource moved = std::move(counted);
  EXPECT_EQ(moved().status().message(), "made on call 1");
  EXPECT_EQ(moved().status().message(), "made on call 2");
  moved = nullptr;
  EXPECT_FALSE(moved);
}

class CountingTeller final : public OriginTeller {
 public:
  std::string Tell(uint64_t arg, std::string_view name) const override {
    ++calls;
    return "entry " + std::to_string(arg) + " of '" + std::string(name) + "'";
  }
  mutable int calls = 0;
};

TEST(Origin, ATellerIsAskedOnlyForTheText) {
  CountingTeller teller;
  Tensor t;
  t.name = "w";
  t.origin = Origin(&teller, 7);
  EXPECT_FALSE(t.origin.empty());
  EXPECT_EQ(teller.calls, 0);
  EXPECT_EQ(t.Where("unused"), "entry 7 of 'w'");
  EXPECT_EQ(teller.calls, 1);
  Tensor moved = std::move(t);
  EXPECT_EQ(moved.origin.Text(moved.name), "entry 7 of 'w'");
}

TEST(Origin, AFixedTextOrNoneAtAll) {
  Tensor t;
  t.name = "w";
  EXPECT_TRUE(t.origin.empty());
  EXPECT_EQ(t.Where("tensor 'w'"), "tensor 'w'");
  t.origin = "";  // an empty text is no origin, as the string was
  EXPECT_TRUE(t.origin.empty());
  t.origin = std::string("npy array");
  EXPECT_EQ(t.Where("tensor 'w'"), "npy array");
  Origin moved = std::move(t.origin);
  EXPECT_EQ(moved.Text("w"), "npy array");
}

TEST(Tensor, AnAliasNameIsAbsentUntilSet) {
  Tensor t;
  EXPECT_TRUE(t.alias_of.empty());
  EXPECT_EQ(t.alias_of.str(), "");
  t.alias_of = std::string("embed.weight");
  EXPECT_FALSE(t.alias_of.empty());
  EXPECT_EQ(t.alias_of, "embed.weight");
  OptionalName copy = t.alias_of;
  EXPECT_EQ(copy.str(), "embed.weight");
  Tensor moved = std::move(t);
  EXPECT_EQ(moved.alias_of.str(), "embed.weight");
  moved.alias_of = std::string();  // an empty name is none
  EXPECT_TRUE(moved.alias_of.empty());
}

TEST(Tensor, StaysCompact) {
  // The bytes per tensor the worker holds for a model of many small
  // tensors, beside a name longer than the string's inline capacity.
  EXPECT_LE(sizeof(Shape), 40u);
  EXPECT_LE(sizeof(ElementSource), 40u);
  EXPECT_LE(sizeof(Origin), 24u);
  EXPECT_LE(sizeof(OptionalName), 8u);
  EXPECT_LE(sizeof(Tensor), 160u);  // 168 with a vector shape, a heap closure and string origin
}

}  // namespace
}  // namespace safemodel::loader
