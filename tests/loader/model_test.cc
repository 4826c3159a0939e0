// The parsed model's compact per-tensor parts (loader/model.h; Shape is
// tested with its template in inline_dims_test.cc): an ElementSource is a
// producer and its words or a held callable; an Origin is a fixed text or a
// teller asked only when a message needs the text.
#include "loader/model.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "tests/testing/allocation_counter.h"

namespace safemodel::loader {
namespace {

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
