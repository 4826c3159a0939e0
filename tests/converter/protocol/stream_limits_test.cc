// The limits a worker's stream is held to (converter/protocol/stream_limits.h), the
// trimming the worker applies to stay inside them, and the in-place Value
// check the parent uses instead of a copy (wire::SanitizeValue).
#include "converter/protocol/stream_limits.h"

#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "proto/wire/wire.h"
#include "safemodel/limits.h"

namespace safemodel {
namespace {

TEST(StreamLimits, GrowWithTheInputAndStopAtTheFormatCaps) {
  const StreamLimits tiny = StreamLimitsFor(10);
  EXPECT_EQ(tiny.tensors, kBaseTensorCount);
  EXPECT_EQ(tiny.header_objects, kBaseObjectCount);
  EXPECT_EQ(tiny.header_bytes, kBaseHeaderBytes + 5);
  EXPECT_EQ(tiny.findings, kBaseFindingCount + 1);
  EXPECT_EQ(tiny.findings_bytes, kMaxFindingsTotalBytes);

  const StreamLimits mib = StreamLimitsFor(1 << 20);
  EXPECT_EQ(mib.tensors, kBaseTensorCount + (1 << 20) / kMinInputBytesPerTensor);
  EXPECT_EQ(mib.header_objects, kBaseObjectCount + (1 << 20) / kMinInputBytesPerObject);
  EXPECT_EQ(mib.header_bytes, kBaseHeaderBytes + (1 << 19));

  const StreamLimits huge = StreamLimitsFor(1ull << 50);
  EXPECT_EQ(huge.tensors, kMaxTensorCount);
  EXPECT_EQ(huge.header_objects, wire::kMaxParsedObjects);
  EXPECT_EQ(huge.header_bytes, kMaxHeaderBytes);
  EXPECT_EQ(huge.findings, wire::kMaxFindings);
  const StreamLimits max = StreamLimitsFor(UINT64_MAX);  // no overflow
  EXPECT_EQ(max.tensors, kMaxTensorCount);
  EXPECT_EQ(max.header_bytes, kMaxHeaderBytes);
}

Finding MakeFinding(size_t text) {
  Finding f;
  f.severity = Finding::Severity::kRefused;
  f.rule = "r";
  f.location = "l";
  f.message = std::string(text - 2, 'm');
  return f;
}

TEST(StreamLimits, TrimKeepsWhatFitsAndSaysHowManyWereLeftOut) {
  StreamLimits l = StreamLimitsFor(0);
  l.findings = 5;
  l.findings_bytes = 1000;
  std::vector<Finding> f(4, MakeFinding(100));
  TrimFindings(&f, l);
  EXPECT_EQ(f.size(), 4u) << "within both limits: unchanged";

  f.assign(9, MakeFinding(100));
  TrimFindings(&f, l);
  ASSERT_EQ(f.size(), 5u);
  EXPECT_EQ(f[4].rule, "worker.findings_truncated");
  EXPECT_NE(f[4].message.find("5 further finding(s)"), std::string::npos) << f[4].message;
  EXPECT_EQ(f[3].rule, "r");

  f.assign(3, MakeFinding(600));  // 1800 bytes: the first fits the budget, not two
  TrimFindings(&f, l);
  ASSERT_EQ(f.size(), 2u);
  EXPECT_EQ(f[1].rule, "worker.findings_truncated");
  EXPECT_NE(f[1].message.find("2 further"), std::string::npos);
}

// Whatever TrimFindings keeps passes the parent's check.
TEST(StreamLimits, TrimmedFindingsPassTheParentsCheck) {
  std::mt19937 rng(7);
  for (int round = 0; round < 200; ++round) {
    const StreamLimits l = StreamLimitsFor(rng() % 100000);
    std::vector<Finding> f(rng() % 400);
    for (Finding& x : f) x = MakeFinding(2 + rng() % 20000);
    TrimFindings(&f, l);
    google::protobuf::RepeatedPtrField<v1::Finding> proto;
    for (const Finding& x : f) wire::FindingToProto(x, proto.Add());
    ASSERT_TRUE(CheckFindingsBudget(proto, l).ok()) << CheckFindingsBudget(proto, l).ToString();
    ASSERT_TRUE(wire::CheckFindings(proto).ok());
  }
}

TEST(StreamLimits, TheParentRefusesOneFindingOrOneByteTooMany) {
  StreamLimits l = StreamLimitsFor(0);
  google::protobuf::RepeatedPtrField<v1::Finding> proto;
  for (uint64_t i = 0; i < l.findings; ++i) wire::FindingToProto(MakeFinding(10), proto.Add());
  EXPECT_TRUE(CheckFindingsBudget(proto, l).ok());
  wire::FindingToProto(MakeFinding(10), proto.Add());
  EXPECT_EQ(CheckFindingsBudget(proto, l).code(), StatusCode::kLimitExceeded);
  // 32 findings of 64 KiB of text each: exactly the total allowed.
  proto.Clear();
  for (int i = 0; i < 32; ++i) {
    v1::Finding* f = proto.Add();
    f->set_severity("note");
    f->set_rule("r");
    f->set_location("l");
    f->set_message(std::string(l.findings_bytes / 32 - 2, 'm'));
  }
  EXPECT_TRUE(CheckFindingsBudget(proto, l).ok());
  proto.Mutable(0)->mutable_message()->push_back('x');
  EXPECT_EQ(CheckFindingsBudget(proto, l).code(), StatusCode::kLimitExceeded);
}

// SanitizeValue gives exactly what the copy it replaces gave,
// ValueToProto(ValueFromProto(v)), or the same refusal. Random trees with
// unset kinds, null_value false, entries without values, unknown fields and
// bad UTF-8.
void RandomValue(std::mt19937& rng, v1::Value* v, int depth) {
  switch (rng() % (depth > 4 ? 7 : 10)) {
    case 0: break;  // kind not set
    case 1: v->set_null_value(rng() % 2 == 0); break;
    case 2: v->set_bool_value(rng() % 2 == 0); break;
    case 3: v->set_int_value(static_cast<int64_t>(rng())); break;
    case 4: v->set_double_value(static_cast<double>(rng()) / 7); break;
    case 5: v->set_string_value(rng() % 10 == 0 ? "bad \xff utf8" : "s" + std::to_string(rng() % 5)); break;
    case 6: v->set_bytes_value(std::string("\x00\xff", 2)); break;
    case 7:
    case 8: {
      v1::ListValue* list = v->mutable_list_value();
      for (uint32_t i = rng() % 4; i > 0; --i) RandomValue(rng, list->add_items(), depth + 1);
      break;
    }
    default: {
      v1::MapValue* map = v->mutable_map_value();
      for (uint32_t i = rng() % 4; i > 0; --i) {
        v1::MapEntry* e = map->add_entries();
        e->set_key("k" + std::to_string(rng() % 6));  // duplicates now and then
        if (rng() % 4 != 0) RandomValue(rng, e->mutable_value(), depth + 1);
      }
    }
  }
  if (rng() % 8 == 0) v->GetReflection()->MutableUnknownFields(v)->AddVarint(99, 1);
}

TEST(SanitizeValue, EqualsTheCopyItReplaces) {
  std::mt19937 rng(11);
  int accepted = 0, refused = 0;
  for (int round = 0; round < 3000; ++round) {
    v1::Value original;
    RandomValue(rng, &original, 0);
    auto copied = wire::ValueFromProto(original, "architecture");
    v1::Value in_place = original;
    Status s = wire::SanitizeValue(&in_place, "architecture");
    ASSERT_EQ(s.ok(), copied.ok()) << s.ToString() << " vs " << copied.status().ToString();
    if (!s.ok()) {
      EXPECT_EQ(s.code(), copied.status().code());
      ++refused;
      continue;
    }
    v1::Value expected;
    wire::ValueToProto(*copied, &expected);
    ASSERT_EQ(wire::SerializeDeterministic(in_place), wire::SerializeDeterministic(expected))
        << original.DebugString();
    ++accepted;
  }
  EXPECT_GT(accepted, 500);
  EXPECT_GT(refused, 100);
}

TEST(SanitizeValue, EnforcesDepthAndNodeCaps) {
  v1::Value deep;
  v1::Value* v = &deep;
  for (uint32_t i = 1; i < kMaxValueDepth; ++i) v = v->mutable_list_value()->add_items();
  v1::Value ok = deep;
  EXPECT_TRUE(wire::SanitizeValue(&ok, "a").ok());
  v->mutable_list_value()->add_items();
  EXPECT_EQ(wire::SanitizeValue(&deep, "a").code(), StatusCode::kLimitExceeded);

  v1::Value wide;
  auto* items = wide.mutable_list_value()->mutable_items();
  for (uint64_t i = 0; i < kMaxValueNodes; ++i) items->Add()->set_int_value(1);
  EXPECT_EQ(wire::SanitizeValue(&wide, "a").code(), StatusCode::kLimitExceeded);
  items->RemoveLast();
  EXPECT_TRUE(wire::SanitizeValue(&wide, "a").ok());
}

}  // namespace
}  // namespace safemodel
