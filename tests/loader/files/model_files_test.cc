// The rule for which files make up a multi-file model (names and types
// only): SavedModel directories, checkpoints, sharded Keras stores, and what
// is refused before anything is opened.
#include <gtest/gtest.h>

#include "loader/files/model_files.h"

namespace safemodel::loader {
namespace {

using Type = ListedEntry::Type;

std::vector<std::pair<FileRole, std::string>> Opened(const FilePlan& plan) {
  std::vector<std::pair<FileRole, std::string>> out;
  for (const PlannedFile& f : plan.open) out.emplace_back(f.role, f.name);
  return out;
}

TEST(ModelFiles, SavedModelOpensItsFilesAndListsTheRest) {
  auto plan = PlanDirectory({{"saved_model.pb", Type::kRegular},
                             {"keras_metadata.pb", Type::kRegular},
                             {"fingerprint.pb", Type::kRegular},
                             {"variables", Type::kDirectory},
                             {"variables/variables.index", Type::kRegular},
                             {"variables/variables.data-00000-of-00002", Type::kRegular},
                             {"variables/variables.data-00001-of-00002", Type::kRegular},
                             {"assets", Type::kDirectory},
                             {"assets/vocab.txt", Type::kRegular}});
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  EXPECT_EQ(plan->kind, ModelKind::kSavedModel);
  EXPECT_EQ(Opened(*plan), (std::vector<std::pair<FileRole, std::string>>{
                               {FileRole::kSavedModel, "saved_model.pb"},
                               {FileRole::kKerasMetadata, "keras_metadata.pb"},
                               {FileRole::kBundleIndex, "variables/variables.index"},
                               {FileRole::kBundleData, "variables/variables.data-00000-of-00002"},
                               {FileRole::kBundleData, "variables/variables.data-00001-of-00002"}}));
  EXPECT_EQ(plan->listed, (std::vector<std::string>{"assets/vocab.txt", "fingerprint.pb"}));
}

TEST(ModelFiles, AnEntryOutsideTheKnownNamesIsRefused) {
  const std::vector<ListedEntry> base = {{"saved_model.pb", Type::kRegular},
                                         {"variables", Type::kDirectory},
                                         {"variables/variables.index", Type::kRegular}};
  for (const ListedEntry& extra : std::vector<ListedEntry>{
           {"variables/variables.data-0001-of-00002", Type::kRegular},  // not TF's data name
           {"model.py", Type::kRegular},
           {"variables/extra", Type::kRegular},
           {"plugins", Type::kDirectory}}) {
    std::vector<ListedEntry> listing = base;
    listing.push_back(extra);
    auto plan = PlanDirectory(listing);
    ASSERT_FALSE(plan.ok()) << extra.name;
    EXPECT_EQ(plan.status().code(), StatusCode::kUnsupported) << extra.name;
    EXPECT_NE(plan.status().message().find("'" + extra.name + "'"), std::string::npos);
    EXPECT_NE(plan.status().message().find("[input.unknown_file]"), std::string::npos);
  }
  // A checkpoint directory holds nothing but its state file and bundles.
  for (const char* extra : {"notes.txt", "fingerprint.pb", "other.data-00000-of-00001"}) {
    auto plan = PlanDirectory({{"checkpoint", Type::kRegular},
                               {"ckpt-1.index", Type::kRegular},
                               {"ckpt-1.data-00000-of-00001", Type::kRegular},
                               {extra, Type::kRegular}});
    EXPECT_EQ(plan.status().code(), StatusCode::kUnsupported) << extra;
  }
}

TEST(ModelFiles, AFileOfTheModelBesideAFileInputMustBeRegular) {
  for (Type type : {Type::kSymlink, Type::kOther, Type::kDirectory}) {
    auto plan = PlanFile("ckpt.index", {{"ckpt.index", Type::kRegular},
                                        {"ckpt.data-00000-of-00001", type},
                                        {"unrelated", Type::kSymlink}});
    ASSERT_FALSE(plan.ok());
    EXPECT_EQ(plan.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(plan.status().message().find("ckpt.data-00000-of-00001"), std::string::npos);
  }
  // Links that are not files of the model do not matter.
  auto plan = PlanFile("ckpt.index", {{"ckpt.index", Type::kRegular},
                                      {"ckpt.data-00000-of-00001", Type::kRegular},
                                      {"unrelated", Type::kSymlink}});
  ASSERT_TRUE(plan.ok() && plan->has_value());
}

TEST(ModelFiles, ASymlinkOrSpecialFileAnywhereStopsEverything) {
  auto link = PlanDirectory({{"saved_model.pb", Type::kRegular},
                             {"variables/variables.data-00000-of-00001", Type::kSymlink}});
  ASSERT_FALSE(link.ok());
  EXPECT_EQ(link.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(link.status().message().find("[input.symlink]"), std::string::npos);
  auto fifo = PlanDirectory({{"saved_model.pb", Type::kRegular}, {"assets/x", Type::kOther}});
  ASSERT_FALSE(fifo.ok());
  EXPECT_EQ(fifo.status().code(), StatusCode::kInvalidArgument);
  for (const char* name : {"../x", "a/../b", "./a", "a//b", "/abs", ""}) {
    auto bad = PlanDirectory({{"saved_model.pb", Type::kRegular}, {name, Type::kRegular}});
    EXPECT_FALSE(bad.ok()) << name;
  }
}

TEST(ModelFiles, CheckpointDirectoriesAndPrefixes) {
  auto dir = PlanDirectory({{"checkpoint", Type::kRegular},
                            {"ckpt-1.index", Type::kRegular},
                            {"ckpt-1.data-00000-of-00001", Type::kRegular},
                            {"ckpt-2.index", Type::kRegular},
                            {"ckpt-2.data-00000-of-00001", Type::kRegular}});
  ASSERT_TRUE(dir.ok());
  EXPECT_EQ(dir->kind, ModelKind::kCheckpoint);
  EXPECT_EQ(dir->open.size(), 5u);
  EXPECT_EQ(dir->open[0].role, FileRole::kCheckpointState);
  auto one = PlanDirectory({{"model.ckpt.index", Type::kRegular}, {"model.ckpt.data-00000-of-00001", Type::kRegular}});
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(one->open.size(), 2u);
  EXPECT_TRUE(one->listed.empty());
  EXPECT_EQ(PlanDirectory({{"a.index", Type::kRegular}, {"b.index", Type::kRegular}}).status().code(),
            StatusCode::kUnsupported);
  EXPECT_EQ(PlanDirectory({{"x.bin", Type::kRegular}}).status().code(), StatusCode::kUnsupported);
  EXPECT_EQ(PlanDirectory({{"saved_model.pbtxt", Type::kRegular}}).status().code(), StatusCode::kUnsupported);

  const std::vector<ListedEntry> siblings = {{"ckpt.index", Type::kRegular},
                                             {"ckpt.data-00000-of-00001", Type::kRegular},
                                             {"ckpt.data-extra", Type::kRegular},
                                             {"other.bin", Type::kRegular}};
  for (const char* name : {"ckpt.index", "ckpt"}) {
    auto plan = PlanFile(name, siblings);
    ASSERT_TRUE(plan.ok() && plan->has_value()) << name;
    EXPECT_EQ(Opened(**plan), (std::vector<std::pair<FileRole, std::string>>{
                                  {FileRole::kBundleIndex, "ckpt.index"},
                                  {FileRole::kBundleData, "ckpt.data-00000-of-00001"}}));
  }
  auto single = PlanFile("other.bin", siblings);
  ASSERT_TRUE(single.ok());
  EXPECT_FALSE(single->has_value());
}

TEST(ModelFiles, ShardedKerasStoresTakeTheirNumberedShards) {
  auto plan = PlanFile("model.weights.json", {{"model.weights.json", Type::kRegular},
                                              {"model_00000.weights.h5", Type::kRegular},
                                              {"model_00001.weights.h5", Type::kRegular},
                                              {"model_x.weights.h5", Type::kRegular},
                                              {"other_00000.weights.h5", Type::kRegular}});
  ASSERT_TRUE(plan.ok() && plan->has_value());
  EXPECT_EQ(Opened(**plan), (std::vector<std::pair<FileRole, std::string>>{
                                {FileRole::kWeightsJson, "model.weights.json"},
                                {FileRole::kWeightsShard, "model_00000.weights.h5"},
                                {FileRole::kWeightsShard, "model_00001.weights.h5"}}));
}

TEST(ModelFiles, CapsComeBeforeAnyWork) {
  std::vector<ListedEntry> many(kMaxListedEntries + 1, {"f", Type::kRegular});
  EXPECT_EQ(PlanDirectory(many).status().code(), StatusCode::kLimitExceeded);
  std::vector<ListedEntry> shards = {{"ckpt.index", Type::kRegular}};
  for (uint64_t i = 0; i <= kMaxModelFiles; ++i) {
    char name[64];
    std::snprintf(name, sizeof name, "ckpt.data-%05llu-of-99999", static_cast<unsigned long long>(i));
    shards.push_back({name, Type::kRegular});
  }
  EXPECT_EQ(PlanDirectory(shards).status().code(), StatusCode::kLimitExceeded);
}

}  // namespace
}  // namespace safemodel::loader
