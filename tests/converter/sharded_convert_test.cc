// A sharded Hugging Face checkpoint as one unit (safemodel/sharded_convert.h)
// and its output opened as one model (safemodel/sharded.h), bit-exact
// against torch; the strict reading of both indexes.
#include "safemodel/sharded_convert.h"

#include <unistd.h>

#include <gtest/gtest.h>

#include <filesystem>

#include <nlohmann/json.hpp>

#include "loader/hf_index/hf_index.h"
#include "proto/digest.h"
#include "safemodel/sharded.h"
#include "tests/testing/test_util.h"

namespace safemodel {
namespace {

namespace fs = std::filesystem;
using testing::ReadFile;

// The cap the public header documents is the worker's.
static_assert(kMaxHfIndexBytes == loader::kMaxHfIndexBytes);
using testing::TempDir;
using testing::WriteFile;

std::string Generator() { return std::string(SAFEMODEL_SOURCE_DIR) + "/tests/converter/make_hf_sharded.py"; }

// Writes the checkpoint into `dir`; false (the test skips) without torch.
bool MakeCheckpoint(const std::string& dir, const std::string& mode = "clean") {
  if (!testing::PythonHas({"torch"})) return false;
  std::string out;
  EXPECT_EQ(testing::RunPython(Generator(), {dir, mode}, &out), 0) << out;
  return true;
}

ConvertOptions Fast() {
  ConvertOptions o;
  o.sync_output = false;
  o.timeout_ms = 60'000;
  return o;
}

std::string Sha256Hex(std::span<const std::byte> bytes) {
  return ToHex(Sha256(ByteView(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size())));
}

// Opens the converted unit's index and checks it against the generator's
// expected.json: three shards, every digest, every tensor's shape and SHA-256.
void ExpectConvertedAsGenerated(const std::string& out_index, const TempDir& in) {
  Result<ShardedModel> m = ShardedModel::Open(out_index);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->shard_count(), 3u);
  EXPECT_TRUE(m->Verify().ok());
  const nlohmann::json expected = nlohmann::json::parse(ReadFile(in.File("expected.json")));
  ASSERT_EQ(m->tensor_names().size(), expected.size());
  for (const auto& [name, e] : expected.items()) {
    const TensorInfo* t = m->Find(name);
    ASSERT_NE(t, nullptr) << name;
    EXPECT_EQ(t->shape, e["shape"].get<std::vector<uint64_t>>()) << name;
    EXPECT_EQ(Sha256Hex(m->Data(name)), e["sha256"]) << name;
  }
}

TEST(ShardedConvert, ACheckpointOpensAsOneModelBitExactAgainstTorch) {
  TempDir in, out;
  if (!MakeCheckpoint(in.path())) GTEST_SKIP() << "no torch in /usr/bin/python3";
  const std::string index = in.File("pytorch_model.bin.index.json");
  ASSERT_TRUE(IsShardedCheckpointIndex(index));
  const std::string out_index = ShardedOutputIndexName(out.File("pytorch_model.bin.index.json"));
  EXPECT_EQ(fs::path(out_index).filename(), "pytorch_model.bin.safemodel.index.json");
  const ConvertReport r = ConvertShardedCheckpoint(index, out_index, Fast(), ConvertFile);
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  EXPECT_EQ(r.source_format, "hf_sharded/pytorch");
  EXPECT_EQ(r.tensor_count, 7u);
  Result<ShardedCheckpointIndex> read = ReadShardedCheckpointIndex(index, Fast(), ConvertFile);
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  EXPECT_EQ(read->shards.size(), 3u);
  EXPECT_EQ(read->weight_map.size(), 7u);
  EXPECT_EQ(r.input_sha256, *ShardedCheckpointSha256(index, read->shards));
  ExpectConvertedAsGenerated(out_index, in);
  Result<ShardedModel> m = ShardedModel::Open(out_index);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->Find("absent"), nullptr);
  EXPECT_TRUE(m->Data("absent").empty());
}

// A model.safetensors.index.json with model-0000K-of-00003.safetensors
// shards (written by numpy alone) is one unit too, every tensor bit-exact.
TEST(ShardedConvert, ASafetensorsCheckpointIsOneUnitBitExactAgainstNumpy) {
  if (!testing::PythonHas({"numpy"})) GTEST_SKIP() << "no numpy in /usr/bin/python3";
  TempDir in, out;
  std::string log;
  ASSERT_EQ(testing::RunPython(Generator(), {in.path(), "safetensors"}, &log), 0) << log;
  const std::string index = in.File("model.safetensors.index.json");
  ASSERT_TRUE(IsShardedCheckpointIndex(index));
  const std::string out_index = ShardedOutputIndexName(out.File("model.safetensors.index.json"));
  EXPECT_EQ(fs::path(out_index).filename(), "model.safetensors.safemodel.index.json");
  const ConvertReport r = ConvertShardedCheckpoint(index, out_index, Fast(), ConvertFile);
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  EXPECT_EQ(r.source_format, "hf_sharded/safetensors");
  EXPECT_EQ(r.tensor_count, 8u);
  for (int i = 1; i <= 3; ++i) {
    EXPECT_TRUE(testing::Exists(out.File("model-0000" + std::to_string(i) + "-of-00003.safetensors.safemodel")));
  }
  ExpectConvertedAsGenerated(out_index, in);
}

TEST(ShardedConvert, AShardThatCarriesCodeRefusesTheUnitAndLeavesNothing) {
  TempDir in, out;
  if (!MakeCheckpoint(in.path(), "malicious")) GTEST_SKIP() << "no torch in /usr/bin/python3";
  const ConvertReport r = ConvertShardedCheckpoint(in.File("pytorch_model.bin.index.json"),
                                                   out.File("m.safemodel.index.json"), Fast(), ConvertFile);
  EXPECT_EQ(r.status.code(), StatusCode::kRefused) << r.status.ToString();
  EXPECT_NE(r.status.message().find("pytorch_model-00002-of-00003.bin"), std::string::npos);
  EXPECT_EQ(r.input_sha256.size(), 64u);
  EXPECT_EQ(out.List(), std::vector<std::string>{}) << "a refused unit left outputs";
}

TEST(ShardedConvert, AShardWithATensorTheIndexDoesNotMapFailsTheUnit) {
  TempDir in, out;
  if (!MakeCheckpoint(in.path(), "extra_tensor")) GTEST_SKIP() << "no torch in /usr/bin/python3";
  const ConvertReport r = ConvertShardedCheckpoint(in.File("pytorch_model.bin.index.json"),
                                                   out.File("m.safemodel.index.json"), Fast(), ConvertFile);
  EXPECT_EQ(r.status.code(), StatusCode::kMalformed) << r.status.ToString();
  EXPECT_NE(r.status.message().find("unlisted"), std::string::npos) << r.status.ToString();
  EXPECT_EQ(out.List(), std::vector<std::string>{});
}

// The HF index is untrusted: the worker reads it (this process never
// parses it), and anything odd is refused before any shard is opened. One
// case per rule, each through the sandboxed worker.
TEST(ShardedConvert, TheCheckpointIndexIsReadStrictly) {
  TempDir in, out;
  WriteFile(in.File("a.bin"), "not read");
  struct Case {
    std::string what, text;
    StatusCode code;
    std::string words;
  };
  const StatusCode kMal = StatusCode::kMalformed;
  const std::vector<Case> cases = {
      {"duplicate key", R"({"weight_map": {"x": "a.bin", "x": "a.bin"}})", kMal, "twice"},
      {"duplicate top key", R"({"weight_map": {"x": "a.bin"}, "weight_map": {"y": "a.bin"}})", kMal, "twice"},
      {"duplicate nested key", R"({"weight_map": {"x": "a.bin"}, "metadata": {"k": 1, "k": 2}})", kMal, "twice"},
      {"dot dot", R"({"weight_map": {"x": ".."}})", kMal, "plain file name"},
      {"dot dot slash", R"({"weight_map": {"x": "../a.bin"}})", kMal, "plain file name"},
      {"slash", R"({"weight_map": {"x": "sub/a.bin"}})", kMal, "plain file name"},
      {"absolute", R"({"weight_map": {"x": "/etc/passwd"}})", kMal, "plain file name"},
      {"backslash", R"({"weight_map": {"x": "..\\a.bin"}})", kMal, "plain file name"},
      {"control char", R"({"weight_map": {"x": "a\u0001.bin"}})", kMal, "plain file name"},
      {"NUL", R"({"weight_map": {"x": "a\u0000.bin"}})", kMal, "plain file name"},
      {"empty name", R"({"weight_map": {"x": ""}})", kMal, "plain file name"},
      {"dot", R"({"weight_map": {"x": "."}})", kMal, "plain file name"},
      {"not a string", R"({"weight_map": {"x": 3}})", kMal, "file name string"},
      {"non-object weight_map", R"({"weight_map": ["a.bin"]})", kMal, "not an object"},
      {"no map", R"({"metadata": {}})", kMal, "no \"weight_map\""},
      {"empty map", R"({"weight_map": {}})", kMal, "empty"},
      {"itself", R"({"weight_map": {"x": "m.bin.index.json"}})", kMal, "names itself"},
      {"too deep", R"({"weight_map": {"x": "a.bin"}, "m": [[[[[[[[[[1]]]]]]]]]]})", StatusCode::kLimitExceeded,
       "nests deeper"},
      {"not json", R"({"weight_map": {"x": "a.bin")", kMal, "not valid JSON"},
      {"not utf-8", "{\"weight_map\": {\"x\": \"a\xff.bin\"}}", kMal, "not valid JSON"},
      {"array", R"([1, 2])", StatusCode::kUnsupported, "unrecognised"},
      {"a pickle", std::string("\x80\x02}q\x00.", 6), kMal, "not a checkpoint index"},
  };
  for (const Case& c : cases) {
    WriteFile(in.File("m.bin.index.json"), c.text);
    Result<ShardedCheckpointIndex> read = ReadShardedCheckpointIndex(in.File("m.bin.index.json"), Fast(), ConvertFile);
    EXPECT_EQ(read.status().code(), c.code) << c.what << ": " << read.status().ToString();
    EXPECT_NE(read.status().message().find(c.words), std::string::npos) << c.what << ": " << read.status().ToString();
    const ConvertReport r = ConvertShardedCheckpoint(in.File("m.bin.index.json"), out.File("o.safemodel.index.json"),
                                                     Fast(), ConvertFile);
    EXPECT_EQ(r.status.code(), c.code) << c.what << ": " << r.status.ToString();
    EXPECT_EQ(out.List(), std::vector<std::string>{}) << c.what;
  }
  // Over the size cap: refused from its size before a worker starts (the
  // worker's own check is tests/loader/hf_index's), unread (a sparse file
  // after its first byte).
  WriteFile(in.File("big.bin.index.json"), "{");
  fs::resize_file(in.File("big.bin.index.json"), kMaxHfIndexBytes + 1);
  Result<ShardedCheckpointIndex> big = ReadShardedCheckpointIndex(in.File("big.bin.index.json"), Fast(), ConvertFile);
  EXPECT_EQ(big.status().code(), StatusCode::kLimitExceeded) << big.status().ToString();
  EXPECT_NE(big.status().message().find("over the limit"), std::string::npos) << big.status().ToString();
  fs::remove(in.File("big.bin.index.json"));
  // A link is not followed.
  fs::create_symlink(in.File("a.bin"), in.File("l.bin.index.json"));
  EXPECT_EQ(ReadShardedCheckpointIndex(in.File("l.bin.index.json"), Fast(), ConvertFile).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_TRUE(IsShardedCheckpointIndex("x/model.safetensors.index.json"));
  EXPECT_FALSE(IsShardedCheckpointIndex("x/model.index.json"));
}

// Given to safe-convert (ConvertFile) alone, an index would become a
// .safemodel with no tensors: refused, pointing at the unit conversion.
TEST(ShardedConvert, AnIndexAloneIsNotConverted) {
  TempDir in, out;
  WriteFile(in.File("m.bin.index.json"), R"({"weight_map": {"x": "a.bin"}})");
  const ConvertReport r = ConvertFile(in.File("m.bin.index.json"), out.File("m.safemodel"), Fast());
  EXPECT_EQ(r.status.code(), StatusCode::kUnsupported) << r.status.ToString();
  EXPECT_NE(r.status.message().find("safe-convert batch"), std::string::npos) << r.status.ToString();
  EXPECT_NE(r.status.message().find("ConvertShardedCheckpoint"), std::string::npos);
  EXPECT_EQ(r.source_format, "hf_index");
  EXPECT_EQ(out.List(), std::vector<std::string>{});
}

// What the worker says about the index is in the unit's report.
TEST(ShardedConvert, TheIndexFindingsAreInTheUnitReport) {
  TempDir in, out;
  if (!MakeCheckpoint(in.path())) GTEST_SKIP() << "no torch in /usr/bin/python3";
  const std::string index = in.File("pytorch_model.bin.index.json");
  nlohmann::json j = nlohmann::json::parse(ReadFile(index));
  j["extra"] = {1, 2};
  WriteFile(index, j.dump());
  const ConvertReport r = ConvertShardedCheckpoint(index, out.File("m.safemodel.index.json"), Fast(), ConvertFile);
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  EXPECT_EQ(r.source_format, "hf_sharded/pytorch");
  bool found = false;
  for (const Finding& f : r.findings) {
    if (f.rule == "hf_index.key_dropped") {
      found = true;
      EXPECT_EQ(f.location, "index pytorch_model.bin.index.json: key 'extra'");
    }
  }
  EXPECT_TRUE(found);
}

// The output index is as untrusted as the shards it comes with.
TEST(ShardedModel, OpenRefusesAnIndexThatDoesNotMatchItsShards) {
  TempDir in, out;
  if (!MakeCheckpoint(in.path())) GTEST_SKIP() << "no torch in /usr/bin/python3";
  const std::string index = out.File("m.safemodel.index.json");
  ASSERT_TRUE(ConvertShardedCheckpoint(in.File("pytorch_model.bin.index.json"), index, Fast(), ConvertFile).status.ok());
  const std::string good = ReadFile(index);
  ASSERT_TRUE(ShardedModel::Open(index).ok());
  auto edited = [&](const std::function<void(nlohmann::json&)>& edit) {
    nlohmann::json j = nlohmann::json::parse(good);
    edit(j);
    WriteFile(index, j.dump());
    return ShardedModel::Open(index);
  };
  const std::string s1 = "pytorch_model-00001-of-00003.bin.safemodel";
  const std::string s2 = "pytorch_model-00002-of-00003.bin.safemodel";
  EXPECT_FALSE(edited([&](auto& j) { j["weight_map"]["model.embed.weight"] = s2; }).ok());
  EXPECT_FALSE(edited([&](auto& j) { j["weight_map"].erase("model.embed.weight"); }).ok());
  EXPECT_FALSE(edited([&](auto& j) { j["weight_map"]["ghost"] = s1; }).ok());
  EXPECT_FALSE(edited([&](auto& j) { j["shards"][0]["file"] = "../" + s1; }).ok());
  EXPECT_FALSE(edited([&](auto& j) { j["shards"][1] = j["shards"][0]; }).ok());
  EXPECT_FALSE(edited([&](auto& j) { j["shards"][0]["sha256"] = std::string(64, '0'); }).ok());
  EXPECT_FALSE(edited([&](auto& j) { j["shards"][0]["bytes"] = 1; }).ok());
  EXPECT_FALSE(edited([&](auto& j) { j["shards"].erase(2); }).ok());
  EXPECT_FALSE(edited([&](auto& j) { j["version"] = 2; }).ok());
  WriteFile(index, good.substr(0, good.size() - 2) + ", \"format\": \"safemodel.sharded\"}\n");
  EXPECT_FALSE(ShardedModel::Open(index).ok()) << "a repeated key was accepted";
  WriteFile(index, good);
  ASSERT_TRUE(ShardedModel::Open(index).ok());
  // A shard changed after the index was written.
  std::string shard = ReadFile(out.File(s2));
  shard[shard.size() / 2] ^= 1;
  WriteFile(out.File(s2), shard);
  EXPECT_FALSE(ShardedModel::Open(index).ok());
  fs::remove(out.File(s2));
  EXPECT_FALSE(ShardedModel::Open(index).ok());
}

}  // namespace
}  // namespace safemodel
