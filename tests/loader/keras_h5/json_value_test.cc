// Untrusted JSON into Value trees: types, order, caps, Python's extensions.
#include "loader/keras_h5/json_value.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>

namespace safemodel::loader {
namespace {

TEST(ParseJson, BuildsTypedValuesInKeyOrder) {
  auto v = ParseJson(R"({"b": 1, "a": [true, null, 2.5, "s", -7], "c": {}})", "test");
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  ASSERT_TRUE(v->is_map());
  ASSERT_EQ(v->entries().size(), 3u);
  EXPECT_EQ(v->entries()[0].first, "b");
  EXPECT_EQ(v->entries()[1].first, "a");
  const Value& a = *v->Find("a");
  ASSERT_EQ(a.list().size(), 5u);
  EXPECT_EQ(a.list()[0].kind(), Value::Kind::kBool);
  EXPECT_TRUE(a.list()[1].is_null());
  EXPECT_EQ(a.list()[2].double_value(), 2.5);
  EXPECT_EQ(a.list()[3].string_value(), "s");
  EXPECT_EQ(a.list()[4].int_value(), -7);
}

TEST(ParseJson, AcceptsPythonNonFiniteFloatsOutsideStrings) {
  auto v = ParseJson(R"({"x": NaN, "y": [Infinity, -Infinity], "s": "NaN Infinity"})", "test");
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_TRUE(std::isnan(v->Find("x")->double_value()));
  EXPECT_EQ(v->Find("y")->list()[0].double_value(), INFINITY);
  EXPECT_EQ(v->Find("y")->list()[1].double_value(), -INFINITY);
  EXPECT_EQ(v->Find("s")->string_value(), "NaN Infinity");
}

TEST(ParseJson, LargeUnsignedBecomesDouble) {
  auto v = ParseJson("[18446744073709551615, 9223372036854775807]", "test");
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->list()[0].kind(), Value::Kind::kDouble);
  EXPECT_EQ(v->list()[1].int_value(), INT64_MAX);
}

TEST(ParseJson, RefusesDuplicateKeysBadSyntaxAndTrailingBytes) {
  EXPECT_EQ(ParseJson(R"({"a": 1, "a": 2})", "cfg").status().code(), StatusCode::kMalformed);
  EXPECT_EQ(ParseJson(R"({"a": })", "cfg").status().code(), StatusCode::kMalformed);
  EXPECT_EQ(ParseJson(R"({"a": 1} x)", "cfg").status().code(), StatusCode::kMalformed);
  EXPECT_EQ(ParseJson("\"\xff\"", "cfg").status().code(), StatusCode::kMalformed);
}

TEST(ParseJson, StopsAtTheDepthCapWithoutRecursing) {
  std::string ok(kMaxJsonDepth, '['), deep(100000, '[');
  ok += std::string(kMaxJsonDepth, ']');
  EXPECT_TRUE(ParseJson(ok, "cfg").ok());
  auto v = ParseJson(deep, "cfg");
  EXPECT_EQ(v.status().code(), StatusCode::kLimitExceeded);
  EXPECT_NE(v.status().message().find("nests deeper"), std::string::npos);
}

}  // namespace
}  // namespace safemodel::loader
