// Sharded safetensors export (safemodel/export_safetensors.h,
// `safe-convert export NAME.safemodel.index.json OUT.safetensors.index.json`):
// a sharded checkpoint converted with ConvertShardedCheckpoint and exported
// back, checked by an independent reader (check_safetensors_export.py:
// torch.load or numpy on the source shards, struct+json+numpy on the
// export); the shard naming rule; OUT's rules and the clean-up on failure.
#include "safemodel/export_safetensors.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "safemodel/sharded.h"
#include "safemodel/sharded_convert.h"
#include "tests/testing/test_util.h"

namespace safemodel {
namespace {

namespace fs = std::filesystem;
using testing::Exists;
using testing::ReadFile;
using testing::TempDir;
using testing::WriteFile;

std::string Script(const std::string& name) { return std::string(SAFEMODEL_SOURCE_DIR) + "/tests/converter/" + name; }

// Writes a sharded checkpoint into `in` (mode as make_hf_sharded.py takes)
// and converts it into `out`; returns the .safemodel index ("" on failure).
std::string Converted(const TempDir& in, const TempDir& out, const std::string& mode) {
  std::string log;
  EXPECT_EQ(testing::RunPython(Script("make_hf_sharded.py"), {in.path(), mode}, &log), 0) << log;
  const std::string hf = in.File(mode == "safetensors" ? "model.safetensors.index.json"
                                                       : "pytorch_model.bin.index.json");
  const std::string index = ShardedOutputIndexName(out.File(fs::path(hf).filename()));
  ConvertOptions o;
  o.sync_output = false;
  o.timeout_ms = 60'000;
  const ConvertReport r = ConvertShardedCheckpoint(hf, index, o, ConvertFile);
  EXPECT_TRUE(r.status.ok()) << r.status.ToString();
  return r.status.ok() ? index : "";
}

ExportOptions NoSync(bool force = false) {
  ExportOptions o;
  o.sync = false;
  o.force = force;
  return o;
}

int Check(const std::string& source_index, const std::string& export_index) {
  std::string log;
  const int rc = testing::RunPython(Script("check_safetensors_export.py"), {source_index, export_index}, &log);
  EXPECT_EQ(rc, 0) << log;
  return rc;
}

TEST(ExportSharded, ShardNamesFollowOneRule) {
  EXPECT_EQ(SafetensorsShardName("model-00001-of-00002.safetensors.safemodel"), "model-00001-of-00002.safetensors");
  EXPECT_EQ(SafetensorsShardName("pytorch_model-00001-of-00002.bin.safemodel"),
            "pytorch_model-00001-of-00002.safetensors");
  EXPECT_EQ(SafetensorsShardName("a.pt.safemodel"), "a.pt.safetensors");
  EXPECT_EQ(SafetensorsShardName("plain.safemodel"), "plain.safetensors");
  EXPECT_EQ(SafetensorsShardName(".bin.safemodel"), ".bin.safetensors") << "a name is never emptied";
}

TEST(ExportSharded, ATorchCheckpointExportsBitExactAgainstTorchLoad) {
  if (!testing::PythonHas({"torch", "numpy"})) GTEST_SKIP() << "no torch in /usr/bin/python3";
  TempDir in, mid, out;
  const std::string index = Converted(in, mid, "clean");
  ASSERT_FALSE(index.empty());
  const std::string out_index = out.File("model.safetensors.index.json");
  Result<ExportSummary> done = ExportShardedSafetensors(index, out_index, NoSync());
  ASSERT_TRUE(done.ok()) << done.status().ToString();
  EXPECT_EQ(done->shards, 3u);
  EXPECT_EQ(done->tensors, 7u);
  uint64_t bytes = fs::file_size(out_index);
  for (int i = 1; i <= 3; ++i) {
    const std::string shard = out.File("pytorch_model-0000" + std::to_string(i) + "-of-00003.safetensors");
    ASSERT_TRUE(Exists(shard)) << shard;
    bytes += fs::file_size(shard);
  }
  EXPECT_EQ(done->output_bytes, bytes);
  EXPECT_EQ(Check(in.File("pytorch_model.bin.index.json"), out_index), 0);
  // Deterministic: a second export gives the same index, byte for byte.
  const std::string first = ReadFile(out_index);
  ASSERT_TRUE(ExportShardedSafetensors(index, out_index, NoSync(true)).ok());
  EXPECT_EQ(ReadFile(out_index), first);
  const nlohmann::json j = nlohmann::json::parse(first);
  EXPECT_EQ(j["weight_map"]["lm_head.weight"], "pytorch_model-00002-of-00003.safetensors");
}

// The round trip: safetensors shards -> one sharded .safemodel -> safetensors
// shards, every tensor's bytes the numpy arrays first written.
TEST(ExportSharded, ASafetensorsCheckpointRoundTrips) {
  if (!testing::PythonHas({"numpy"})) GTEST_SKIP() << "no numpy in /usr/bin/python3";
  TempDir in, mid, out;
  const std::string index = Converted(in, mid, "safetensors");
  ASSERT_FALSE(index.empty());
  const std::string out_index = out.File("model.safetensors.index.json");
  Result<ExportSummary> done = ExportShardedSafetensors(index, out_index, NoSync());
  ASSERT_TRUE(done.ok()) << done.status().ToString();
  EXPECT_EQ(done->shards, 3u);
  EXPECT_EQ(done->tensors, 8u);
  for (int i = 1; i <= 3; ++i) {
    EXPECT_TRUE(Exists(out.File("model-0000" + std::to_string(i) + "-of-00003.safetensors")));
  }
  EXPECT_EQ(Check(in.File("model.safetensors.index.json"), out_index), 0);
  const nlohmann::json source = nlohmann::json::parse(ReadFile(in.File("model.safetensors.index.json")));
  const nlohmann::json back = nlohmann::json::parse(ReadFile(out_index));
  EXPECT_EQ(back["weight_map"], source["weight_map"]) << "same names, same shards";
  EXPECT_EQ(back["metadata"]["total_size"], source["metadata"]["total_size"]);
}

TEST(ExportSharded, OutMustBeASafetensorsIndexAndAFailureLeavesNothing) {
  if (!testing::PythonHas({"numpy"})) GTEST_SKIP() << "no numpy in /usr/bin/python3";
  TempDir in, mid, out;
  const std::string index = Converted(in, mid, "safetensors");
  ASSERT_FALSE(index.empty());
  for (const std::string bad : {"m.safetensors", "m.index.json", ".safetensors.index.json"}) {
    Result<ExportSummary> r = ExportShardedSafetensors(index, out.File(bad), NoSync());
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << bad;
  }
  EXPECT_TRUE(fs::is_empty(out.path()));
  // The third shard's name is taken: the first two are written, then removed.
  WriteFile(out.File("model-00003-of-00003.safetensors"), "keep me");
  const std::string out_index = out.File("model.safetensors.index.json");
  Result<ExportSummary> r = ExportShardedSafetensors(index, out_index, NoSync());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << r.status().ToString();
  EXPECT_FALSE(Exists(out_index));
  EXPECT_FALSE(Exists(out.File("model-00001-of-00003.safetensors")));
  EXPECT_FALSE(Exists(out.File("model-00002-of-00003.safetensors")));
  EXPECT_EQ(ReadFile(out.File("model-00003-of-00003.safetensors")), "keep me");
  // An index at OUT is not replaced without force, and nothing is written.
  fs::remove(out.File("model-00003-of-00003.safetensors"));
  WriteFile(out_index, "old index");
  r = ExportShardedSafetensors(index, out_index, NoSync());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ReadFile(out_index), "old index");
  EXPECT_FALSE(Exists(out.File("model-00001-of-00003.safetensors")));
  // A shard that does not match the index: ShardedModel::Open refuses it.
  fs::remove(out_index);
  WriteFile(mid.File("model-00002-of-00003.safetensors.safemodel"), "not the shard");
  r = ExportShardedSafetensors(index, out_index, NoSync());
  EXPECT_FALSE(r.ok());
  EXPECT_TRUE(fs::is_empty(out.path()));
}

// With force, a failure of a later shard leaves the files the earlier shards
// would have replaced as they were: nothing is committed until every shard is
// written.
TEST(ExportSharded, AFailingShardUnderForceKeepsTheFilesItWouldReplace) {
  if (!testing::PythonHas({"numpy"})) GTEST_SKIP() << "no numpy in /usr/bin/python3";
  TempDir in, mid, out;
  const std::string index = Converted(in, mid, "safetensors");
  ASSERT_FALSE(index.empty());
  const std::string out_index = out.File("model.safetensors.index.json");
  WriteFile(out.File("model-00001-of-00003.safetensors"), "old first");
  WriteFile(out_index, "old index");
  // Only a regular file is replaced: a directory at the third shard's name
  // fails that shard after the first two are written.
  fs::create_directory(out.File("model-00003-of-00003.safetensors"));
  Result<ExportSummary> r = ExportShardedSafetensors(index, out_index, NoSync(/*force=*/true));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(ReadFile(out.File("model-00001-of-00003.safetensors")), "old first");
  EXPECT_FALSE(Exists(out.File("model-00002-of-00003.safetensors")));
  EXPECT_EQ(ReadFile(out_index), "old index");
  // Once the way is clear, the same call replaces them all.
  fs::remove(out.File("model-00003-of-00003.safetensors"));
  r = ExportShardedSafetensors(index, out_index, NoSync(/*force=*/true));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(Check(in.File("model.safetensors.index.json"), out_index), 0);
  size_t entries = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(out.path())) ++entries;
  EXPECT_EQ(entries, 4u) << "three shards and the index, no temporaries";
}

TEST(ExportSharded, TheCommandExportsAShardedModel) {
  if (!testing::PythonHas({"numpy"})) GTEST_SKIP() << "no numpy in /usr/bin/python3";
  TempDir in, mid, out;
  const std::string index = Converted(in, mid, "safetensors");
  ASSERT_FALSE(index.empty());
  const std::string cli = testing::BinDir() + "/safe-convert export --no-sync ";
  const std::string out_index = out.File("model.safetensors.index.json");
  std::string log;
  EXPECT_EQ(testing::RunCommand(cli + index + " " + out.File("model.safetensors"), &log), 2) << log;
  EXPECT_NE(log.find("usage:"), std::string::npos) << log;
  EXPECT_TRUE(fs::is_empty(out.path()));
  ASSERT_EQ(testing::RunCommand(cli + index + " " + out_index, &log), 0) << log;
  EXPECT_NE(log.find(out_index + ": 8 tensors in 3 shards"), std::string::npos) << log;
  EXPECT_EQ(Check(in.File("model.safetensors.index.json"), out_index), 0);
  const std::string first = ReadFile(out.File("model-00001-of-00003.safetensors"));
  EXPECT_EQ(testing::RunCommand(cli + index + " " + out_index, &log), 2) << "never clobber without --force";
  EXPECT_EQ(testing::RunCommand(cli + "--force " + index + " " + out_index, &log), 0) << log;
  EXPECT_EQ(ReadFile(out.File("model-00001-of-00003.safetensors")), first) << "same model, same bytes";
}

}  // namespace
}  // namespace safemodel
