// The batch's input lists (converter/cli/batch_inputs.h): ids, slices,
// manifests, trees.
#include "converter/cli/batch_inputs.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <mutex>

#include "safemodel/batch.h"
#include "safemodel/sharded_convert.h"
#include "tests/testing/test_util.h"

namespace safemodel::cli {
namespace {

using testing::TempDir;
using testing::WriteFile;

TEST(BatchInputs, CleanIds) {
  for (const char* ok : {"a", "a/b.pt", "x/y/z", ".hidden", "a..b", "名前.npy"}) EXPECT_TRUE(IsCleanId(ok)) << ok;
  for (const char* bad : {"", "/a", "a/", "a//b", "./a", "a/./b", "..", "a/../b", "a/.."}) {
    EXPECT_FALSE(IsCleanId(bad)) << bad;
  }
  EXPECT_FALSE(IsCleanId(std::string("a\0b", 3)));
}

// The slice of an id must never change between versions: a cluster resumes
// a slice from its own results file.
TEST(BatchInputs, ShardOfIsPinned) {
  EXPECT_EQ(ShardOf("", 1000), 14695981039346656037ull % 1000);  // the FNV-1a offset basis
  EXPECT_EQ(ShardOf("a", 1ull << 32), 0x8601ec8cull);            // FNV-1a 64 of "a" is 0xaf63dc4c8601ec8c
  for (uint64_t n = 1; n <= 7; ++n) EXPECT_LT(ShardOf("models/x.pt", n), n);
}

TEST(BatchInputs, ParseShard) {
  uint64_t i = 9, n = 9;
  EXPECT_TRUE(ParseShard("0/1", &i, &n));
  EXPECT_EQ(i, 0u);
  EXPECT_EQ(n, 1u);
  EXPECT_TRUE(ParseShard("15/16", &i, &n));
  for (const char* bad : {"", "1", "1/", "/1", "1/1", "2/1", "0/0", "-1/3", "a/3", "1/3/4", "1 /3", "1234567890/9999999999"}) {
    EXPECT_FALSE(ParseShard(bad, &i, &n)) << bad;
  }
}

TEST(BatchInputs, ATreeIsListedSortedWithoutFollowingLinks) {
  TempDir d;
  std::filesystem::create_directories(d.File("b/c"));
  std::filesystem::create_directories(d.File("saved/variables"));
  WriteFile(d.File("b/c/z.npy"), "x");
  WriteFile(d.File("a.npy"), "x");
  WriteFile(d.File("saved/saved_model.pb"), "x");
  WriteFile(d.File("saved/variables/variables.index"), "x");
  std::filesystem::create_directory_symlink("/", d.File("root"));
  std::filesystem::create_directories(d.File("out"));
  WriteFile(d.File("out/old.safemodel"), "x");
  auto listed = ListTree(d.path(), {d.File("out")});
  ASSERT_TRUE(listed.ok()) << listed.status().ToString();
  std::vector<std::string> ids;
  for (const BatchInput& in : *listed) ids.push_back(in.id + (in.symlink ? " (link)" : ""));
  EXPECT_EQ(ids, (std::vector<std::string>{"a.npy", "b/c/z.npy", "root (link)", "saved"}));
  EXPECT_FALSE(ListTree(d.File("a.npy"), {}).ok());
}

TEST(BatchInputs, TooDeepATreeIsALimit) {
  TempDir d;
  std::string p = d.path();
  for (size_t i = 0; i <= kMaxListedDepth + 1; ++i) p += "/d";
  std::filesystem::create_directories(p);
  EXPECT_EQ(ListTree(d.path(), {}).status().code(), StatusCode::kLimitExceeded);
}

}  // namespace
}  // namespace safemodel::cli

namespace safemodel::cli {
namespace {

namespace fs = std::filesystem;

// A one-tensor safetensors file: `name`, F32, two elements.
void WriteSafetensors(const std::string& path, const std::string& name) {
  const std::string header = "{\"" + name + "\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
  std::string file(8, '\0');
  for (size_t i = 0; i < 8; ++i) file[i] = static_cast<char>((header.size() >> (8 * i)) & 0xff);
  WriteFile(path, file + header + std::string(8, '\x11'));
}

struct CountingConvert {
  std::mutex mu;
  std::map<std::string, int> calls;  // by input file name
  ConvertFunction Function() {
    return [this](const std::string& in, const std::string& out, const ConvertOptions& o) {
      {
        std::lock_guard<std::mutex> lock(mu);
        ++calls[fs::path(in).filename().string()];
      }
      return ConvertFile(in, out, o);
    };
  }
};

ConvertOptions Quick() {
  ConvertOptions o;
  o.sync_output = false;
  o.timeout_ms = 60'000;
  return o;
}

// An HF index is converted once per batch: by the listing (which takes its
// shards out of the inputs), and its unit's conversion takes that reading
// over. The listing's results and messages, and the unit's status, message
// and findings, are those of reading the index afresh.
TEST(BatchInputs, AnIndexIsConvertedOnceForTheListingAndItsUnit) {
  TempDir d, out;
  WriteSafetensors(d.File("s1.safetensors"), "w");
  const std::string good = d.File("model.safetensors.index.json");
  const std::string bad = d.File("bad.bin.index.json");
  WriteFile(good, R"({"weight_map": {"w": "s1.safetensors"}, "extra": 1})");
  WriteFile(bad, R"({"weight_map": {"x": "../a.bin"}})");
  CountingConvert counting;
  const CheckpointIndexReadings readings(Quick(), counting.Function());
  auto listed = ListTree(d.path(), {}, readings.Lister());
  ASSERT_TRUE(listed.ok()) << listed.status().ToString();
  ASSERT_EQ(listed->size(), 2u);
  EXPECT_EQ((*listed)[0].id, "bad.bin.index.json");
  EXPECT_EQ((*listed)[1].id, "model.safetensors.index.json");
  EXPECT_EQ(counting.calls["model.safetensors.index.json"], 1);
  EXPECT_EQ(counting.calls["bad.bin.index.json"], 1);
  // What the listing saw is what a fresh reading says.
  const Result<std::vector<std::string>> bad_listed = readings.Lister()(bad);
  const Result<ShardedCheckpointIndex> bad_fresh = ReadShardedCheckpointIndex(bad, Quick(), ConvertFile);
  ASSERT_FALSE(bad_listed.ok());
  EXPECT_EQ(bad_listed.status().code(), bad_fresh.status().code());
  EXPECT_EQ(bad_listed.status().message(), bad_fresh.status().message());
  EXPECT_EQ(*readings.Lister()(good), std::vector<std::string>{"s1.safetensors"});
  EXPECT_EQ(counting.calls["model.safetensors.index.json"], 1) << "the listing read an index twice";

  BatchOptions b;
  b.convert = Quick();
  b.convert_function = counting.Function();
  b.read_checkpoint_index = readings.Reader();
  b.jobs = 2;
  const std::vector<BatchItem> items = {{"bad", bad, out.File("bad.safemodel.index.json")},
                                        {"good", good, out.File("model.safetensors.safemodel.index.json")}};
  std::map<std::string, ConvertReport> reports;
  Batch(b).Run(items, [&](const BatchResult& r) { reports[r.item.id] = r.report; });
  EXPECT_EQ(counting.calls["model.safetensors.index.json"], 1) << "the unit converted its index again";
  EXPECT_EQ(counting.calls["bad.bin.index.json"], 1);
  EXPECT_EQ(counting.calls["s1.safetensors"], 1);
  // The same as a unit that reads its own index.
  for (const BatchItem& item : items) {
    SCOPED_TRACE(item.id);
    TempDir elsewhere;
    const ConvertReport alone = ConvertShardedCheckpoint(
        item.input_path, elsewhere.File(fs::path(item.output_path).filename().string()), Quick(), ConvertFile);
    const ConvertReport& r = reports.at(item.id);
    EXPECT_EQ(r.status.code(), alone.status.code());
    EXPECT_EQ(r.status.message(), alone.status.message());
    EXPECT_EQ(r.input_sha256, alone.input_sha256);
    EXPECT_EQ(r.source_format, alone.source_format);
    ASSERT_EQ(r.findings.size(), alone.findings.size());
    for (size_t i = 0; i < r.findings.size(); ++i) {
      EXPECT_EQ(r.findings[i].rule, alone.findings[i].rule);
      EXPECT_EQ(r.findings[i].location, alone.findings[i].location);
    }
  }
  EXPECT_TRUE(reports.at("good").status.ok()) << reports.at("good").status.ToString();
  EXPECT_FALSE(reports.at("bad").status.ok());
  // A reading is handed over once; a second request reads again.
  EXPECT_TRUE(readings.Reader()(good).index.ok());
  EXPECT_EQ(counting.calls["model.safetensors.index.json"], 2);
}

// The reading holds for the bytes it read: an index changed after its
// listing fails its unit (retryable), nothing is written.
TEST(BatchInputs, AnIndexChangedAfterItsListingFailsItsUnit) {
  TempDir d, out;
  WriteSafetensors(d.File("s1.safetensors"), "w");
  const std::string index = d.File("model.safetensors.index.json");
  WriteFile(index, R"({"weight_map": {"w": "s1.safetensors"}})");
  const CheckpointIndexReadings readings(Quick(), ConvertFile);
  ASSERT_TRUE(readings.Lister()(index).ok());
  WriteFile(index, R"({"weight_map": {"w": "s1.safetensors"}} )");
  const ConvertReport r = ConvertShardedCheckpoint(index, out.File("m.safemodel.index.json"), Quick(), ConvertFile,
                                                   readings.Reader());
  EXPECT_EQ(r.status.code(), StatusCode::kIoError) << r.status.ToString();
  EXPECT_NE(r.status.message().find("changed after it was read"), std::string::npos) << r.status.ToString();
  EXPECT_EQ(out.List(), std::vector<std::string>{});
  // A refusal read earlier does not stand for an index that changed either.
  const std::string bad = d.File("bad.bin.index.json");
  WriteFile(bad, R"({"weight_map": {"x": "../a.bin"}})");
  ASSERT_FALSE(readings.Lister()(bad).ok());
  WriteFile(bad, R"({"weight_map": {"x": "a.bin"}})");
  const ConvertReport b = ConvertShardedCheckpoint(bad, out.File("b.safemodel.index.json"), Quick(), ConvertFile,
                                                   readings.Reader());
  EXPECT_EQ(b.status.code(), StatusCode::kIoError) << b.status.ToString();
}

}  // namespace
}  // namespace safemodel::cli
